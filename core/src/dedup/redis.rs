//! The Redis store: see [`RedisStore`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
#[cfg(feature = "redis-cluster")]
use redis::cluster::ClusterClient;
use redis::{Client, Script};

use self::connection::Connection;
use super::{Begin, Claim, DEFAULT_LEASE, DEFAULT_TTL, DedupStore, StoreError, late_complete};

mod connection;

/// The default prefix of every key the store writes.
pub const DEFAULT_PREFIX: &str = "mapping-webhooks:";

/// The default time allowed for each Redis call (and for connecting).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Claims `KEYS[1]` with `ARGV[1]` for `ARGV[2]` ms; otherwise says what holds it.
/// Returns 0 (claimed: New), 1 (in flight) or 2 (done).
const BEGIN: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 0
end
if redis.call('GET', KEYS[1]) == 'done' then
  return 2
end
return 1
";

/// Marks `KEYS[1]` done for `ARGV[2]` ms if claim `ARGV[1]` holds it, or nothing does
/// (the claim expired while the handler ran), and says which: see [`Completed`].
const COMPLETE: &str = r"
local found = redis.call('GET', KEYS[1])
if found == ARGV[1] or not found then
  redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2])
  if found then
    return 0
  end
  return 1
end
if found == 'done' then
  return 3
end
return 2
";

/// What a `complete` found: the `COMPLETE` script's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Completed {
    /// 0: our claim still held the key; it is now done.
    OnTime,
    /// 1: the key was gone (our claim expired, or was evicted); it is now done anyway.
    Expired,
    /// 2: another claim holds the key (a retry took the event over); left alone.
    TakenOver,
    /// 3: the key was already done (a retry processed the event); left alone.
    AlreadyDone,
}

/// Deletes `KEYS[1]` if claim `ARGV[1]` still holds it. Returns 1 when it did.
const ABANDON: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// How many times the store tries to release the claim of a `begin` that got no answer
/// (see [`RedisStore::release_detached`]), and the pause before the second try (doubled each time):
/// with the default timeout, about 10 s in all.
const RELEASE_ATTEMPTS: u32 = 4;
const RELEASE_FIRST_PAUSE: Duration = Duration::from_millis(250);

/// How many times the store sends a failed `complete` again (see
/// [`RedisStore::complete_detached`]), and the longest pause between two tries.
const COMPLETE_ATTEMPTS: u32 = 10;
const COMPLETE_MAX_PAUSE: Duration = Duration::from_secs(5);

