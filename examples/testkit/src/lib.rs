//! The example receivers' process tests, as public functions of the receiver under test.
//!
//! Each receiver package (`axum-receiver`, `actix-receiver`, `inbox-receiver`,
//! `tenants-receiver`) has integration tests that call these scenarios with its own
//! binary, `env!("CARGO_BIN_EXE_<package>")`: Cargo builds a package's binaries for its
//! own integration tests only. Where a scenario needs the `sender` or the `rotate`
//! command, it takes a [`Tool`]: the command's binary, or its library's `run` called
//! in-process (the same code, for packages that cannot name the binary).
//!
//! - [`quick_start`]: the README's quick start, the sender's `--copies`, the refusal of
//!   the development secret on a public address, and graceful stops on signals;
//! - [`slow_clients`]: slowloris and idle connections against the header timeout and the
//!   connection cap;
//! - [`metrics_scrape`]: `METRICS_ADDR`, every count after a known sequence, and the
//!   Grafana dashboard's queries against the served metrics;
//! - [`rotation`]: the operator's rotation while deliveries flow, `SIGHUP`, and the
//!   `rotate` command's failures;
//! - [`tenants`]: the tenants receiver;
//! - [`inbox_crash`]: the inbox receiver killed between its 2xx and the processing, and
//!   under a file-size limit;
//! - [`inbox_forward`]: the inbox receiver as a forwarding gateway (`FORWARD_URL`);
//! - [`inbox_tool`]: the `inbox` operator tool: purge, a missing database, prune;
//! - [`tls`]: an HTTPS endpoint in front of a receiver or the API's stand-in.

pub mod inbox_crash;
pub mod inbox_forward;
pub mod inbox_tool;
pub mod metrics_scrape;
pub mod quick_start;
pub mod rotation;
pub mod shared_store;
pub mod slow_clients;
pub mod support;
pub mod tenants;
pub mod tls;

pub use support::{Ran, Tool};
