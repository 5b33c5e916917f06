//! What the example receivers share: the development secret, the configuration read
//! from the environment, the secrets file, logging, metrics, the shutdown signal, and
//! the line printed for each processed event.
//!
//! The examples are packages of their own next to this one, under `examples/`, each
//! building only what it uses:
//!
//! - `axum-receiver`: `POST /hooks/mapping` behind `mapping-webhooks-tower`;
//! - `actix-receiver`: the same route and output behind `mapping-webhooks-actix`;
//! - `sender`: signs an envelope and posts it, like the dashboard's Test button;
//! - `rotate`: rotates a destination's secret through the API and rewrites the
//!   receivers' secrets file ([`mapping_webhooks::secrets_file`]), which they reload
//!   while running;
//! - `tenants-receiver`: one endpoint for many Mapping.Travel accounts,
//!   `POST /hooks/mapping/{tenant}`, each tenant's secrets from a file;
//! - `inbox-receiver`: the same route and output, through a durable inbox (SQLite by
//!   default, Postgres when `DATABASE_URL` says so): stored first, processed by a worker;
//!   its `inbox` binary lists, shows, replays and purges the inbox's deliveries;
//! - `schemes-receiver`: `POST /hooks/{scheme}` for each other sender's scheme whose
//!   secret is set (Standard Webhooks, Svix, Stripe, GitHub, Shopify, Slack), one gate
//!   per route, and `/hooks/mapping`;
//! - `load-test`: the load test's server and request signer, and the inbox benchmark.
//!
//! Only process plumbing lives here: each receiver's `main.rs` shows the library calls
//! themselves (the secrets, the gate, the layer or middleware, the store, the observer,
//! the handler).
//!
//! Features: `receiver` adds logging (`init_tracing`) and the Prometheus recorder
//! (`ReceiverConfig::install_metrics`), for the receivers; `axum` adds
//! `ReceiverConfig::serve_metrics` (axum, served by `mapping_webhooks_tower::serve`), for
//! the receivers served by axum. Without them nothing here
//! depends on a web framework, a log subscriber or a metrics exporter (the sender and
//! `rotate` use neither). `client` adds their HTTP client (module `client`), and
//! `https` its TLS (rustls).
//!
//! Quick start, in two terminals:
//!
//! ```text
//! cargo run -p axum-receiver
//! cargo run -p sender
//! ```

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mapping_webhooks::{Secret, Secrets, Verified};
#[cfg(feature = "receiver")]
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "redis")]
mod store;

#[cfg(feature = "redis")]
pub use store::ReceiverStore;

use mapping_webhooks::secrets_file::{self, SecretsFile};

/// The secret the examples use when `MAPPING_WEBHOOK_SECRET` is not set, and the one the
/// sender signs with by default. It is public: never use it for a real endpoint.
pub const DEV_SECRET: &str = "whsec_dev_only_do_not_use_in_production_0000";

/// The path the example receivers serve.
pub const WEBHOOK_PATH: &str = "/hooks/mapping";

/// Where the receivers listen when neither `BIND_ADDR` nor `PORT` is set.
pub const DEFAULT_BIND_ADDR: &str = "127.0.0.1:3000";

