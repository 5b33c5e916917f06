//! The README's quick start, for each example receiver: start it with no
//! configuration, drive it with the example sender, and read the event line it prints.
//! The same sender drives every receiver: `axum-receiver`, `actix-receiver` and
//! `inbox-receiver` run these (the inbox receiver all but the HTTPS one).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use mapping_webhooks::{Secret, Signer};
use mapping_webhooks_examples::{DEV_SECRET, WEBHOOK_PATH};

use crate::support::{Ran, Receiver, TempDir, Tool, free_port};
use crate::tls::{CA_CERT, tls_front};

/// Starts `binary` as the README says, with only `BIND_ADDR` set (to a free port), and
/// `DATABASE_URL` (read by `inbox-receiver` only) to a file in a temporary folder rather
/// than `webhooks.db` in the package's directory; the folder is removed with the
/// receiver.
fn start(binary: &str) -> (Receiver, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let dir = TempDir::new("quick-start");
    let db = dir.path().join("webhooks.db");
    let child = Command::new(binary)
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .env_remove("MAPPING_WEBHOOK_SECRET")
        .env_remove("MAPPING_WEBHOOK_SECRET_PREVIOUS")
        .env_remove("PORT")
        .env("BIND_ADDR", &addr)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {binary}: {e}"));
    let receiver = Receiver {
        child,
        dir: Some(dir),
    };
    // Bounded polling until it listens.
    for _ in 0..400 {
        if TcpStream::connect(&addr).is_ok() {
            return (receiver, addr);
        }
        thread::sleep(Duration::from_millis(25));
    }
    panic!("{binary} never listened on {addr}");
}

