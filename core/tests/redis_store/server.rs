//! A real `redis-server` per test, started on a free loopback port as a child process so
//! the test can kill it and start it again on the same port.
//!
//! Shared by the core's Redis tests, the conformance suite and the benchmark (included
//! with `#[path]`). Without `redis-server` on `PATH` the tests say they were skipped and
//! pass, unless `MAPPING_WEBHOOKS_REQUIRE_REDIS=1` (CI) makes that a failure.

#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable that turns a missing `redis-server` into a failure.
pub const REQUIRE_REDIS: &str = "MAPPING_WEBHOOKS_REQUIRE_REDIS";

/// A `redis-server` child process; killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    password: Option<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server without a password, or returns `None` (after saying why) when
    /// `redis-server` is not installed and Redis is not required.
    pub fn start(test: &str) -> Option<Self> {
        Self::start_with(test, None)
    }

    /// Starts a server that requires `password`.
    pub fn start_with_password(test: &str, password: &str) -> Option<Self> {
        Self::start_with(test, Some(password))
    }

    fn start_with(test: &str, password: Option<&str>) -> Option<Self> {
        if !installed() {
            let why = "redis-server is not on PATH (install Debian's `redis-server` package)";
            if std::env::var(REQUIRE_REDIS).as_deref() == Ok("1") {
                panic!("{test}: {why}, and {REQUIRE_REDIS}=1 requires it");
            }
            // Straight to stderr: the test harness captures `eprintln!`, and a skip must
            // be seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: {why}; set {REQUIRE_REDIS}=1 to fail instead"
            );
            return None;
        }
        // Another process may take the free port between our probe and the server's
        // bind: try a few ports.
        for _ in 0..5 {
            let mut server = Self {
                port: free_port(),
                password: password.map(str::to_owned),
                child: None,
            };
            if server.spawn() {
                return Some(server);
            }
        }
        panic!("{test}: redis-server did not start on a free loopback port");
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://[:password@]127.0.0.1:port/`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// Kills the server (SIGKILL: a crash, nothing saved) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing is answered, as
    /// with a Redis stuck on a slow command or a saturated host.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("redis-server is running");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Starts the server again on the same port, with no data (no persistence).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the child and waits (bounded) until it accepts connections.
    fn spawn(&mut self) -> bool {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let Ok(mut child) = command.spawn() else {
            return false;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // exited: most likely the port was taken
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `redis-server` can be run.
fn installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}
