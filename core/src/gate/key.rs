//! The dedup key scheme: distinct (namespace, tenant, `eventId`) triples never share a key.

use sha2::{Digest, Sha256};

use super::Gate;
use crate::dedup::DedupStore;
use crate::header::encode_hex32;
use crate::scheme::Scheme;

impl<D: DedupStore> Gate<D> {
    /// The dedup store key for an event: `{namespace}:id:{eventId}`, or
    /// `{namespace}:sha256:{hex}` for an `eventId` longer than 128 bytes (so no input makes
    /// a key large).
    ///
    /// The namespace is written with `%` as `%25` and `:` as `%3A`, so the first `:` always
    /// ends it, and the tag after it tells a plain id from a digest: two distinct
    /// (namespace, `eventId`) pairs never share a key. Without a namespace the key starts
    /// with `:`.
    ///
    /// ```
    /// use mapping_webhooks::{Gate, Secret};
    ///
    /// let gate = Gate::new(Secret::new("whsec_test")?);
    /// assert_eq!(gate.key_for("evt_1"), ":id:evt_1");
    /// let gate = Gate::builder().secret("whsec_test").namespace("orders:eu").build()?;
    /// assert_eq!(gate.key_for("evt_1"), "orders%3Aeu:id:evt_1");
    /// # Ok::<(), mapping_webhooks::ConfigError>(())
    /// ```
    pub fn key_for(&self, event_id: &str) -> String {
        self.key_in(None, event_id)
    }

    /// The dedup store key for an event of `tenant`:
    /// `{namespace}:tenant:{tenant}:id:{eventId}`, the tenant escaped like the namespace,
    /// so two tenants' events, or a tenant's and a plain endpoint's, never share a key.
    ///
    /// ```
    /// use mapping_webhooks::{Gate, Secret};
    ///
    /// let gate = Gate::builder().secret("whsec_test").namespace("hooks").build()?;
    /// assert_eq!(gate.key_for_tenant("acme:eu", "evt_1"), "hooks:tenant:acme%3Aeu:id:evt_1");
    /// # Ok::<(), mapping_webhooks::ConfigError>(())
    /// ```
    pub fn key_for_tenant(&self, tenant: &str, event_id: &str) -> String {
        self.key_in(Some(tenant), event_id)
    }

    /// The key of `event_id` (of `tenant`) for this gate's scheme. Mapping.Travel's keys
    /// are as they always were; another scheme's carry `:scheme:{name}` before the id
    /// (names are fixed words without `:`), so two schemes sharing a store never share
    /// a key: `{namespace}[:tenant:{tenant}][:scheme:{name}]:id:{id}`.
    pub(super) fn key_in(&self, tenant: Option<&str>, event_id: &str) -> String {
        let ns = self.namespace.as_deref().unwrap_or("");
        let plain = event_id.len() <= MAX_PLAIN_KEY_LEN;
        let tenant = tenant.map(escape_namespace);
        let tenant_len = tenant.as_ref().map_or(0, |t| ":tenant:".len() + t.len());
        let scheme = (self.scheme != Scheme::Mapping).then(|| self.scheme.name());
        let scheme_len = scheme.map_or(0, |s| ":scheme:".len() + s.len());
        let mut key = String::with_capacity(
            ns.len()
                + tenant_len
                + scheme_len
                + ":sha256:".len()
                + if plain { event_id.len() } else { 64 },
        );
        key.push_str(ns);
        if let Some(tenant) = &tenant {
            key.push_str(":tenant:");
            key.push_str(tenant);
        }
        if let Some(scheme) = scheme {
            key.push_str(":scheme:");
            key.push_str(scheme);
        }
        if plain {
            key.push_str(":id:");
            key.push_str(event_id);
        } else {
            key.push_str(":sha256:");
            encode_hex32(&Sha256::digest(event_id.as_bytes()), &mut key);
        }
        key
    }
}

/// Event ids longer than this are hashed before they become store keys, so a key's size
/// is bounded whatever the body holds.
const MAX_PLAIN_KEY_LEN: usize = 128;

/// A namespace as it is written in keys: with no `:`, so the first `:` of a key ends it.
pub(super) fn escape_namespace(namespace: &str) -> Box<str> {
    let mut escaped = String::with_capacity(namespace.len());
    for c in namespace.chars() {
        match c {
            '%' => escaped.push_str("%25"),
            ':' => escaped.push_str("%3A"),
            c => escaped.push(c),
        }
    }
    escaped.into_boxed_str()
}