fn send(sender: Tool, addr: &str, args: &[&str]) -> Ran {
    let url = format!("http://{addr}{WEBHOOK_PATH}");
    let args: Vec<&str> = ["--url", &url]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    sender.run(&args, &[("MAPPING_WEBHOOK_SECRET", None)])
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The quick start: a fresh event is processed and printed, the same event again is
/// acknowledged without running the handler, a wrong secret and a stale signature are
/// refused; one event line in all, and the development secret announced on stderr.
pub fn the_sender_drives_the_receiver(name: &str, binary: &str, sender: Tool) {
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
    let first = send(sender, &addr, &["--event-id", &event_id]);
    assert!(first.success, "{name}: {}", first.stdout);
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
    let again = send(sender, &addr, &["--event-id", &event_id]);
    assert!(again.success, "{name}");
    assert!(again.stdout.contains("200 OK"), "{name}: {}", again.stdout);

    // A wrong secret and a stale signature: refused, the handler not run.
    let forged = send(
        sender,
        &addr,
        &["--secret", "whsec_not_the_receivers_secret"],
    );
    assert!(!forged.success, "{name}");
    assert!(forged.stdout.contains("401"), "{name}: {}", forged.stdout);
    let stale = send(sender, &addr, &["--timestamp-offset", "-400"]);
    assert!(stale.stdout.contains("401"), "{name}: {}", stale.stdout);

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

/// The sender posts to an `https://` URL, as the real sender does to a deployed
/// receiver behind TLS: while the endpoint's certificate authority is not trusted, the
/// sender refuses the certificate, says so and exits 1, and nothing is processed; with
/// it (`--ca-cert`), the event is processed once.
pub fn the_sender_reaches_the_receiver_over_https(name: &str, binary: &str, sender: Tool) {
    let (mut receiver, addr) = start(binary);
    let stdout = receiver.child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let port = tls_front(addr.parse().unwrap());
    let url = format!("https://localhost:{port}{WEBHOOK_PATH}");
    let event_id = format!("evt_https_{name}");
    let secret = [("MAPPING_WEBHOOK_SECRET", None)];

    let untrusted = sender.run(&["--url", &url, "--event-id", &event_id], &secret);
    assert!(!untrusted.success, "{name}: {}", untrusted.stdout);
    assert!(
        untrusted.stdout.contains("certificate"),
        "{name}: {}",
        untrusted.stdout
    );

    let trusted = sender.run(
        &["--url", &url, "--ca-cert", CA_CERT, "--event-id", &event_id],
        &secret,
    );
    assert!(trusted.success, "{name}: {}", trusted.stdout);
    let line = lines
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{name} printed no event line"));
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["eventId"], event_id.as_str(), "{name}: {line}");
    let _ = receiver.child.kill();
    receiver.child.wait().unwrap();
    let rest: Vec<String> = lines.iter().collect();
    assert!(rest.is_empty(), "{name} printed more event lines: {rest:?}");
}

/// Without a secret, a receiver asked to listen on a public address (`PORT` set, as on a
/// hosting platform) refuses to start, and says why.
pub fn without_a_secret_a_public_address_is_refused(name: &str, binary: &str) {
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
    let mut receiver = Receiver { child, dir: None };
    // Bounded polling until it exits: one that serves instead fails here.
    let mut status = None;
    for _ in 0..600 {
        status = receiver.child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        thread::sleep(Duration::from_millis(25));
    }
    let status = status.unwrap_or_else(|| panic!("{name} started on 0.0.0.0 with the dev secret"));
    assert!(!status.success(), "{name}: {status}");
    let mut stderr = String::new();
    let mut err = receiver.child.stderr.take().unwrap();
    err.read_to_string(&mut stderr).unwrap();
    assert!(
        stderr.contains("MAPPING_WEBHOOK_SECRET is not set") && stderr.contains("0.0.0.0"),
        "{name}: {stderr}"
    );
}

/// The sender's `--copies 5` on a new event exits 0 with one copy processed; again,
/// all five are duplicates, and that is a success too.
pub fn copies_of_one_event_exit_0_with_one_processed(name: &str, binary: &str, sender: Tool) {
    let (_receiver, addr) = start(binary);
    let event_id = format!("evt_copies_{name}");
    // The README's command: one copy runs, the others are duplicates or in flight.
    let copies = send(sender, &addr, &["--copies", "5", "--event-id", &event_id]);
    let out = &copies.stdout;
    assert!(copies.success, "{name}: {out}");
    assert!(out.contains("5 copies: 1 processed"), "{name}: {out}");
    // Again: all five are duplicates, and that is a success too.
    let again = send(sender, &addr, &["--copies", "5", "--event-id", &event_id]);
    let out = &again.stdout;
    assert!(again.success, "{name}: {out}");
    assert!(out.contains("0 processed, 5 duplicate"), "{name}: {out}");
}

/// `sender --help` describes every flag and exits 0.
pub fn sender_help_describes_the_flags_and_exits_0(sender: Tool) {
    let help = sender.run(&["--help"], &[]);
    assert!(help.success);
    let out = help.stdout;
    for flag in [
        "--url",
        "--secret",
        "--event ",
        "--event-id",
        "--copies",
        "--timestamp-offset",
        "--retry",
        "--time-scale",
        "--help",
    ] {
        assert!(out.contains(flag), "{flag} missing from: {out}");
    }
}

/// Ctrl-C and SIGTERM both stop a receiver gracefully: a request whose body is still
/// arriving when the signal comes is processed and answered, then the process exits 0.
#[cfg(unix)]
pub fn ctrl_c_and_sigterm_stop_the_receiver_gracefully(name: &str, binary: &str) {
    // The inbox answers once the delivery is stored; the others once it is processed.
    let done = if name == "inbox-receiver" {
        "HTTP/1.1 202"
    } else {
        "HTTP/1.1 204"
    };
    for (signal, said) in [("TERM", "SIGTERM received"), ("INT", "Ctrl-C received")] {
        let (mut receiver, addr) = start(binary);
        let body = format!(
            r#"{{"id":"del_stop","eventId":"evt_stop_{name}_{signal}","type":"mapping.completed","data":{{"mappingJobId":"job_1","status":"COMPLETED","rowCount":1}}}}"#
        );
        let signature = Signer::new(Secret::new(DEV_SECRET).unwrap()).sign_now(body.as_bytes());
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let (first, rest) = body.split_at(body.len() / 2);
        write!(
            stream,
            "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
                 x-webhook-signature: {signature}\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\
                 connection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        stream.flush().unwrap();
        // `100 Continue` says the server took the request and waits for its body
        // (hyper sends it when the layer starts reading, actix-http on the head).
        let mut interim = Vec::new();
        let mut byte = [0u8; 1];
        while !interim.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            interim.push(byte[0]);
        }
        assert!(
            interim.starts_with(b"HTTP/1.1 100"),
            "{name}: {}",
            text(&interim)
        );
        // The request is in progress (its body half sent) when the signal comes.
        stream.write_all(first.as_bytes()).unwrap();
        stream.flush().unwrap();
        thread::sleep(Duration::from_millis(100));
        let killed = Command::new("kill")
            .args([&format!("-{signal}"), &receiver.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        thread::sleep(Duration::from_millis(300));
        stream.write_all(rest.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(
            answer.starts_with(done),
            "{name} on SIG{signal}: the request in progress was not finished: {answer:?}"
        );
        // Bounded polling until it exits, by itself and with success.
        let mut status = None;
        for _ in 0..400 {
            status = receiver.child.try_wait().unwrap();
            if status.is_some() {
                break;
            }
            thread::sleep(Duration::from_millis(25));
        }
        let status = status.unwrap_or_else(|| panic!("{name} still runs after SIG{signal}"));
        assert!(status.success(), "{name} on SIG{signal}: {status}");
        let mut stderr = String::new();
        let mut err = receiver.child.stderr.take().unwrap();
        err.read_to_string(&mut stderr).unwrap();
        assert!(stderr.contains(said), "{name}: {stderr}");
    }
}
