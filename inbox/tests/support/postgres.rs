//! A real Postgres server per test, from Debian's `postgresql` package: `initdb` in a
//! temporary directory, `postgres` on a free loopback port with its socket in that
//! directory, stopped and removed when dropped.
//!
//! As root (CI), the server runs as the `postgres` user the package created (Postgres
//! refuses to run as root), through `setpriv`, which execs without forking so the
//! child's pid is the server's. Without the binaries the tests say they were skipped and
//! pass, unless `MAPPING_WEBHOOKS_REQUIRE_POSTGRES=1` (CI) makes that a failure.
//!
//! The server runs with `fsync=off`: the tests crash receivers and workers, never the
//! machine, so they need no durability of Postgres's own, and they run faster.
//!
//! Std only, so other test crates can include it with `#[path]`.

#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The environment variable that turns missing Postgres binaries into a failure.
pub const REQUIRE_POSTGRES: &str = "MAPPING_WEBHOOKS_REQUIRE_POSTGRES";

/// A `postgres` child process and its data directory.
#[derive(Debug)]
pub struct PostgresServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
    durable: bool,
    child: Option<Child>,
}

impl PostgresServer {
    /// Initialises and starts a server, or returns `None` (after saying why) when the
    /// binaries are missing and Postgres is not required.
    ///
    /// # Panics
    ///
    /// When Postgres is required but missing, or does not start.
    pub fn start(test: &str) -> Option<Self> {
        Self::start_with(test, false)
    }

    /// Like [`start`](Self::start), with Postgres's default durability (`fsync=on`,
    /// `synchronous_commit=on`), for benchmarks.
    pub fn start_durable(test: &str) -> Option<Self> {
        Self::start_with(test, true)
    }

    fn start_with(test: &str, durable: bool) -> Option<Self> {
        let Some(bin) = find_bin() else {
            let why = "Postgres's initdb is not on PATH nor in /usr/lib/postgresql/*/bin \
                       (install Debian's `postgresql` package)";
            if std::env::var(REQUIRE_POSTGRES).as_deref() == Ok("1") {
                panic!("{test}: {why}, and {REQUIRE_POSTGRES}=1 requires it");
            }
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: {why}; set {REQUIRE_POSTGRES}=1 to fail instead"
            );
            return None;
        };
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mapping-webhooks-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the Postgres directory");
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:postgres", &dir.to_string_lossy()])
                .status()
                .expect("run chown");
            assert!(
                status.success(),
                "{test}: chown of {} failed",
                dir.display()
            );
        }
        let mut server = Self {
            bin,
            dir,
            port: 0,
            as_postgres,
            durable,
            child: None,
        };
        let output = server
            .command("initdb")
            .args(["-D", &server.data().to_string_lossy()])
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            output.status.success(),
            "{test}: initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Another process may take the free port between our probe and the bind.
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return Some(server);
            }
        }
        panic!("{test}: postgres did not start on a free loopback port");
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (fast shutdown: connections are cut, nothing is lost) and waits
    /// until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts the stopped server again, on the same port, with the same data.
    ///
    /// # Panics
    ///
    /// When it does not come back within 30 s.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "postgres did not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("setpriv");
            command
                .args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "--",
                ])
                .arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    /// Starts the child and waits (bounded) until it accepts queries.
    fn spawn(&mut self) -> bool {
        let log = std::fs::File::create(self.dir.join(format!("server-{}.log", self.port)))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null());
        let relaxed = ["-c", "fsync=off", "-c", "full_page_writes=off"];
        let fresh_wal = ["-c", "wal_init_zero=off"];
        let Ok(mut child) = self
            .command("postgres")
            .args(["-D", &self.data().to_string_lossy()])
            .args(["-p", &self.port.to_string()])
            .args(["-k", &self.dir.to_string_lossy()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            // Durable: a new server has no WAL segments to recycle yet, and zero-filling
            // each new 16 MB one stalls every commit for ~30 ms (seen as one stall of
            // all 256 benchmark senders in one run of two); a server that has run a
            // while recycles its segments. Commits still wait for their flush.
            .args(if self.durable {
                &fresh_wal[..]
            } else {
                &relaxed[..]
            })
            .args(["-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
        else {
            return false;
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // exited: most likely the port was taken
            }
            let ready = Command::new(self.bin.join("pg_isready"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .args(["-t", "1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Immediate shutdown: the data is thrown away.
            let _ = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while !matches!(child.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The directory holding `initdb`, `postgres` and `pg_isready` together: Debian's
/// versioned directory (the newest), else one on `PATH`.
fn find_bin() -> Option<PathBuf> {
    let complete = |dir: &Path| {
        ["initdb", "postgres", "pg_isready"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| complete(bin))
        .collect();
    versions.sort();
    if let Some(bin) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| complete(dir))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A unique temporary file path (not created) for a SQLite database.
pub fn temp_sqlite_path(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "mapping-webhooks-{tag}-{}-{}.db",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ))
}

/// Removes a SQLite database and its WAL files.
pub fn remove_sqlite(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}
