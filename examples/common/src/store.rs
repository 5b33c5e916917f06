//! The receivers' dedup store: in memory, or shared in Redis (the `redis` feature).

use std::sync::Arc;

use mapping_webhooks::{Begin, Claim, DedupStore, MemoryStore, RedisStore, StoreError};

/// The store a receiver's gate uses: the default bounded [`MemoryStore`] for one
/// process, or a [`RedisStore`] (one server or a cluster) that every replica shares.
///
/// Only so one `main` can pick either at startup from the environment (see
/// [`SharedStore`](crate::SharedStore)); an application that always runs one way passes
/// its store to `Gate::builder().dedup(..)` directly.
#[derive(Debug, Clone)]
pub enum ReceiverStore {
    /// One process: events remembered in memory.
    Memory(MemoryStore),
    /// Many replicas: events remembered in Redis.
    Redis(RedisStore),
}

impl DedupStore for ReceiverStore {
    async fn begin(&self, key: &str) -> Result<Begin, StoreError> {
        match self {
            Self::Memory(store) => store.begin(key).await,
            Self::Redis(store) => store.begin(key).await,
        }
    }

    async fn complete(&self, key: &str, claim: Claim) -> Result<(), StoreError> {
        match self {
            Self::Memory(store) => store.complete(key, claim).await,
            Self::Redis(store) => store.complete(key, claim).await,
        }
    }

    async fn abandon(&self, key: &str, claim: Claim) -> Result<(), StoreError> {
        match self {
            Self::Memory(store) => store.abandon(key, claim).await,
            Self::Redis(store) => store.abandon(key, claim).await,
        }
    }

    fn abandon_detached(self: Arc<Self>, key: String, claim: Claim) {
        // Each store's own way (the in-memory one frees the claim at once).
        match &*self {
            Self::Memory(store) => Arc::new(store.clone()).abandon_detached(key, claim),
            Self::Redis(store) => Arc::new(store.clone()).abandon_detached(key, claim),
        }
    }
}
