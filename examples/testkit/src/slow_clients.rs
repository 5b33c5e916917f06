//! Slow and idle clients against an example receiver (`axum-receiver`,
//! `actix-receiver`), over real sockets: hundreds of connections trickling a request
//! head (slowloris), a kept-alive connection left idle, and one trickling its second
//! request. The receiver runs with a 1-second header timeout, a cap of 64 connections,
//! and a file-descriptor limit of about 128, below the number of slow connections (about
//! 200), as a small server under attack would be.
//!
//! Each receiver must close every slow connection (a deadline for the whole head, not
//! an idle timer: each connection sends a byte more often than the timeout), close the
//! idle one, process a valid delivery sent during the attack, and never run out of file
//! descriptors.
#![cfg(unix)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use mapping_webhooks_examples::WEBHOOK_PATH;

use crate::support::{Ran, Receiver, Tool, free_port};

/// The receiver's limits for this test.
const HEADER_TIMEOUT_SECS: &str = "1";
const MAX_CONNECTIONS: &str = "64";

/// The receiver's file-descriptor limit: 128, plus a few for each actix worker (one per
/// core), so that it starts on a machine with many cores.
fn fd_limit() -> usize {
    128 + 4 * thread::available_parallelism().map_or(1, |n| n.get())
}

/// Slow connections opened at once: more than the receiver's file descriptors.
fn slow_connections() -> usize {
    fd_limit() + 72
}
/// Each trickling connection sends one more byte this often: more often than the header
/// timeout, so only a deadline for the whole head closes it.
const TRICKLE_EVERY: Duration = Duration::from_millis(400);
/// Generous: on a loaded machine, with 200 connections passing through a cap of 64 one
/// header timeout at a time, all are closed within a few seconds.
const CLOSE_DEADLINE: Duration = Duration::from_secs(20);

/// Starts `binary` with the test's limits, through `sh` to lower its file-descriptor
/// limit. Its stderr is collected by a thread, returned when the process ends.
fn start(binary: &str) -> (Receiver, String, thread::JoinHandle<String>) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new("sh")
        .args([
            "-c",
            &format!("ulimit -n {} && exec \"$0\"", fd_limit()),
            binary,
        ])
        .env_remove("MAPPING_WEBHOOK_SECRET")
        .env_remove("MAPPING_WEBHOOK_SECRET_PREVIOUS")
        .env_remove("PORT")
        .env("BIND_ADDR", &addr)
        .env("HEADER_TIMEOUT_SECS", HEADER_TIMEOUT_SECS)
        .env("MAX_CONNECTIONS", MAX_CONNECTIONS)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {binary}: {e}"));
    let mut stderr = child.stderr.take().unwrap();
    let stderr = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let receiver = Receiver { child, dir: None };
    for _ in 0..400 {
        if TcpStream::connect(&addr).is_ok() {
            return (receiver, addr, stderr);
        }
        thread::sleep(Duration::from_millis(25));
    }
    panic!("{binary} never listened on {addr}");
}

/// A valid signed delivery, by the example sender.
fn send(sender: Tool, addr: &str) -> Ran {
    let url = format!("http://{addr}{WEBHOOK_PATH}");
    sender.run(&["--url", &url], &[("MAPPING_WEBHOOK_SECRET", None)])
}

/// A client connection, watched until the server closes it.
struct Probe {
    stream: TcpStream,
    /// Bytes still to trickle, one at a time.
    trickle: Vec<u8>,
    /// Trickle only once a response came (to the request already sent).
    after_response: bool,
    received: Vec<u8>,
    next_byte: Instant,
    closed: bool,
}

impl Probe {
    fn open(addr: &str, first: &[u8], trickle: &[u8], after_response: bool) -> Self {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(first).unwrap();
        stream.set_nonblocking(true).unwrap();
        Self {
            stream,
            trickle: trickle.iter().rev().copied().collect(),
            after_response,
            received: Vec::new(),
            next_byte: Instant::now(),
            closed: false,
        }
    }