/// How long a client has to send a request's headers when `HEADER_TIMEOUT_SECS` is not
/// set: on a new connection, and on a kept-alive one from the end of the last response
/// (so an idle connection is closed after this long too).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// How many connections a receiver keeps open at once when `MAX_CONNECTIONS` is not set.
/// Further clients wait in the listen queue. Half of the usual limit of 1,024 open files,
/// so that a flood of connections cannot take the descriptors the process needs for
/// anything else (files, Redis, logs).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// The receivers' configuration, from the environment.
#[derive(Clone)]
#[non_exhaustive]
pub struct ReceiverConfig {
    /// `MAPPING_WEBHOOK_SECRET`, or [`DEV_SECRET`] when it is unset or empty and the
    /// receiver listens on a loopback address; empty when the secrets come from
    /// [`secret_file`](Self::secret_file).
    pub secret: String,
    /// `MAPPING_WEBHOOK_SECRET_PREVIOUS`, during a rotation.
    pub previous_secret: Option<String>,
    /// `MAPPING_WEBHOOK_SECRET_FILE`: the secrets come from this file (one per line, the
    /// current one first) and are reloaded when it changes; the two variables above are
    /// then not used.
    pub secret_file: Option<PathBuf>,
    /// `MAPPING_WEBHOOK_SECRET_FILE_POLL_SECS`, else
    /// [`DEFAULT_POLL_INTERVAL`](secrets_file::DEFAULT_POLL_INTERVAL): how often the
    /// secrets file is checked for changes; `0` checks only on `SIGHUP`.
    pub secret_file_poll: Option<Duration>,
    /// `BIND_ADDR`; else `0.0.0.0:$PORT` when `PORT` is set (as hosting platforms do);
    /// else [`DEFAULT_BIND_ADDR`].
    pub bind_addr: SocketAddr,
    /// Whether [`secret`](Self::secret) is the development secret.
    pub dev_secret: bool,
    /// `HEADER_TIMEOUT_SECS`, else [`DEFAULT_HEADER_TIMEOUT`]: the time allowed for a
    /// request's headers, and for an idle kept-alive connection's next request. The body
    /// has its own deadline, the webhook layer's read timeout.
    pub header_timeout: Duration,
    /// `MAX_CONNECTIONS`, else [`DEFAULT_MAX_CONNECTIONS`]: connections open at once.
    pub max_connections: usize,
    /// `METRICS_ADDR`: where to serve `GET /metrics` for Prometheus, on its own
    /// listener. Unset (the default): no metrics are recorded or served.
    pub metrics_addr: Option<SocketAddr>,
    /// `REDIS_URL` or `REDIS_CLUSTER_URLS`: the dedup store every replica shares. Unset
    /// (the default): each process remembers events in memory.
    pub shared_store: Option<SharedStore>,
}

/// Where the replicas of a receiver share their dedup store, from the environment.
#[derive(Clone, PartialEq, Eq)]
pub enum SharedStore {
    /// `REDIS_URL`: one Redis, `redis://[:password@]host:port[/db]` or `rediss://` for
    /// TLS (or a managed endpoint that fails over behind one address).
    Redis(String),
    /// `REDIS_CLUSTER_URLS`: a Redis Cluster, by the comma-separated URLs of one or more
    /// of its nodes.
    RedisCluster(Vec<String>),
}

impl SharedStore {
    /// Reads `REDIS_URL` and `REDIS_CLUSTER_URLS` through `var`; `None` when neither is
    /// set (or both are blank).
    ///
    /// # Errors
    ///
    /// When both are set (one store only), or `REDIS_CLUSTER_URLS` holds no URL. The
    /// message never repeats a URL: it may hold a password.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        match (set("REDIS_URL"), set("REDIS_CLUSTER_URLS")) {
            (Some(_), Some(_)) => Err("REDIS_URL and REDIS_CLUSTER_URLS are both set: set \
                 REDIS_URL for one Redis, or REDIS_CLUSTER_URLS for a cluster's nodes"
                .to_owned()),
            (Some(url), None) => Ok(Some(Self::Redis(url.trim().to_owned()))),
            (None, Some(urls)) => {
                let urls: Vec<String> = urls
                    .split(',')
                    .map(str::trim)
                    .filter(|url| !url.is_empty())
                    .map(str::to_owned)
                    .collect();
                if urls.is_empty() {
                    return Err("REDIS_CLUSTER_URLS holds no URL: give one or more of the \
                         cluster's nodes, comma-separated (redis://10.0.0.1:6379,...)"
                        .to_owned());
                }
                Ok(Some(Self::RedisCluster(urls)))
            }
            (None, None) => Ok(None),
        }
    }

    /// Reads `REDIS_URL` and `REDIS_CLUSTER_URLS` from the process environment.
    ///
    /// # Errors
    ///
    /// As [`from_lookup`](Self::from_lookup).
    pub fn from_env() -> Result<Option<Self>, String> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

/// Never shows a URL (it may hold a password): only which kind, and how many nodes.
impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Redis(_) => f.write_str("Redis(••••)"),
            Self::RedisCluster(urls) => write!(f, "RedisCluster({} nodes)", urls.len()),
        }
    }
}