/// A [`DedupStore`] in Redis, shared by every replica of a receiver.
///
/// Behind a load balancer the sender's retries land on any replica, and a
/// [`MemoryStore`](super::MemoryStore) per process would let them through. `RedisStore`
/// keeps the same protocol in one Redis (or Valkey) that all replicas share, atomically
/// across processes. Enable the `redis` cargo feature to get it.
///
/// Cheap to clone: clones share one connection manager, which multiplexes every call
/// over one connection and reconnects by itself (on a cluster, one cluster connection,
/// with one such connection per node). Its `Debug` output shows the prefix and
/// durations, never the URL or its password.
///
/// ```no_run
/// use mapping_webhooks::{Gate, RedisStore, Secret};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379/")
///     .prefix("myapp:webhooks:")
///     .build()
///     .await?;
/// let gate = Gate::builder().secret("whsec_...").dedup(store).build()?;
/// # let _ = gate; Ok(()) }
/// ```
///
/// # What is stored
///
/// One string key per event, `{prefix}{key}` (the [`Gate`](crate::Gate) builds `key` from
/// its namespace and the signed `eventId`). Its value is either the 32 hex digits of the
/// claim of the request processing it, expiring after the lease, or `done`, expiring after
/// the TTL. Each step is one round trip, atomic on the server:
///
/// - `begin`: a Lua script runs `SET key <claim> NX PX <lease>` and, when the key exists,
///   reads it to tell an event in flight from one done;
/// - `complete`: a Lua script replaces our claim (or a key that expired meanwhile) with
///   `done` for the TTL, and leaves anything else alone; when the claim no longer held
///   the key (the handler outlived its lease), the store logs a warning;
/// - `abandon`: a Lua script deletes the key only if it still holds our claim, so a late
///   `abandon` never frees a claim a retry took over after the lease.
///
/// A `begin` that gets no answer (it timed out, or its future was dropped) may still run
/// on the server later, for instance once a paused or stalled Redis goes on, and take a
/// claim nobody holds. So the store then releases the claim it was taking, in the
/// background: the same compare-and-delete as `abandon`, sent after the `begin` on the
/// same connection, so the sender's next retry is processed instead of getting 409 for
/// the whole lease. A `complete` that fails (a timeout, a lost connection, a master
/// failing over) is sent again in the background, up to 10 times over about half a
/// minute: the sender already has its 2xx, and without
/// the record the claim would hold the event for the rest of its lease (retries get 409)
/// and then let it run again. Sending it again is harmless: it only ever replaces our
/// own claim, or a key that is gone.
///
/// The scripts are sent once (`SCRIPT LOAD` in [`build`](RedisStoreBuilder::build)) and
/// then called by their SHA-1 (`EVALSHA`); after a server restart the first call
/// reloads them by itself. Any Redis from 2.6.12 on, and Valkey, will do (Redis 3.0 or
/// Valkey 7.2 on for a cluster).
///
/// For TLS (`rediss://` URLs), enable the `redis` crate's `tokio-rustls-comp` (or
/// `tokio-native-tls-comp`) feature in your own `Cargo.toml`; this crate enables only
/// plain TCP and Unix sockets. Sentinel connections are not supported: use one server,
/// a managed endpoint that fails over behind one address, or a cluster.
///
/// # Redis Cluster
///
/// With the `redis-cluster` cargo feature, `RedisStore::cluster_builder`
/// builds the same store on a Redis Cluster (cluster-mode ElastiCache or MemoryDB, a
/// Valkey cluster), found through one or more seed nodes:
///
/// - Every script touches one key (`KEYS[1]`), so each call goes to the master of that
///   key's slot, atomically there as on one server. Keys carry no hash tag: they spread
///   over every master.
/// - The scripts are loaded on every node, replicas too, when the store is built. A
///   master that lacks them (restarted, added later, or a replica promoted that never
///   got them) answers `NOSCRIPT`, and the script is then loaded and run again.
/// - `MOVED` and `ASK` redirections, while slots move between masters, are followed by
///   the cluster client, which then refreshes its slot map.
/// - The [timeout](RedisStoreBuilder::timeout) bounds connecting to the seeds, each
///   node's connection and answers, and each call with the cluster client's own retries
///   included.
///
/// **On a failover**, until a replica is promoted (the cluster's `cluster-node-timeout`,
/// 15 s by default, plus an election of about a second), calls for the failed master's
/// keys (every key, while `cluster-require-full-coverage` is `yes`, the default) end in
/// a [`StoreError`] after the timeout: by default a 503, which the sender retries. The
/// store keeps no state to rebuild: once the replica is promoted, calls go to it. A
/// `complete` that failed meanwhile is sent again (see above). Replication is
/// asynchronous, so a claim or a done record that a master acknowledged and died before
/// sending to its replica is lost with it: a copy arriving later is processed again. See
/// the README's many-replica section for what Redis's `WAIT` would cost to close that
/// window.
///
/// The release of an unanswered `begin` relies on one connection's order (above): on a
/// cluster it goes over the same node's connection while the slot map is unchanged;
/// across a failover it may not, and the claim then expires after its lease.
///
/// The tests run against Redis 7.0 (Debian bookworm's `redis-server`), as one server and
/// as clusters of 3 masters with and without replicas. Valkey 7.2 and later speak the
/// same protocol and cluster bus; they are not run in CI.
///
/// # Defaults, and why
///
/// - Lease [`DEFAULT_LEASE`](super::DEFAULT_LEASE), 5 minutes: far longer than a handler
///   may run (the sender gives up on a request after 30 s), short enough that when a
///   replica crashes mid-event the sender's next retries (about 6 and 36 minutes after the
///   first attempt) are processed.
/// - TTL [`DEFAULT_TTL`](super::DEFAULT_TTL), 24 hours: the sender's retries span about
///   36 minutes; a day also covers a manual re-send from the dashboard.
/// - Timeout [`DEFAULT_TIMEOUT`], 2 seconds, on every call: a slow or unreachable Redis
///   turns into [`StoreError::Timeout`] (by default a 503, which the sender retries),
///   never into a request held past the sender's 30 s.
/// - Prefix [`DEFAULT_PREFIX`], `mapping-webhooks:`.
///
/// # Memory
///
/// Measured on Redis 7.0 (jemalloc, 64-bit) for a key `mapping-webhooks:` plus a
/// 30-character event id: `MEMORY USAGE` reports 152 bytes while in flight and 120 bytes
/// once done; counting the expiry entry and the hash tables too (`used_memory` before and
/// after 100 000 keys), about **210 bytes** per event in flight and **180 bytes** per
/// event done. With the default TTL, a receiver getting 100 000 events a day keeps about
/// 18 MB in Redis. Event ids longer than 128 bytes are hashed by the gate, so a key stays
/// small whatever the body holds.
///
/// Every key has an expiry, so under `maxmemory` a `volatile-*` or `allkeys-*` eviction
/// policy may evict any of them: not only done events (processed again if re-sent) but
/// **claims in flight**, and then a copy arriving while the handler still runs is
/// processed concurrently. `volatile-ttl` evicts the keys closest to expiring first,
/// which are claims (a lease of minutes against a TTL of a day); `volatile-lru` and
/// `volatile-random` pick among all of them. Use `noeviction` on a Redis (or a
/// database number of a Redis) that holds claims: a full Redis then turns into errors
/// (503 by default, which the sender retries, so nothing is lost or run twice). Size
/// `maxmemory` with the figures above, and do not share it with a cache that needs an
/// evicting policy.
///
/// # Time
///
/// Leases and TTLs are `PX` expiries, counted by the Redis server on its own clock, not
/// the receiver's: clock steps on the receivers do not matter. Redis stores each expiry
/// as an absolute Unix time and checks it against its host's wall clock, even while it
/// runs (as the `EXPIRE` documentation says), so a step of the Redis host's wall clock,
/// or a restart or failover onto a host whose clock differs, moves every expiry by that
/// much: forward, claims and done events end
/// early (a copy of an event in flight may then run concurrently, a re-sent done event
/// runs again); back, they last longer (retries get 409 longer). Keep the Redis hosts'
/// clocks synchronized (NTP with slewing, not stepping).
///
/// # When Redis restarts without persistence
///
/// Redis without RDB or AOF forgets every key when it restarts: events processed before
/// the restart are not remembered, and a late retry of one of them (the sender did not
/// get, or did not keep, our 2xx) is processed a second time. Claims in flight are
/// forgotten too, so a copy arriving meanwhile may run concurrently with the one already
/// running. The store itself recovers without being rebuilt: its connection manager
/// reconnects, and calls fail fast with a [`StoreError`] while Redis is away. A failover
/// to a replica that had not yet received the latest writes forgets those in the same way.
///
/// So deduplication makes duplicates rare, not impossible: keep handlers idempotent
/// (an upsert keyed by `eventId`, a unique constraint). Where exactly-once matters, let
/// the handler's own database keep the record: implement [`DedupStore`] over it, so the
/// record and the handler's writes live (and are backed up) together. A sketch, over a
/// table `webhook_events(key TEXT PRIMARY KEY, claim TEXT, state TEXT, until TIMESTAMP)`:
///
/// ```text
/// begin(key):    INSERT .. VALUES (key, claim, 'in_flight', now() + lease)
///                ON CONFLICT (key) DO UPDATE SET claim = excluded.claim, state = 'in_flight',
///                    until = excluded.until
///                    WHERE webhook_events.until < now()      -- an expired claim or record
///                RETURNING claim                              -- ours: New
///                else SELECT state                            -- 'in_flight' / 'done'
/// complete(key): UPDATE .. SET state = 'done', until = now() + ttl
///                WHERE key = $1 AND claim = $2
/// abandon(key):  DELETE .. WHERE key = $1 AND claim = $2 AND state = 'in_flight'
/// ```
///
/// and, better still, run `complete`'s `UPDATE` in the same transaction as the handler's
/// own writes.
#[derive(Clone)]
pub struct RedisStore {
    connection: Connection,
    scripts: Arc<Scripts>,
    prefix: Arc<str>,
    lease: Duration,
    ttl: Duration,
    timeout: Duration,
}

