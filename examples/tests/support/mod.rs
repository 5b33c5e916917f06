//! What the example tests share: the receivers under test, a process that is killed when
//! dropped, and a free loopback port.

use std::net::TcpListener;
use std::process::Child;

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
