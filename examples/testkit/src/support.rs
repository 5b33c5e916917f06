//! What the scenarios share: a process that is killed when dropped (with its output
//! collected, or not), a free loopback port, a temporary folder, and the command-line
//! tools ([`Tool`]) the scenarios run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A receiver process, killed when dropped; then its folder, if any, is removed.
#[derive(Debug)]
pub struct Receiver {
    /// The process.
    pub child: Child,
    /// A folder of its own (its database), removed once the process is gone.
    pub dir: Option<TempDir>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A receiver process whose stdout (event lines) and stderr (logs) are collected as they
/// come; killed when dropped.
#[derive(Debug)]
pub struct Logged {
    /// The process.
    pub child: Child,
    /// Where it listens.
    pub addr: String,
    /// Its stdout, line by line.
    pub stdout: Arc<Mutex<Vec<String>>>,
    /// Its stderr, line by line.
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Logged {
    /// Starts the receiver `command` on `addr` (its `BIND_ADDR`) with its output
    /// collected, and waits up to 30 s for it to listen; panics with its logs if it
    /// exits or does not.
    pub fn start(command: &mut Command, addr: String) -> Self {
        let mut child = command
            .env("BIND_ADDR", &addr)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {:?}: {e}", command.get_program()));
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        let mut receiver = Logged {
            child,
            addr,
            stdout,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&receiver.addr).is_err() {
            let exited = receiver.child.try_wait().ok().flatten();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "{:?} never listened on {} ({exited:?}): {:?}",
                command.get_program(),
                receiver.addr,
                receiver.stderr.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(25));
        }
        receiver
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines of `pipe`, collected by a thread as they come.
pub fn collect(pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// A folder of its own under the system's temporary folder, removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty folder, named after `tag`, this process and the time.
    pub fn new(tag: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "mapping-webhooks-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A library's command entry point: the arguments (without the program's name), a
/// reader of the environment, stdout and stderr; returns the exit status. The `run` of
/// the `sender` and `rotate` packages.
pub type Entry =
    fn(Vec<String>, &dyn Fn(&str) -> Option<String>, &mut dyn Write, &mut dyn Write) -> u8;

/// A command-line tool a scenario runs: its binary as a child process, or its library's
/// entry point in this process (the same code; for tests of another package, which
/// Cargo gives no path to the binary).
#[derive(Debug, Clone, Copy)]
pub enum Tool {
    /// The binary at this path.
    Binary(&'static str),
    /// The library's entry point.
    InProcess(Entry),
}

/// How a [`Tool`] run ended.
#[derive(Debug)]
pub struct Ran {
    /// Whether it exited with status 0.
    pub success: bool,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

impl Tool {
    /// Runs it with `args`, in this process's environment changed by `env`: each
    /// variable set to the value given, or removed when `None`.
    pub fn run(&self, args: &[&str], env: &[(&str, Option<&str>)]) -> Ran {
        match *self {
            Self::Binary(path) => {
                let mut command = Command::new(path);
                command.args(args);
                for (name, value) in env {
                    match value {
                        Some(value) => command.env(name, value),
                        None => command.env_remove(name),
                    };
                }
                let output = command
                    .output()
                    .unwrap_or_else(|e| panic!("run {path}: {e}"));
                Ran {
                    success: output.status.success(),
                    stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                }
            }
            Self::InProcess(entry) => {
                let var = |name: &str| match env.iter().find(|(n, _)| *n == name) {
                    Some((_, value)) => value.map(str::to_owned),
                    None => std::env::var(name).ok(),
                };
                let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
                let status = entry(
                    args.iter().map(|a| (*a).to_owned()).collect(),
                    &var,
                    &mut stdout,
                    &mut stderr,
                );
                Ran {
                    success: status == 0,
                    stdout: String::from_utf8_lossy(&stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&stderr).into_owned(),
                }
            }
        }
    }
}