struct Scripts {
    begin: Script,
    complete: Script,
    abandon: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            begin: Script::new(BEGIN),
            complete: Script::new(COMPLETE),
            abandon: Script::new(ABANDON),
        }
    }
}

enum Source {
    Url(String),
    Client(Box<Client>),
    Manager(ConnectionManager),
    #[cfg(feature = "redis-cluster")]
    ClusterUrls(Vec<String>),
    #[cfg(feature = "redis-cluster")]
    ClusterClient(Box<ClusterClient>),
}

/// Configures a [`RedisStore`]. Its `Debug` output never shows the URL.
#[must_use]
pub struct RedisStoreBuilder {
    source: Source,
    prefix: String,
    lease: Duration,
    ttl: Duration,
    timeout: Duration,
}

impl RedisStore {
    /// Configures a store that connects to `url`, such as `redis://127.0.0.1:6379/`,
    /// `redis://:password@host:6379/0` or `redis+unix:///run/redis.sock`.
    ///
    /// The URL is only read when the store is built; it never appears in
    /// `Debug` output nor in errors.
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Source::Url(url.into()))
    }

    /// Configures a store that connects with `client`.
    pub fn builder_with_client(client: Client) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Source::Client(Box::new(client)))
    }

    /// Configures a store over a connection manager the application already has (its
    /// own reconnection and timeout settings then apply, under this store's timeout).
    pub fn builder_with_manager(manager: ConnectionManager) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Source::Manager(manager))
    }

    /// Configures a store on a Redis Cluster (or a Valkey cluster) that it finds through
    /// `nodes`, the URLs of one or more of its nodes (seeds), such as
    /// `["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"]`; the cluster client learns
    /// the others and the slot map from them. Needs the `redis-cluster` cargo feature.
    ///
    /// Every call touches one key, so each goes to the master of that key's slot, and
    /// the keys spread over the whole cluster (no hash tags). `MOVED` and `ASK`
    /// redirections (resharding, a failover) are followed by the cluster client; a
    /// master promoted from a replica that has not seen the scripts answers `NOSCRIPT`,
    /// and the script is then loaded again and run (see [`RedisStore`]'s "Redis
    /// Cluster" section).
    ///
    /// The URLs are only read when the store is built; they never appear in `Debug`
    /// output nor in errors. A password in the first URL is used for every node.
    ///
    /// ```no_run
    /// use mapping_webhooks::RedisStore;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisStore::cluster_builder([
    ///     "redis://127.0.0.1:7000/",
    ///     "redis://127.0.0.1:7001/",
    ///     "redis://127.0.0.1:7002/",
    /// ])
    /// .build()
    /// .await?;
    /// # let _ = store; Ok(()) }
    /// ```
    #[cfg(feature = "redis-cluster")]
    pub fn cluster_builder<I>(nodes: I) -> RedisStoreBuilder
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        RedisStoreBuilder::new(Source::ClusterUrls(
            nodes.into_iter().map(Into::into).collect(),
        ))
    }

    /// Configures a store on a Redis Cluster through `client`, built by the
    /// application (for TLS settings, credentials or retry settings of its own). The
    /// store's [timeout](RedisStoreBuilder::timeout) replaces the client's connection
    /// and response timeouts. Needs the `redis-cluster` cargo feature.
    #[cfg(feature = "redis-cluster")]
    pub fn builder_with_cluster_client(client: ClusterClient) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Source::ClusterClient(Box::new(client)))
    }

    /// Whether the store talks to a Redis Cluster (built with
    /// `RedisStore::cluster_builder`, with the `redis-cluster` feature) rather than one
    /// server.
    pub fn is_cluster(&self) -> bool {
        self.connection.kind() == "cluster"
    }

    /// The prefix of every key.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How long a claim lasts before a retry may take it over.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// How long a processed event is remembered.
    pub fn time_to_live(&self) -> Duration {
        self.ttl
    }

    /// The time allowed for each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Checks that Redis answers: one `PING` over the store's connection, bounded by the
    /// store's [timeout](Self::timeout). Meant for a readiness probe: while it fails, the
    /// gate answers deliveries 503 (or lets them through, with
    /// [`OnStoreError::PassThrough`](crate::OnStoreError::PassThrough)), so a load
    /// balancer may send them to a replica whose Redis answers instead.
    ///
    /// The store needs no rebuilding after Redis comes back: its connection manager
    /// reconnects by itself, and the first call after a restart (this one too) may still
    /// fail while it does. `PING` touches no key, so it can be called as often as a
    /// probe runs. On a cluster it goes to every master, and is `Ok` only while all of
    /// them answer (each holds a share of the keys); replicas are not asked.
    ///
    /// ```no_run
    /// use mapping_webhooks::RedisStore;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisStore::builder("redis://127.0.0.1:6379/").build().await?;
    /// // In the app's readiness route: 200 when Ok, 503 otherwise.
    /// let ready = store.ping().await.is_ok();
    /// # let _ = ready; Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Timeout`] when Redis did not answer within the timeout (it is
    /// frozen, overloaded, or unreachable without a refusal), and
    /// [`StoreError::Backend`] when the connection fails or Redis answers with an error
    /// (still loading its data, or a password is wanted); neither names the URL.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let ping = async { redis::cmd("PING").query_async::<()>(&mut connection).await };
        match tokio::time::timeout(self.timeout, ping).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(failed(error, self.timeout)),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    /// The Redis key of a store key: the prefix, then the key.
    fn redis_key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.len());
        full.push_str(&self.prefix);
        full.push_str(key);
        full
    }

    /// Runs a script under the timeout.
    async fn run(
        &self,
        script: &Script,
        key: &str,
        claim: Claim,
        millis: u64,
    ) -> Result<i64, StoreError> {
        let mut connection = self.connection.clone();
        let token = hex_token(claim);
        let call = async {
            script
                .key(self.redis_key(key))
                .arg(&token[..])
                .arg(millis)
                .invoke_async::<i64>(&mut connection)
                .await
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => Err(failed(error, self.timeout)),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    /// Marks `key` done if `claim` still holds it or nothing does, and warns when the
    /// handler finished after its lease ran out.
    async fn complete_now(&self, key: &str, claim: Claim) -> Result<Completed, StoreError> {
        let completed = match self
            .run(&self.scripts.complete, key, claim, millis(self.ttl))
            .await?
        {
            0 => Completed::OnTime,
            1 => Completed::Expired,
            3 => Completed::AlreadyDone,
            _ => Completed::TakenOver,
        };
        match completed {
            Completed::OnTime => {}
            Completed::Expired => late_complete(key, "its claim had expired"),
            Completed::TakenOver => {
                late_complete(key, "another copy took the event over and is running");
            }
            Completed::AlreadyDone => late_complete(key, "another copy already processed it"),
        }
        Ok(completed)
    }

    /// Releases, in the background, the claim that a `begin` without an answer may still
    /// take on the server.
    ///
    /// The release must run on the server *after* the `begin` it undoes, or it would find
    /// nothing to delete and the late `begin` would then block the key for the whole
    /// lease. That holds because:
    ///
    /// - both go through the store's one multiplexed connection, which writes commands
    ///   to the socket in the order they were queued, and Redis runs one connection's
    ///   commands in that order (a paused or frozen server queues them, then runs them
    ///   in order);
    /// - this is called only once the `begin` future is gone (the timeout dropped it, or
    ///   its caller did), so every command of the `begin` (its `EVALSHA`, and the `EVAL`
    ///   that follows a `NOSCRIPT`) is either queued ahead of the release or never sent.
    ///
    /// The one exception: when the connection breaks and the manager opens a new one in
    /// between, the release goes over the new connection and may run first; the claim
    /// then expires after its lease. A release that fails itself (a timeout while the
    /// server is still stalled, which may drop it unsent) is tried again, at most
    /// [`RELEASE_ATTEMPTS`] times. Releasing more than needed is harmless: the claim is
    /// fresh and random, so it can only delete what this very `begin` took.
    fn release_detached(&self, key: &str, claim: Claim) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let store = self.clone();
            let key = key.to_owned();
            runtime.spawn(async move { store.release(&key, claim).await });
        } else {
            tracing::warn!(
                key,
                "no runtime to release the claim of an unanswered dedup begin; it expires after its lease"
            );
        }
    }

    /// Sends a `complete` that failed again, in the background, until Redis answers:
    /// at most [`COMPLETE_ATTEMPTS`] times, [`RELEASE_FIRST_PAUSE`] apart at first,
    /// doubled each time up to [`COMPLETE_MAX_PAUSE`] (about 30 s in all, longer than a
    /// cluster failover with the default `cluster-node-timeout` of 15 s).
    ///
    /// Without it, a handler that finished while Redis failed over (its `complete` went
    /// to a master that died, or was refused while the cluster was down) would leave its
    /// claim on the promoted replica for the rest of the lease: every copy 409 for
    /// minutes, then processed again.
    fn complete_detached(&self, key: &str, claim: Claim) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.clone();
        let key = key.to_owned();
        runtime.spawn(async move {
            let mut pause = RELEASE_FIRST_PAUSE;
            for attempt in 1..=COMPLETE_ATTEMPTS {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(COMPLETE_MAX_PAUSE);
                let sent = store
                    .run(&store.scripts.complete, &key, claim, millis(store.ttl))
                    .await;
                match sent {
                    Ok(_) => {
                        tracing::info!(key, attempt, "a dedup complete that had failed went through");
                        return;
                    }
                    Err(error) if attempt == COMPLETE_ATTEMPTS => tracing::warn!(
                        %error,
                        key,
                        "could not record a processed webhook as done; its claim expires after its lease"
                    ),
                    Err(_) => {}
                }
            }
        });
    }

    async fn release(&self, key: &str, claim: Claim) {
        let mut pause = RELEASE_FIRST_PAUSE;
        for attempt in 1..=RELEASE_ATTEMPTS {
            match self.run(&self.scripts.abandon, key, claim, 0).await {
                Ok(_) => return,
                Err(error) if attempt == RELEASE_ATTEMPTS => {
                    tracing::warn!(
                        %error,
                        key,
                        "could not release the claim of an unanswered dedup begin; it expires after its lease"
                    );
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
    }

    /// Sends the scripts to the server, so requests only call them by hash.
    async fn load_scripts(&self) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        // One command each, not a pipeline: on a cluster, `SCRIPT LOAD` goes to every
        // node (replicas too, so a promoted one already has them).
        let load = async {
            for source in [BEGIN, COMPLETE, ABANDON] {
                redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(source)
                    .query_async::<()>(&mut connection)
                    .await?;
            }
            Ok::<(), redis::RedisError>(())
        };
        match tokio::time::timeout(self.timeout, load).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(failed(error, self.timeout)),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }
}

/// The claim as 32 lowercase hex digits, without allocating.
fn hex_token(claim: Claim) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let n = claim.as_u128();
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = DIGITS[((n >> (124 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// A Redis error as a store error: its own timeouts (the connection's response or
/// connection timeout, set to ours) are ours too.
fn failed(error: redis::RedisError, timeout: Duration) -> StoreError {
    if error.is_timeout() {
        StoreError::Timeout(timeout)
    } else {
        StoreError::backend(error)
    }
}

/// Whether a failed call may still have run on the server: anything but a refused
/// connection (nothing was sent) or an error answer from the server (it did not run).
fn may_have_run(error: &StoreError) -> bool {
    match error {
        StoreError::Backend(error) => {
            error
                .downcast_ref::<redis::RedisError>()
                .is_none_or(|error| {
                    !error.is_connection_refusal()
                        && !matches!(error.kind(), redis::ErrorKind::Server(_))
                })
        }
        StoreError::Timeout(_) | StoreError::Config(_) => true,
    }
}

/// A claim a `begin` is taking: released when the call ends without a definite answer,
/// or its future is dropped mid-call (see [`RedisStore::release_detached`]).
struct Taking<'a> {
    store: &'a RedisStore,
    key: &'a str,
    claim: Option<Claim>,
}

impl Taking<'_> {
    /// The server answered: nothing to release.
    fn answered(&mut self) {
        self.claim = None;
    }
}

impl Drop for Taking<'_> {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            self.store.release_detached(self.key, claim);
        }
    }
}