impl std::fmt::Debug for ReceiverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverConfig")
            .field("secret", &"••••")
            .field(
                "previous_secret",
                &self.previous_secret.as_ref().map(|_| "••••"),
            )
            .field("secret_file", &self.secret_file)
            .field("bind_addr", &self.bind_addr)
            .field("dev_secret", &self.dev_secret)
            .field("header_timeout", &self.header_timeout)
            .field("max_connections", &self.max_connections)
            .field("metrics_addr", &self.metrics_addr)
            .field("shared_store", &self.shared_store)
            .finish()
    }
}

impl ReceiverConfig {
    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    ///
    /// A message naming the variable when `BIND_ADDR`, `PORT`, `HEADER_TIMEOUT_SECS` or
    /// `MAX_CONNECTIONS` does not parse, or when
    /// `MAPPING_WEBHOOK_SECRET` is unset and the address is not a loopback one (the
    /// development secret is public: anyone could sign requests for a reachable receiver).
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `var` (for tests).
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let secret_file = set("MAPPING_WEBHOOK_SECRET_FILE").map(PathBuf::from);
        if secret_file.is_some()
            && (set("MAPPING_WEBHOOK_SECRET").is_some()
                || set("MAPPING_WEBHOOK_SECRET_PREVIOUS").is_some())
        {
            return Err(
                "MAPPING_WEBHOOK_SECRET_FILE is set, and so is MAPPING_WEBHOOK_SECRET \
                        or MAPPING_WEBHOOK_SECRET_PREVIOUS: set only one way of giving the \
                        secrets (the file holds the current secret first, then previous ones)"
                    .to_owned(),
            );
        }
        let (secret, dev_secret) = match (set("MAPPING_WEBHOOK_SECRET"), &secret_file) {
            (Some(secret), _) => (secret, false),
            (None, Some(_)) => (String::new(), false),
            (None, None) => (DEV_SECRET.to_owned(), true),
        };
        let bind_addr = match (set("BIND_ADDR"), set("PORT")) {
            (Some(addr), _) => addr.trim().parse().map_err(|e| {
                format!("BIND_ADDR={addr:?} is not an address like 127.0.0.1:3000: {e}")
            })?,
            (None, Some(port)) => {
                let port: u16 = port
                    .trim()
                    .parse()
                    .map_err(|e| format!("PORT={port:?} is not a port number: {e}"))?;
                SocketAddr::from(([0, 0, 0, 0], port))
            }
            (None, None) => DEFAULT_BIND_ADDR.parse().expect("a valid default"),
        };
        // `::ffff:127.0.0.1` is loopback too.
        if dev_secret && !bind_addr.ip().to_canonical().is_loopback() {
            return Err(format!(
                "MAPPING_WEBHOOK_SECRET is not set, and {bind_addr} is not a loopback address: \
                 refusing to accept requests signed with the public development secret from \
                 the network. Set MAPPING_WEBHOOK_SECRET to the whsec_... secret the \
                 dashboard showed (or, to try the example locally, BIND_ADDR=127.0.0.1:3000)."
            ));
        }
        let positive = |name: &str| -> Result<Option<u64>, String> {
            set(name)
                .map(|value| {
                    value.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("{name}={value:?} is not a whole number of at least 1")
                    })
                })
                .transpose()
        };
        let header_timeout =
            positive("HEADER_TIMEOUT_SECS")?.map_or(DEFAULT_HEADER_TIMEOUT, Duration::from_secs);
        let max_connections = match positive("MAX_CONNECTIONS")? {
            Some(n) => {
                usize::try_from(n).map_err(|_| format!("MAX_CONNECTIONS={n} is too large"))?
            }
            None => DEFAULT_MAX_CONNECTIONS,
        };
        let secret_file_poll = match set("MAPPING_WEBHOOK_SECRET_FILE_POLL_SECS") {
            None => Some(secrets_file::DEFAULT_POLL_INTERVAL),
            Some(value) => match value.trim().parse::<u64>() {
                Ok(0) => None,
                Ok(secs) => Some(Duration::from_secs(secs)),
                Err(_) => {
                    return Err(format!(
                        "MAPPING_WEBHOOK_SECRET_FILE_POLL_SECS={value:?} is not a whole number \
                         of seconds (0: reload only on SIGHUP)"
                    ));
                }
            },
        };
        let metrics_addr = set("METRICS_ADDR")
            .map(|addr| {
                addr.trim().parse().map_err(|e| {
                    format!("METRICS_ADDR={addr:?} is not an address like 127.0.0.1:9000: {e}")
                })
            })
            .transpose()?;
        let shared_store = SharedStore::from_lookup(&var)?;
        Ok(Self {
            secret,
            previous_secret: set("MAPPING_WEBHOOK_SECRET_PREVIOUS"),
            secret_file,
            secret_file_poll,
            bind_addr,
            dev_secret,
            header_timeout,
            max_connections,
            metrics_addr,
            shared_store,
        })
    }

    /// The secrets handle: from the secrets file when one is configured (with the file,
    /// to [watch](SecretsFile::watch) it), else from the environment.
    ///
    /// # Errors
    ///
    /// A message when the file cannot be read or holds no secret, or a secret is blank.
    pub fn secrets(&self) -> Result<(Secrets, Option<SecretsFile>), String> {
        if let Some(path) = &self.secret_file {
            let (file, secrets) = SecretsFile::load(path).map_err(|e| e.to_string())?;
            return Ok((secrets, Some(file)));
        }
        let current = Secret::new(&self.secret).map_err(|e| e.to_string())?;
        let previous = self.previous_secret.as_ref().map(Secret::new).transpose();
        let previous = previous.map_err(|e| e.to_string())?;
        Ok((Secrets::with_previous(current, previous), None))
    }

    /// Starts watching the secrets file, if there is one, on the current tokio runtime
    /// (see [`SecretsFile::watch`]).
    pub fn watch_secrets_file(&self, file: Option<SecretsFile>, secrets: &Secrets) {
        if let Some(file) = file {
            tokio::spawn(file.watch(secrets.clone(), self.secret_file_poll));
        }
    }

    /// With `METRICS_ADDR` set: installs the Prometheus recorder (histogram buckets from
    /// 10 µs to 30 s for the `_seconds` metrics) and returns the handle that renders
    /// `/metrics`; build the observers afterwards. Without it: nothing, `None`.
    ///
    /// # Errors
    ///
    /// When a recorder is already installed.
    #[cfg(feature = "receiver")]
    pub fn install_metrics(&self) -> Result<Option<PrometheusHandle>, String> {
        if self.metrics_addr.is_none() {
            return Ok(None);
        }
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
            .and_then(PrometheusBuilder::install_recorder)
            .map(Some)
            .map_err(|e| format!("cannot install the Prometheus recorder: {e}"))
    }

    /// Serves `handle`'s metrics on `GET /metrics` at `METRICS_ADDR` (if set), on a
    /// listener of its own served like the webhooks (header timeout, connection cap),
    /// and runs the recorder's upkeep; both in the background, for the process's life.
    ///
    /// # Errors
    ///
    /// When `METRICS_ADDR` cannot be listened on.
    #[cfg(all(feature = "receiver", feature = "axum"))]
    pub async fn serve_metrics(&self, handle: PrometheusHandle) -> Result<(), String> {
        let Some(addr) = self.metrics_addr else {
            return Ok(());
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(METRICS_UPKEEP);
            loop {
                every.tick().await;
                upkeep.run_upkeep();
            }
        });
        let metrics = axum::Router::new().route(
            METRICS_PATH,
            axum::routing::get(move || std::future::ready(handle.render())),
        );
        let serve = mapping_webhooks_tower::serve(listener, metrics)
            .header_timeout(self.header_timeout)
            .max_connections(self.max_connections);
        tokio::spawn(serve.into_future());
        tracing::info!("serving metrics on http://{addr}{METRICS_PATH}");
        Ok(())
    }

    /// What each receiver starts with: logs to stderr ([`init_tracing`]), the
    /// configuration from the environment ([`from_env`](Self::from_env)), and the
    /// development secret announced if it is in use. `None` once it has logged why the
    /// configuration is refused.
    #[cfg(feature = "receiver")]
    pub fn start() -> Option<Self> {
        init_tracing();
        match Self::from_env() {
            Ok(config) => {
                config.warn_if_dev_secret();
                Some(config)
            }
            Err(message) => {
                tracing::error!("{message}");
                None
            }
        }
    }

    /// Says loudly, on stderr, when the development secret is in use.
    pub fn warn_if_dev_secret(&self) {
        if self.dev_secret {
            let rule = "*".repeat(76);
            let lines = [
                "MAPPING_WEBHOOK_SECRET is not set: using the DEVELOPMENT secret",
                DEV_SECRET,
                "It is public: anyone can sign requests with it. Set the real secret",
                "(the whsec_... string the dashboard showed) before exposing this.",
            ];
            let mut banner = format!("\n{rule}\n");
            for line in lines {
                banner.push_str(&format!("*  {line:<70}  *\n"));
            }
            banner.push_str(&rule);
            eprintln!("{banner}\n");
        }
    }
}

