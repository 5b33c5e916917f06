//! What the example tests share: the receivers under test, a process that is killed when
//! dropped (with its output collected, or not), and a free loopback port. Each test
//! file uses some of them.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::thread;

/// Every example receiver: the binary and its path from Cargo.
pub(crate) const RECEIVERS: [(&str, &str); 2] = [
    ("axum_receiver", env!("CARGO_BIN_EXE_axum_receiver")),
    ("actix_receiver", env!("CARGO_BIN_EXE_actix_receiver")),
];

/// A receiver process, killed when dropped.
pub(crate) struct Receiver {
    pub(crate) child: Child,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A receiver process whose stdout (event lines) and stderr (logs) are collected as they
/// come; killed when dropped.
pub(crate) struct Logged {
    pub(crate) child: Child,
    pub(crate) addr: String,
    pub(crate) stdout: Arc<Mutex<Vec<String>>>,
    pub(crate) stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines of `pipe`, collected by a thread as they come.
pub(crate) fn collect(pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}