/// Whole milliseconds. The builder keeps leases and TTLs within
/// [`LEASE_RANGE`](super::LEASE_RANGE) and [`TTL_RANGE`](super::TTL_RANGE), so the expiries
/// sent are never 0 (which Redis refuses) nor past what it can add to its clock.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RedisStoreBuilder {
    fn new(source: Source) -> Self {
        Self {
            source,
            prefix: DEFAULT_PREFIX.to_owned(),
            lease: DEFAULT_LEASE,
            ttl: DEFAULT_TTL,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Prefixes every key with `prefix` (default [`DEFAULT_PREFIX`]), so several
    /// applications or endpoints can share one Redis without seeing each other's events.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a claim lasts before a retry may take it over (default
    /// [`DEFAULT_LEASE`](super::DEFAULT_LEASE)), within [`LEASE_RANGE`](super::LEASE_RANGE).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a processed event is remembered (default
    /// [`DEFAULT_TTL`](super::DEFAULT_TTL)), within [`TTL_RANGE`](super::TTL_RANGE).
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The time allowed for each Redis call, and for connecting (default
    /// [`DEFAULT_TIMEOUT`]). A call that takes longer fails with
    /// [`StoreError::Timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connects (unless built over a connection manager) and loads the scripts, so a
    /// wrong URL, password or server shows at startup.
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] for a lease or TTL out of range; [`StoreError::Backend`]
    /// when the URL is invalid, the server refuses the connection or the credentials, or
    /// cannot run Lua scripts; [`StoreError::Timeout`] when it does not answer within the
    /// timeout. The messages never include the URL.
    pub async fn build(self) -> Result<RedisStore, StoreError> {
        super::check_lease_and_ttl(self.lease, self.ttl)?;
        let timeout = self.timeout;
        let connection = match self.source {
            Source::Manager(ref manager) => Connection::Server(manager.clone()),
            Source::Url(ref url) => Connection::Server(connect(open(url)?, timeout).await?),
            Source::Client(ref client) => {
                Connection::Server(connect((**client).clone(), timeout).await?)
            }
            #[cfg(feature = "redis-cluster")]
            Source::ClusterUrls(ref urls) => {
                Connection::Cluster(cluster::connect(&cluster::open(urls)?, timeout).await?)
            }
            #[cfg(feature = "redis-cluster")]
            Source::ClusterClient(ref client) => {
                Connection::Cluster(cluster::connect(client, timeout).await?)
            }
        };
        let store = self.finish(connection);
        store.load_scripts().await?;
        Ok(store)
    }

    /// Builds the store without connecting: it connects on first use, so the
    /// application starts even while Redis is down (requests then get a
    /// [`StoreError`], by default a 503, until it is up).
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] for a lease or TTL out of range; [`StoreError::Backend`]
    /// when the URL is invalid, or when called outside a tokio runtime (the connection
    /// manager spawns its task on it).
    pub fn build_lazy(self) -> Result<RedisStore, StoreError> {
        super::check_lease_and_ttl(self.lease, self.ttl)?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::backend(
                "RedisStoreBuilder::build_lazy must be called inside a tokio runtime",
            ));
        }
        let connection = match self.source {
            Source::Manager(ref manager) => Connection::Server(manager.clone()),
            Source::Url(ref url) => Connection::Server(lazy(open(url)?, self.timeout)?),
            Source::Client(ref client) => {
                Connection::Server(lazy((**client).clone(), self.timeout)?)
            }
            #[cfg(feature = "redis-cluster")]
            Source::ClusterUrls(ref urls) => {
                Connection::Cluster(cluster::lazy(&cluster::open(urls)?, self.timeout))
            }
            #[cfg(feature = "redis-cluster")]
            Source::ClusterClient(ref client) => {
                Connection::Cluster(cluster::lazy(client, self.timeout))
            }
        };
        Ok(self.finish(connection))
    }

    fn finish(self, connection: Connection) -> RedisStore {
        RedisStore {
            connection,
            scripts: Arc::new(Scripts::new()),
            prefix: self.prefix.into(),
            lease: self.lease,
            ttl: self.ttl,
            timeout: self.timeout,
        }
    }
}