/// Resolves when the process is asked to stop: Ctrl-C (SIGINT) or, on Unix, SIGTERM
/// (what `kill`, systemd, Docker and Kubernetes send). Logs which, and that the receiver
/// now finishes the requests in progress before it exits.
///
/// # Panics
///
/// When the signal handlers cannot be installed (outside a tokio runtime).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    let which = {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "Ctrl-C",
            _ = terminate.recv() => "SIGTERM",
        }
    };
    #[cfg(not(unix))]
    let which = {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    };
    tracing::info!(
        "{which} received: shutting down gracefully, finishing the requests in progress"
    );
}
/// The histogram buckets of the `_seconds` metrics: verification takes microseconds,
/// a store call up to its 2 s timeout, a handler up to the sender's 30 s.
pub const SECONDS_BUCKETS: [f64; 14] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0,
];

/// How often the receivers run the Prometheus recorder's upkeep (it folds recorded
/// histogram samples into their buckets, so memory stays bounded between scrapes).
pub const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// The path the metrics listener serves.
pub const METRICS_PATH: &str = "/metrics";

/// Sends logs to stderr, filtered by `RUST_LOG` (default `info`).
#[cfg(feature = "receiver")]
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The JSON line printed for a processed event.
pub fn event_line(verified: &Verified, api_version: &str) -> String {
    let mut line = serde_json::json!({
        "eventId": verified.event_id,
        "type": verified.event_type,
        "deliveryId": verified.delivery_id,
        "apiVersion": api_version,
        "signedAt": verified.timestamp,
        "secret": verified.secret.to_string(),
    });
    // The tenants receiver's events say whose they are.
    if let Some(tenant) = &verified.tenant {
        line["tenant"] = tenant.as_str().into();
    }
    line.to_string()
}

