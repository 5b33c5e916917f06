//! A real Redis Cluster per test: `redis-server` nodes started as child processes with
//! `--cluster-enabled yes` on free loopback ports, joined by `redis-cli --cluster create`,
//! so a test can freeze, fail over or kill any node.
//!
//! Shared by the core's Redis tests, the conformance suite and the benchmark (included
//! with `#[path]`). Without `redis-server` and `redis-cli` on `PATH` the tests say they
//! were skipped and pass, unless `MAPPING_WEBHOOKS_REQUIRE_REDIS=1` (CI) makes that a
//! failure.

#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable that turns a missing `redis-server` into a failure.
const REQUIRE_REDIS: &str = "MAPPING_WEBHOOKS_REQUIRE_REDIS";

/// How long a node may be unreachable before the others mark it failed and its replica
/// takes over (`cluster-node-timeout`): short, so a failover test stays short.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

/// One node: its port, and its process while it runs.
#[derive(Debug)]
struct Node {
    port: u16,
    child: Option<Child>,
}

/// A cluster of `redis-server` children; every node is killed, and their files removed,
/// when dropped.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts `masters` masters with `replicas` replicas each, or returns `None` (after
    /// saying why) when `redis-server` or `redis-cli` is not installed and Redis is not
    /// required. Returns once every node says `cluster_state:ok` and every replica is in
    /// sync with its master.
    pub fn start(test: &str, masters: usize, replicas: usize) -> Option<Self> {
        if !installed("redis-server") || !installed("redis-cli") {
            let why = "redis-server or redis-cli is not on PATH (install Debian's \
                       `redis-server` package, which brings `redis-tools`)";
            if std::env::var(REQUIRE_REDIS).as_deref() == Ok("1") {
                panic!("{test}: {why}, and {REQUIRE_REDIS}=1 requires it");
            }
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: {why}; set {REQUIRE_REDIS}=1 to fail instead"
            );
            return None;
        }
        for _ in 0..3 {
            if let Some(cluster) = Self::try_start(masters, replicas) {
                return Some(cluster);
            }
        }
        panic!("{test}: a Redis Cluster did not start on free loopback ports");
    }

    fn try_start(masters: usize, replicas: usize) -> Option<Self> {
        let count = masters * (1 + replicas);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "mapping-webhooks-cluster-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create the cluster's directory");
        let mut cluster = Self {
            nodes: Vec::new(),
            dir,
        };
        for _ in 0..count {
            let mut node = Node {
                port: cluster_port(&cluster.nodes),
                child: None,
            };
            if !cluster.spawn(&mut node) {
                return None;
            }
            cluster.nodes.push(node);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let output = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        if !output.status.success() {
            let _ = writeln!(
                std::io::stderr(),
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&output.stdout)
            );
            return None;
        }
        cluster.wait_until_ok(Duration::from_secs(20));
        Some(cluster)
    }

    /// Starts `node`'s process and waits (bounded) until it accepts connections.
    fn spawn(&self, node: &mut Node) -> bool {
        let port = node.port.to_string();
        let Ok(mut child) = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
            .args([
                "--cluster-node-timeout",
                &NODE_TIMEOUT.as_millis().to_string(),
            ])
            // A replica takes over however long it has been apart from its master.
            .args(["--cluster-replica-validity-factor", "0"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", &self.dir.to_string_lossy()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return false;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // exited: most likely the port was taken
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, node.port)).is_ok() {
                node.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// `redis://127.0.0.1:port/` of every node started (running or not): the seeds.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("redis://127.0.0.1:{}/", node.port))
            .collect()
    }

    /// The ports of the nodes still running.
    pub fn running(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|node| node.child.is_some())
            .map(|node| node.port)
            .collect()
    }

    /// Runs `redis-cli -p port args..` and returns what it printed.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `CLUSTER NODES` as one running node sees it: `(port, flags, master's id or "-",
    /// id, slots)` per line.
    fn nodes_seen(&self, port: u16) -> Vec<(u16, String, String, String, bool)> {
        self.cli(port, &["CLUSTER", "NODES"])
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let address = fields.get(1)?.split('@').next()?;
                let node_port = address.rsplit(':').next()?.parse().ok()?;
                Some((
                    node_port,
                    (*fields.get(2)?).to_owned(),
                    (*fields.get(3)?).to_owned(),
                    (*fields.first()?).to_owned(),
                    fields.len() > 8,
                ))
            })
            .collect()
    }

    /// The running masters that serve slots, by port, as a running node sees them.
    pub fn masters(&self) -> Vec<u16> {
        let running = self.running();
        let mut masters: Vec<u16> = self
            .nodes_seen(running[0])
            .into_iter()
            .filter(|(port, flags, _, _, slots)| {
                flags.contains("master")
                    && !flags.contains("fail")
                    && *slots
                    && running.contains(port)
            })
            .map(|(port, ..)| port)
            .collect();
        masters.sort_unstable();
        masters
    }

    /// A running replica of `master`, by port.
    pub fn replica_of(&self, master: u16) -> Option<u16> {
        let seen = self.nodes_seen(master);
        let id = seen
            .iter()
            .find(|(port, ..)| *port == master)
            .map(|(_, _, _, id, _)| id.clone())?;
        let running = self.running();
        seen.into_iter()
            .find(|(port, flags, of, _, _)| {
                flags.contains("slave") && *of == id && running.contains(port)
            })
            .map(|(port, ..)| port)
    }

    /// Waits (bounded by `limit`) until every running node says `cluster_state:ok`, sees
    /// the same masters, and every running replica's link to its master is up.
    pub fn wait_until_ok(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let running = self.running();
            let ok = running.iter().all(|&port| {
                let info = self.cli(port, &["CLUSTER", "INFO"]);
                let replication = self.cli(port, &["INFO", "replication"]);
                info.contains("cluster_state:ok")
                    && (!replication.contains("role:slave")
                        || replication.contains("master_link_status:up"))
            });
            let agreed = ok && {
                let masters = self.masters();
                running.iter().all(|&port| {
                    let mut seen: Vec<u16> = self
                        .nodes_seen(port)
                        .into_iter()
                        .filter(|(port, flags, _, _, slots)| {
                            flags.contains("master")
                                && !flags.contains("fail")
                                && *slots
                                && running.contains(port)
                        })
                        .map(|(port, ..)| port)
                        .collect();
                    seen.sort_unstable();
                    seen == masters
                })
            };
            if agreed {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not settle within {limit:?}: {}",
                self.cli(running[0], &["CLUSTER", "NODES"])
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the node on `port` (SIGKILL: a crash, nothing saved) and waits until it is
    /// gone.
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.port == port)
            .expect("a node of this cluster");
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (such as `-STOP` or `-CONT`) to the node on `port`.
    pub fn signal(&self, port: u16, signal: &str) {
        let node = self
            .nodes
            .iter()
            .find(|node| node.port == port)
            .and_then(|node| node.child.as_ref())
            .expect("a running node of this cluster");
        let status = Command::new("kill")
            .args([signal, &node.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `program --version` runs.
fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A free loopback port for a cluster node: below 55536, with its cluster-bus twin
/// (port + 10000) free too, and not one of `taken`.
fn cluster_port(taken: &[Node]) -> u16 {
    for _ in 0..1000 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        if port >= 55536
            || taken.iter().any(|node| {
                node.port == port || node.port + 10000 == port || node.port == port + 10000
            })
        {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port + 10000)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port pair for a cluster node");
}