/// A client for `url`. The parser's error does not repeat the URL; ours does not either.
fn open(url: &str) -> Result<Client, StoreError> {
    Client::open(url).map_err(StoreError::backend)
}

/// How the store's connection manager connects: each attempt gives up after `timeout`,
/// and a lost connection is retried quickly (at most a second apart) so a restarted
/// Redis is found soon.
fn config(timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_max_delay(Duration::from_secs(1))
}

fn lazy(client: Client, timeout: Duration) -> Result<ConnectionManager, StoreError> {
    ConnectionManager::new_lazy_with_config(client, config(timeout)).map_err(StoreError::backend)
}

/// Connects, within `timeout`.
async fn connect(client: Client, timeout: Duration) -> Result<ConnectionManager, StoreError> {
    let config = config(timeout);
    match tokio::time::timeout(timeout, ConnectionManager::new_with_config(client, config)).await {
        Ok(Ok(manager)) => Ok(manager),
        Ok(Err(error)) => Err(failed(error, timeout)),
        Err(_) => Err(StoreError::Timeout(timeout)),
    }
}

/// Connecting to a Redis Cluster.
#[cfg(feature = "redis-cluster")]
mod cluster {
    use std::time::Duration;

    use redis::cluster::{ClusterClient, ClusterConfig};
    use redis::cluster_async::ClusterConnection;

