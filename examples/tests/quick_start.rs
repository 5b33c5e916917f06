//! The README's quick start, for every example receiver: start it with no
//! configuration, drive it with the example sender, and read the event line it prints.
//! One table of receivers, so the same sender is shown to drive each of them.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use mapping_webhooks_examples::{DEV_SECRET, WEBHOOK_PATH};

mod support;
use support::{RECEIVERS, Receiver, free_port};

/// Starts `binary` as the README says, with only `BIND_ADDR` set (to a free port).
fn start(binary: &str) -> (Receiver, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(binary)
        .env_remove("MAPPING_WEBHOOK_SECRET")
        .env_remove("MAPPING_WEBHOOK_SECRET_PREVIOUS")
        .env_remove("PORT")
        .env("BIND_ADDR", &addr)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {binary}: {e}"));
    let receiver = Receiver { child };
    // Bounded polling until it listens.
    for _ in 0..400 {
        if TcpStream::connect(&addr).is_ok() {
            return (receiver, addr);
        }
        thread::sleep(Duration::from_millis(25));
    }
    panic!("{binary} never listened on {addr}");
}

fn send(addr: &str, args: &[&str]) -> Output {
    let url = format!("http://{addr}{WEBHOOK_PATH}");
    Command::new(env!("CARGO_BIN_EXE_sender"))
        .env_remove("MAPPING_WEBHOOK_SECRET")
        .args(["--url", &url])
        .args(args)
        .output()
        .expect("run the sender")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_sender_drives_every_receiver() {
    for (name, binary) in RECEIVERS {
        let (mut receiver, addr) = start(binary);
        // Lines arrive through a channel, so a missing one fails the test instead of
        // blocking it.
        let stdout = receiver.child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let event_id = format!("evt_quick_start_{name}");

        // A fresh event: processed, one JSON line on stdout.
        let first = send(&addr, &["--event-id", &event_id]);
        assert!(first.status.success(), "{name}: {}", text(&first.stdout));
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{name} printed no event line"));
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(event["eventId"], event_id.as_str(), "{name}: {line}");
        assert_eq!(event["type"], "mapping.completed", "{name}: {line}");
        assert!(
            event["deliveryId"]
                .as_str()
                .is_some_and(|d| d.starts_with("del_")),
            "{name}: {line}"
        );

        // The same event again: acknowledged without running the handler.
        let again = send(&addr, &["--event-id", &event_id]);
        assert!(again.status.success(), "{name}");
        assert!(
            text(&again.stdout).contains("200 OK"),
            "{name}: {}",
            text(&again.stdout)
        );

        // A wrong secret and a stale signature: refused, the handler not run.
        let forged = send(&addr, &["--secret", "whsec_not_the_receivers_secret"]);
        assert!(!forged.status.success(), "{name}");
        assert!(
            text(&forged.stdout).contains("401"),
            "{name}: {}",
            text(&forged.stdout)
        );
        let stale = send(&addr, &["--timestamp-offset", "-400"]);
        assert!(
            text(&stale.stdout).contains("401"),
            "{name}: {}",
            text(&stale.stdout)
        );

        // Stop it: the only line printed was the first event's, and the development
        // secret was announced on stderr.
        let _ = receiver.child.kill();
        receiver.child.wait().unwrap();
        let rest: Vec<String> = lines.iter().collect();
        assert!(rest.is_empty(), "{name} printed more event lines: {rest:?}");
        let mut stderr = String::new();
        let mut err = receiver.child.stderr.take().unwrap();
        err.read_to_string(&mut stderr).unwrap();
        assert!(
            stderr.contains("DEVELOPMENT secret") && stderr.contains(DEV_SECRET),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn without_a_secret_a_public_address_is_refused() {
    for (name, binary) in RECEIVERS {
        // What a hosting platform does: PORT set, the secret forgotten.
        let child = Command::new(binary)
            .env_remove("MAPPING_WEBHOOK_SECRET")
            .env_remove("MAPPING_WEBHOOK_SECRET_PREVIOUS")
            .env_remove("BIND_ADDR")
            .env("PORT", free_port().to_string())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}"));
        let mut receiver = Receiver { child };
        // Bounded polling until it exits: one that serves instead fails here.
        let mut status = None;
        for _ in 0..600 {
            status = receiver.child.try_wait().unwrap();
            if status.is_some() {
                break;
            }
            thread::sleep(Duration::from_millis(25));
        }
        let status =
            status.unwrap_or_else(|| panic!("{name} started on 0.0.0.0 with the dev secret"));
        assert!(!status.success(), "{name}: {status}");
        let mut stderr = String::new();
        let mut err = receiver.child.stderr.take().unwrap();
        err.read_to_string(&mut stderr).unwrap();
        assert!(
            stderr.contains("MAPPING_WEBHOOK_SECRET is not set") && stderr.contains("0.0.0.0"),
            "{name}: {stderr}"
        );
    }
}