/// The fields of [`event_line`], for a receiver that has them apart (the inbox worker
/// reads them from the stored delivery).
#[derive(Debug, Clone, Copy)]
pub struct EventLine<'a> {
    /// `eventId`.
    pub event_id: &'a str,
    /// `type`.
    pub event_type: &'a str,
    /// `deliveryId`: the envelope's `id`.
    pub delivery_id: &'a str,
    /// `apiVersion`.
    pub api_version: &'a str,
    /// `signedAt`: the signature's `t`.
    pub signed_at: u64,
    /// `secret`: `current` or `previous[i]`.
    pub secret: &'a str,
}

impl std::fmt::Display for EventLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let line = serde_json::json!({
            "eventId": self.event_id,
            "type": self.event_type,
            "deliveryId": self.delivery_id,
            "apiVersion": self.api_version,
            "signedAt": self.signed_at,
            "secret": self.secret,
        });
        write!(f, "{line}")
    }
}

/// Prints a line on stdout, flushed.
pub fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout must not turn a processed event into a failed one.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Prints [`event_line`] on stdout, one line, flushed.
pub fn print_event(verified: &Verified, api_version: &str) {
    let line = event_line(verified, api_version);
    let mut out = std::io::stdout().lock();
    // A closed stdout must not turn a processed event into a failed one.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn defaults_to_the_dev_secret_on_loopback() {
        let c = ReceiverConfig::from_lookup(env(&[])).unwrap();
        assert!(c.dev_secret);
        assert_eq!(c.secret, DEV_SECRET);
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:3000");
        assert_eq!(c.header_timeout, Duration::from_secs(5));
        assert_eq!(c.max_connections, 512);
        assert_eq!(c.metrics_addr, None);
        assert!(!format!("{c:?}").contains(DEV_SECRET));
    }

    #[test]
    fn reads_the_connection_limits() {
        let c = ReceiverConfig::from_lookup(env(&[
            ("HEADER_TIMEOUT_SECS", "2"),
            ("MAX_CONNECTIONS", " 64 "),
        ]))
        .unwrap();
        assert_eq!(c.header_timeout, Duration::from_secs(2));
        assert_eq!(c.max_connections, 64);
        let c = ReceiverConfig::from_lookup(env(&[("METRICS_ADDR", "127.0.0.1:9000")])).unwrap();
        assert_eq!(
            c.metrics_addr,
            Some(SocketAddr::from(([127, 0, 0, 1], 9000)))
        );
        for (name, value) in [
            ("HEADER_TIMEOUT_SECS", "0"),
            ("HEADER_TIMEOUT_SECS", "1.5"),
            ("MAX_CONNECTIONS", "0"),
            ("MAX_CONNECTIONS", "many"),
            ("METRICS_ADDR", "9000"),
        ] {
            let e = ReceiverConfig::from_lookup(env(&[(name, value)])).unwrap_err();
            assert!(e.contains(name), "{e}");
        }
    }

    #[test]
    fn reads_the_shared_store() {
        let c = ReceiverConfig::from_lookup(env(&[])).unwrap();
        assert_eq!(c.shared_store, None);
        let url = "rediss://:hunter2@redis.internal:6380/0";
        let c = ReceiverConfig::from_lookup(env(&[("REDIS_URL", url)])).unwrap();
        assert_eq!(c.shared_store, Some(SharedStore::Redis(url.to_owned())));
        assert!(!format!("{c:?}").contains("hunter2"), "{c:?}");
        let c = ReceiverConfig::from_lookup(env(&[(
            "REDIS_CLUSTER_URLS",
            " redis://:hunter2@10.0.0.1:7000 ,redis://10.0.0.2:7000,, ",
        )]))
        .unwrap();
        assert_eq!(
            c.shared_store,
            Some(SharedStore::RedisCluster(vec![
                "redis://:hunter2@10.0.0.1:7000".to_owned(),
                "redis://10.0.0.2:7000".to_owned(),
            ]))
        );
        assert!(!format!("{c:?}").contains("hunter2"), "{c:?}");
        for vars in [
            &[("REDIS_URL", url), ("REDIS_CLUSTER_URLS", url)][..],
            &[("REDIS_CLUSTER_URLS", " , ")][..],
        ] {
            let e = ReceiverConfig::from_lookup(env(vars)).unwrap_err();
            assert!(
                e.contains("REDIS_CLUSTER_URLS") && !e.contains("hunter2"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_secrets_accept_the_current_and_the_previous_secret() {
        use mapping_webhooks::{Gate, MatchedSecret, Signer};
        let c = ReceiverConfig::from_lookup(env(&[
            ("MAPPING_WEBHOOK_SECRET", "whsec_new"),
            ("MAPPING_WEBHOOK_SECRET_PREVIOUS", "whsec_old"),
        ]))
        .unwrap();
        let (secrets, _) = c.secrets().unwrap();
        let gate = Gate::from_secrets(secrets);
        let body = br#"{"eventId":"evt_1","type":"mapping.completed"}"#;
        for (secret, matched) in [
            ("whsec_new", MatchedSecret::Current),
            ("whsec_old", MatchedSecret::Previous(0)),
        ] {
            let header = Signer::new(Secret::new(secret).unwrap()).sign_now(body);
            let verified = gate.verifier().verify(&header, body).unwrap();
            assert_eq!(verified.secret, matched);
        }
        let header = Signer::new(Secret::new("whsec_other").unwrap()).sign_now(body);
        assert!(gate.verifier().verify(&header, body).is_err());
    }

    #[test]
    fn reads_the_secrets_file_setting() {
        let c = ReceiverConfig::from_lookup(env(&[
            ("MAPPING_WEBHOOK_SECRET_FILE", "/run/secrets/webhook"),
            ("BIND_ADDR", "0.0.0.0:3000"),
        ]))
        .unwrap();
        assert!(
            !c.dev_secret,
            "a file is a real secret: any address is fine"
        );
        assert_eq!(c.secret_file, Some("/run/secrets/webhook".into()));
        assert_eq!(c.secret_file_poll, Some(Duration::from_secs(1)));
        let c = ReceiverConfig::from_lookup(env(&[
            ("MAPPING_WEBHOOK_SECRET_FILE", "/s"),
            ("MAPPING_WEBHOOK_SECRET_FILE_POLL_SECS", "0"),
        ]))
        .unwrap();
        assert_eq!(c.secret_file_poll, None, "0: only on SIGHUP");
        for vars in [
            &[
                ("MAPPING_WEBHOOK_SECRET_FILE", "/s"),
                ("MAPPING_WEBHOOK_SECRET", "whsec_x"),
            ][..],
            &[
                ("MAPPING_WEBHOOK_SECRET_FILE", "/s"),
                ("MAPPING_WEBHOOK_SECRET_PREVIOUS", "whsec_x"),
            ],
            &[("MAPPING_WEBHOOK_SECRET_FILE_POLL_SECS", "soon")],
        ] {
            let e = ReceiverConfig::from_lookup(env(vars)).unwrap_err();
            assert!(e.contains("MAPPING_WEBHOOK_SECRET_FILE"), "{vars:?}: {e}");
        }
        // A file that cannot be read stops the receiver from starting.
        let c =
            ReceiverConfig::from_lookup(env(&[("MAPPING_WEBHOOK_SECRET_FILE", "/nonexistent/s")]))
                .unwrap();
        assert!(c.secrets().unwrap_err().contains("/nonexistent/s"));
    }

    #[test]
    fn reads_secrets_and_addresses() {
        let c = ReceiverConfig::from_lookup(env(&[
            ("MAPPING_WEBHOOK_SECRET", "whsec_real"),
            ("MAPPING_WEBHOOK_SECRET_PREVIOUS", "whsec_old"),
            ("BIND_ADDR", "127.0.0.1:8080"),
            ("PORT", "9999"),
        ]))
        .unwrap();
        assert!(!c.dev_secret);
        assert_eq!(c.previous_secret.as_deref(), Some("whsec_old"));
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:8080");
        let c = ReceiverConfig::from_lookup(env(&[
            ("MAPPING_WEBHOOK_SECRET", "whsec_real"),
            ("PORT", "4000"),
        ]))
        .unwrap();
        assert_eq!(c.bind_addr.to_string(), "0.0.0.0:4000");
        assert!(!c.dev_secret);
    }

    #[test]
    fn the_dev_secret_is_only_served_on_loopback() {
        // What a hosting platform does: PORT set, the secret forgotten.
        for vars in [
            &[("PORT", "8080")][..],
            &[("BIND_ADDR", "0.0.0.0:3000")],
            &[("BIND_ADDR", "[::]:3000")],
            &[("BIND_ADDR", "192.168.1.20:3000")],
            &[
                ("BIND_ADDR", "0.0.0.0:3000"),
                ("MAPPING_WEBHOOK_SECRET", " "),
            ],
        ] {
            let e = ReceiverConfig::from_lookup(env(vars)).unwrap_err();
            assert!(e.contains("MAPPING_WEBHOOK_SECRET"), "{vars:?}: {e}");
            assert!(!e.contains(DEV_SECRET), "{vars:?}: {e}");
        }
        for addr in [
            "127.0.0.1:3001",
            "127.0.0.2:3001",
            "[::1]:3001",
            "[::ffff:127.0.0.1]:3001",
        ] {
            let c = ReceiverConfig::from_lookup(env(&[("BIND_ADDR", addr), ("PORT", "80")]))
                .unwrap_or_else(|e| panic!("{addr}: {e}"));
            assert!(c.dev_secret, "{addr}");
            assert_eq!(c.secret, DEV_SECRET);
        }
        for addr in ["0.0.0.0:3001", "[::]:3001"] {
            let c = ReceiverConfig::from_lookup(env(&[
                ("BIND_ADDR", addr),
                ("MAPPING_WEBHOOK_SECRET", "whsec_real"),
            ]))
            .unwrap_or_else(|e| panic!("{addr}: {e}"));
            assert_eq!((c.secret.as_str(), c.dev_secret), ("whsec_real", false));
        }
    }

    #[test]
    fn empty_means_unset_and_bad_values_are_named() {
        let c = ReceiverConfig::from_lookup(env(&[("MAPPING_WEBHOOK_SECRET", " ")])).unwrap();
        assert!(c.dev_secret);
        let e = ReceiverConfig::from_lookup(env(&[("PORT", "http")])).unwrap_err();
        assert!(e.contains("PORT"), "{e}");
        let e = ReceiverConfig::from_lookup(env(&[("BIND_ADDR", "localhost")])).unwrap_err();
        assert!(e.contains("BIND_ADDR"), "{e}");
    }
}