    use super::{StoreError, failed};

    /// A cluster client for the seed `urls`. The parser's error does not repeat them.
    pub(super) fn open(urls: &[String]) -> Result<ClusterClient, StoreError> {
        if urls.is_empty() {
            return Err(StoreError::backend(
                "RedisStore::cluster_builder needs the URL of at least one cluster node",
            ));
        }
        ClusterClient::new(urls.iter().map(String::as_str)).map_err(StoreError::backend)
    }

    /// Each connection attempt to a node, and each answer, bounded by `timeout`; the
    /// cluster client's own retries (after a `MOVED`, a lost node) fit in it too.
    fn config(timeout: Duration) -> ClusterConfig {
        ClusterConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
    }

    /// Connects to the seeds and reads the slot map, within `timeout`.
    pub(super) async fn connect(
        client: &ClusterClient,
        timeout: Duration,
    ) -> Result<ClusterConnection, StoreError> {
        let connecting = client.get_async_connection_with_config(config(timeout));
        match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(failed(error, timeout)),
            Err(_) => Err(StoreError::Timeout(timeout)),
        }
    }

    /// Connects in the background: the first calls fail until the cluster answers.
    pub(super) fn lazy(client: &ClusterClient, timeout: Duration) -> ClusterConnection {
        client.get_pending_async_connection_with_config(config(timeout))
    }
}