    /// Reads what came, sends the next byte when due; notes when the server closed.
    fn poll(&mut self) {
        let mut buf = [0u8; 1024];
        while !self.closed {
            match self.stream.read(&mut buf) {
                Ok(0) => self.closed = true,
                Ok(n) => self.received.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // Reset, aborted: closed by the server.
                Err(_) => self.closed = true,
            }
        }
        let may_send = !self.after_response || self.received.starts_with(b"HTTP/1.1 ");
        if self.closed || !may_send || Instant::now() < self.next_byte {
            return;
        }
        if let Some(byte) = self.trickle.pop() {
            match self.stream.write(&[byte]) {
                Ok(_) => self.next_byte = Instant::now() + TRICKLE_EVERY,
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.trickle.push(byte),
                Err(_) => self.closed = true,
            }
        }
    }
}

/// Polls `probes` until all are closed or the deadline passes; the open ones' count.
fn wait_closed(probes: &mut [Probe], deadline: Instant) -> usize {
    loop {
        probes.iter_mut().for_each(Probe::poll);
        let open = probes.iter().filter(|p| !p.closed).count();
        if open == 0 || Instant::now() >= deadline {
            return open;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A request head that never ends, to trickle (long enough to outlast the deadline).
fn endless_head() -> Vec<u8> {
    let mut head = format!("POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: test\r\n").into_bytes();
    for i in 0..100 {
        head.extend_from_slice(format!("X-Slow-{i}: a\r\n").as_bytes());
    }
    head
}

/// The attack and the checks above, against `binary`; the valid delivery sent during
/// the attack is `sender`'s.
pub fn slow_and_idle_connections_are_closed_and_deliveries_still_succeed(
    name: &str,
    binary: &str,
    sender: Tool,
) {
    let head = endless_head();
    // Refused (unsigned), but answered on a connection kept alive.
    let complete = format!("GET {WEBHOOK_PATH} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes();
    let (receiver, addr, stderr) = start(binary);
    let started = Instant::now();

    // The attack: more slow connections than the receiver has file descriptors.
    let slow_connections = slow_connections();
    let mut slow: Vec<Probe> = (0..slow_connections)
        .map(|_| Probe::open(&addr, &head[..1], &head[1..], false))
        .collect();
    // (a) A valid delivery sent meanwhile is processed.
    let delivery = {
        let addr = addr.clone();
        thread::spawn(move || send(sender, &addr))
    };
    // (b) Every slow connection is closed, though each keeps sending.
    let open = wait_closed(&mut slow, started + CLOSE_DEADLINE);
    assert_eq!(
        open,
        0,
        "{name}: {open} of {slow_connections} slow connections still open after {:?}",
        started.elapsed()
    );
    let delivered = delivery.join().unwrap();
    let out = &delivered.stdout;
    assert!(delivered.success, "{name}: {out}");
    assert!(out.contains("204"), "{name}: {out}");
    drop(slow);

    // (c) A kept-alive connection left idle after its response is closed, and so is
    // (d) one trickling its second request's head.
    let mut kept = vec![
        Probe::open(&addr, &complete, b"", false),
        Probe::open(&addr, &complete, &head, true),
    ];
    let open = wait_closed(&mut kept, Instant::now() + CLOSE_DEADLINE);
    for (probe, what) in kept.iter().zip(["idle", "trickling its second request"]) {
        assert!(
            probe.received.starts_with(b"HTTP/1.1 4"),
            "{name}: {what}: {:?}",
            String::from_utf8_lossy(&probe.received)
        );
        assert!(probe.closed, "{name}: the connection {what} is still open");
    }
    assert_eq!(open, 0);

    // The connection cap kept the receiver within its file descriptors.
    drop(receiver);
    let stderr = stderr.join().unwrap();
    assert!(
        !stderr.contains("os error 24"),
        "{name} ran out of file descriptors:\n{stderr}"
    );
    eprintln!("{name}: done in {:?}", started.elapsed());
}
