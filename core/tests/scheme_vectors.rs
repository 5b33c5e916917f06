//! Interop with each provider's own library, both ways (see `vectors/make.py`):
//!
//! - `vectors/schemes.json` was signed by `standardwebhooks`, `svix`, `stripe` and
//!   `slack_sdk` (and GitHub's documented example, Shopify's documented HMAC, and
//!   `cryptography` for ed25519 `v1a`): our gate accepts each, and refuses each once a
//!   byte of the body is changed;
//! - `vectors/ours.json` is what our signer writes, which `make.py --check` verified
//!   with those libraries: the signer must still write exactly it. Set
//!   `MAKE_VECTORS=1` to rewrite it (then check it again with `make.py --check`).

use mapping_webhooks::adapter::RequestHead;
use mapping_webhooks::scheme::Scheme;
use mapping_webhooks::{Admission, Gate, ManualClock, Reply, Secret, UnsignedHeaders};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Deserialize, Serialize, PartialEq)]
struct Vector {
    scheme: String,
    secret: String,
    t: u64,
    body: String,
    headers: BTreeMap<String, String>,
    id: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    ed25519: bool,
}

struct Head<'a>(&'a BTreeMap<String, String>);

impl RequestHead for Head<'_> {
    fn header_values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        self.0.get(name).map(String::as_bytes).into_iter()
    }
    fn path(&self) -> &str {
        "/hooks"
    }
    fn host(&self) -> Option<&str> {
        None
    }
}

async fn admit(v: &Vector, body: &[u8]) -> Result<String, Reply> {
    let scheme: Scheme = v.scheme.parse().unwrap();
    let gate = Gate::builder()
        .scheme(scheme)
        .secret(&v.secret)
        .clock(ManualClock::at_secs(v.t))
        .build()
        .unwrap_or_else(|e| panic!("{} {}: {e}", v.scheme, v.id));
    match gate
        .admit_head(&Head(&v.headers), UnsignedHeaders::default(), body)
        .await
    {
        Admission::Process { verified, ticket } => {
            assert_eq!(verified.scheme, scheme);
            ticket.finish(200).await;
            Ok(verified.event_id)
        }
        Admission::Reply(reply) => Err(reply),
    }
}

fn theirs() -> Vec<Vector> {
    let vectors: Vec<Vector> = serde_json::from_str(include_str!("vectors/schemes.json")).unwrap();
    assert!(vectors.len() >= 19, "the vector file lost its cases");
    vectors
}

#[tokio::test]
async fn we_verify_what_the_providers_libraries_signed() {
    let mut checked = BTreeMap::<String, usize>::new();
    for v in theirs() {
        if v.ed25519 && !cfg!(feature = "ed25519") {
            continue;
        }
        let got = admit(&v, v.body.as_bytes()).await;
        assert_eq!(
            got.as_deref().map_err(Reply::reason),
            Ok(v.id.as_str()),
            "{} {}",
            v.scheme,
            v.id
        );
        let mut tampered = v.body.clone().into_bytes();
        tampered[1] ^= 0x20;
        let refused = admit(&v, &tampered).await.unwrap_err();
        assert_eq!(refused.status(), 401, "{} {}", v.scheme, v.id);
        *checked.entry(v.scheme).or_default() += 1;
    }
    // Every scheme but Mapping.Travel's own (its vectors are in vectors.json).
    assert_eq!(checked.len(), 6, "{checked:?}");
}

/// What our signer writes for the inputs of `schemes.json` (HMAC only: `v1a` is signed
/// by the sender's private key, which is not ours to hold).
fn ours() -> Vec<Vector> {
    theirs()
        .into_iter()
        .filter(|v| !v.ed25519)
        .map(|v| {
            let scheme: Scheme = v.scheme.parse().unwrap();
            let secret = Secret::new(&v.secret).unwrap();
            let headers = scheme
                .sign(&secret, &v.id, v.t, v.body.as_bytes())
                .unwrap()
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect();
            Vector { headers, ..v }
        })
        .collect()
}

#[test]
fn our_signatures_are_the_ones_the_providers_libraries_verified() {
    let ours = ours();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/ours.json");
    if std::env::var_os("MAKE_VECTORS").is_some() {
        std::fs::write(path, serde_json::to_string_pretty(&ours).unwrap() + "\n").unwrap();
    }
    let committed: Vec<Vector> =
        serde_json::from_str(include_str!("vectors/ours.json")).expect("ours.json parses");
    assert_eq!(committed.len(), 16);
    assert_eq!(ours, committed);
}

#[tokio::test]
async fn we_verify_our_own_signatures_too() {
    for v in ours() {
        assert_eq!(
            admit(&v, v.body.as_bytes()).await.ok().as_deref(),
            Some(v.id.as_str())
        );
    }
}