impl DedupStore for RedisStore {
    async fn begin(&self, key: &str) -> Result<Begin, StoreError> {
        let claim = Claim::random();
        // Armed before the script is sent: if this future is dropped mid-call, or the call
        // fails in a way that leaves it unknown whether the script ran, the claim it may
        // yet take is released.
        let mut taking = Taking {
            store: self,
            key,
            claim: Some(claim),
        };
        let answer = self
            .run(&self.scripts.begin, key, claim, millis(self.lease))
            .await;
        let definite = match &answer {
            Ok(_) => true,
            Err(error) => !may_have_run(error),
        };
        if definite {
            taking.answered();
        }
        drop(taking);
        match answer? {
            0 => Ok(Begin::New(claim)),
            2 => Ok(Begin::Done),
            _ => Ok(Begin::InFlight),
        }
    }

    async fn complete(&self, key: &str, claim: Claim) -> Result<(), StoreError> {
        match self.complete_now(key, claim).await {
            Ok(_) => Ok(()),
            Err(error) => {
                self.complete_detached(key, claim);
                Err(error)
            }
        }
    }

    async fn abandon(&self, key: &str, claim: Claim) -> Result<(), StoreError> {
        self.run(&self.scripts.abandon, key, claim, 0).await?;
        Ok(())
    }

