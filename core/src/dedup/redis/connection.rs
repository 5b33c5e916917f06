//! The one connection type behind [`RedisStore`](super::RedisStore): a single server's
//! connection manager, or a Redis Cluster connection (the `redis-cluster` feature).

use redis::aio::ConnectionManager;
#[cfg(feature = "redis-cluster")]
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// Where the store's commands go. Both kinds multiplex every call over their
/// connections, reconnect by themselves, and are cheap to clone.
#[derive(Clone)]
pub(super) enum Connection {
    /// One server (or a managed endpoint that fails over behind one address).
    Server(ConnectionManager),
    /// A Redis Cluster: each command goes to the master of its key's slot; `MOVED` and
    /// `ASK` redirections are followed and the slot map refreshed by the cluster client.
    #[cfg(feature = "redis-cluster")]
    Cluster(ClusterConnection),
}

impl Connection {
    /// Which kind, for `Debug` output.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Self::Server(_) => "server",
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(_) => "cluster",
        }
    }
}

impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Server(connection) => connection.req_packed_command(cmd),
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Server(connection) => connection.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Server(connection) => connection.get_db(),
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}