    // `abandon_detached` keeps the default: it spawns `abandon` on the current tokio
    // runtime, which the connection manager needs anyway, and `abandon` is bounded by the
    // timeout. Without a runtime the claim expires after its lease.
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("connection", &self.connection.kind())
            .field("prefix", &self.prefix)
            .field("lease", &self.lease)
            .field("ttl", &self.ttl)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match self.source {
            Source::Url(_) => "url",
            Source::Client(_) => "client",
            Source::Manager(_) => "connection manager",
            #[cfg(feature = "redis-cluster")]
            Source::ClusterUrls(_) => "cluster urls",
            #[cfg(feature = "redis-cluster")]
            Source::ClusterClient(_) => "cluster client",
        };
        f.debug_struct("RedisStoreBuilder")
            .field("source", &source)
            .field("prefix", &self.prefix)
            .field("lease", &self.lease)
            .field("ttl", &self.ttl)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A real `redis-server` for the tests below that need the store's internals.
#[cfg(test)]
#[path = "../../tests/redis_store/server.rs"]
mod test_server;

#[cfg(test)]
mod tests {
    use super::test_server::RedisServer;
    use super::*;

    fn claim_of(begin: Begin) -> Claim {
        match begin {
            Begin::New(claim) => claim,
            other => panic!("expected New, got {other:?}"),
        }
    }

    /// Polls `check` every 25 ms until it returns `Some`, for at most 10 s.
    async fn eventually<T, F: Future<Output = Option<T>>>(
        what: &str,
        mut check: impl FnMut() -> F,
    ) -> T {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(found) = check().await {
                return found;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: not within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    #[tokio::test]
    async fn a_complete_after_the_lease_is_reported_late() {
        let Some(server) = RedisServer::start("a_complete_after_the_lease_is_reported_late") else {
            return;
        };
        // Two replicas, each with its own connection, and the shortest lease.
        let replica = || async {
            RedisStore::builder(server.url())
                .lease(*super::super::LEASE_RANGE.start())
                .build()
                .await
                .unwrap()
        };
        let (a, b) = (replica().await, replica().await);
        let redis = Client::open(server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let get = |key: &'static str| {
            let mut redis = redis.clone();
            async move {
                redis::cmd("GET")
                    .arg(format!("mapping-webhooks:{key}"))
                    .query_async::<Option<String>>(&mut redis)
                    .await
                    .unwrap()
            }
        };

        // A's handler outlives its lease; a retry on B takes the event over.
        let slow = claim_of(a.begin("evt").await.unwrap());
        let retry = eventually("a retry takes the event over", || async {
            match b.begin("evt").await.unwrap() {
                Begin::New(claim) => Some(claim),
                _ => None,
            }
        })
        .await;
        // A finishes: reported late, and the retry's claim is left alone.
        assert_eq!(
            a.complete_now("evt", slow).await.unwrap(),
            Completed::TakenOver
        );
        assert_eq!(get("evt").await, Some(retry.to_string()));
        // B finishes in time: done.
        assert_eq!(
            b.complete_now("evt", retry).await.unwrap(),
            Completed::OnTime
        );
        assert_eq!(get("evt").await.as_deref(), Some("done"));
        // A late complete of a done event changes nothing, and is reported too.
        assert_eq!(
            a.complete_now("evt", slow).await.unwrap(),
            Completed::AlreadyDone
        );
        assert_eq!(a.begin("evt").await.unwrap(), Begin::Done);

        // A claim that expired with nobody taking over: still recorded done, but late.
        let alone = claim_of(a.begin("evt_2").await.unwrap());
        eventually("the lease runs out", || async {
            get("evt_2").await.is_none().then_some(())
        })
        .await;
        assert_eq!(
            a.complete_now("evt_2", alone).await.unwrap(),
            Completed::Expired
        );
        assert_eq!(b.begin("evt_2").await.unwrap(), Begin::Done);
    }

    #[test]
    fn tokens_are_the_claims_hex() {
        let claim = Claim::random();
        assert_eq!(
            std::str::from_utf8(&hex_token(claim)).unwrap(),
            claim.to_string()
        );
        assert_eq!(&hex_token(Claim::from_u128(0xab))[28..], b"00ab");
    }

    #[test]
    fn expiries_are_whole_milliseconds() {
        assert_eq!(millis(Duration::from_micros(2500)), 2);
        assert_eq!(millis(DEFAULT_TTL), 86_400_000);
        assert_eq!(millis(*super::super::TTL_RANGE.end()), 31_622_400_000);
    }

    #[test]
    fn the_builder_never_shows_the_url() {
        let builder = RedisStore::builder("redis://:hunter2@127.0.0.1:6379/");
        assert!(!format!("{builder:?}").contains("hunter2"));
    }
}
