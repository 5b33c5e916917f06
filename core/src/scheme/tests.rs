//! Every scheme through the gate: what it accepts, what it refuses and with which status,
//! its dedup keys, its secrets' rotation.

use std::time::Duration;

use super::Scheme;
use crate::adapter::RequestHead;
use crate::{
    Admission, ConfigError, Gate, ManualClock, MatchedSecret, MemoryStore, Reply, Secret, Secrets,
    UnsignedHeaders, Verified, VerifyError,
};

const NOW: u64 = 1_717_250_400;
/// `whsec_` and base64, as Standard Webhooks and Svix issue them (and a usable raw
/// secret for the others).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// A request head as an adapter sees it.
#[derive(Debug, Clone, Default)]
struct Head(Vec<(&'static str, String)>);

impl RequestHead for Head {
    fn header_values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        self.0.header_values(name)
    }
    fn path(&self) -> &str {
        "/hooks"
    }
    fn host(&self) -> Option<&str> {
        None
    }
}

impl Head {
    fn without(mut self, name: &str) -> Self {
        self.0.retain(|(n, _)| *n != name);
        self
    }
    fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.0.retain(|(n, _)| *n != name);
        self.0.push((name, value.into()));
        self
    }
    fn repeated(mut self, name: &'static str) -> Self {
        let value = self.0.iter().find(|(n, _)| *n == name).unwrap().1.clone();
        self.0.push((name, value));
        self
    }
}

/// A body each scheme's sender could send, holding `id` where the scheme reads it.
fn body(scheme: Scheme, id: &str) -> Vec<u8> {
    match scheme {
        Scheme::Mapping => {
            format!(r#"{{"id":"del_1","eventId":"{id}","type":"mapping.completed","data":{{}}}}"#)
        }
        Scheme::Stripe => format!(r#"{{"id":"{id}","object":"event","type":"charge.succeeded"}}"#),
        Scheme::Slack => {
            format!(r#"{{"token":"x","event_id":"{id}","type":"event_callback","event":{{}}}}"#)
        }
        _ => format!(r#"{{"type":"invoice.paid","data":{{"n":"{id}"}}}}"#),
    }
    .into_bytes()
}

fn signed(scheme: Scheme, secret: &str, id: &str, t: u64, body: &[u8]) -> Head {
    Head(
        scheme
            .sign(&Secret::new(secret).unwrap(), id, t, body)
            .unwrap(),
    )
}

fn gate(scheme: Scheme) -> Gate {
    Gate::builder()
        .scheme(scheme)
        .secret(SECRET)
        .clock(ManualClock::at_secs(NOW))
        .build()
        .unwrap()
}

async fn admit(gate: &Gate, head: &Head, body: &[u8]) -> Admission<MemoryStore> {
    gate.admit_head(head, UnsignedHeaders::default(), body)
        .await
}

fn refused(a: Admission<MemoryStore>) -> Reply {
    match a {
        Admission::Reply(r) => r,
        Admission::Process { verified, .. } => panic!("processed {verified:?}"),
    }
}

fn processed(a: Admission<MemoryStore>) -> (Verified, crate::adapter::Ticket<MemoryStore>) {
    match a {
        Admission::Process { verified, ticket } => (verified, ticket),
        Admission::Reply(r) => panic!("refused {} {}", r.status(), r),
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.error() {
            Some(e) => write!(f, "{e}"),
            None => f.write_str(self.reason()),
        }
    }
}

#[tokio::test]
async fn each_scheme_processes_what_its_secret_signed_once() {
    for scheme in Scheme::ALL {
        let gate = gate(scheme);
        let b = body(scheme, "evt_1");
        let head = signed(scheme, SECRET, "evt_1", NOW, &b);
        let (verified, ticket) = processed(admit(&gate, &head, &b).await);
        assert_eq!(verified.scheme, scheme);
        assert_eq!(verified.event_id, "evt_1", "{scheme}");
        assert_eq!(verified.secret, MatchedSecret::Current);
        assert_eq!(
            verified.signed_at(),
            scheme.has_timestamp().then_some(NOW),
            "{scheme}"
        );
        ticket.finish(200).await;
        // The sender's retry, signed again, is a duplicate.
        let again = signed(scheme, SECRET, "evt_1", NOW + 30, &b);
        assert_eq!(
            refused(admit(&gate, &again, &b).await),
            Reply::AlreadyProcessed,
            "{scheme}"
        );
    }
}

#[tokio::test]
async fn each_scheme_refuses_a_changed_body_or_another_secret_with_401() {
    for scheme in Scheme::ALL {
        let gate = gate(scheme);
        let b = body(scheme, "evt_2");
        let head = signed(scheme, SECRET, "evt_2", NOW, &b);
        let mut tampered = b.clone();
        *tampered.last_mut().unwrap() = b' ';
        let r = refused(admit(&gate, &head, &tampered).await);
        assert_eq!(
            r.error(),
            Some(&VerifyError::SignatureMismatch),
            "{scheme}: {r}"
        );
        let forged = signed(scheme, OTHER, "evt_2", NOW, &b);
        let r = refused(admit(&gate, &forged, &b).await);
        assert_eq!(
            (r.status(), r.code()),
            (401, "signature_mismatch"),
            "{scheme}"
        );
        // Still new: the refusals claimed nothing.
        processed(admit(&gate, &head, &b).await).1.finish(200).await;
    }
}

#[tokio::test]
async fn a_signed_id_or_timestamp_cannot_be_changed() {
    // Standard Webhooks and Svix sign the id and the timestamp; Slack the timestamp.
    for scheme in [Scheme::Standard, Scheme::Svix, Scheme::Slack] {
        let gate = gate(scheme);
        let b = body(scheme, "evt_3");
        let head = signed(scheme, SECRET, "evt_3", NOW, &b);
        let (id_header, ts_header) = match scheme {
            Scheme::Standard => ("webhook-id", "webhook-timestamp"),
            Scheme::Svix => ("svix-id", "svix-timestamp"),
            _ => ("", "x-slack-request-timestamp"),
        };
        let moved = head.clone().with(ts_header, (NOW + 1).to_string());
        let r = refused(admit(&gate, &moved, &b).await);
        assert_eq!(r.error(), Some(&VerifyError::SignatureMismatch), "{scheme}");
        if !id_header.is_empty() {
            let renamed = head.with(id_header, "evt_replayed");
            let r = refused(admit(&gate, &renamed, &b).await);
            assert_eq!(r.error(), Some(&VerifyError::SignatureMismatch), "{scheme}");
        }
    }
}

#[tokio::test]
async fn the_unsigned_id_headers_are_not_covered() {
    // GitHub and Shopify: a captured body with a new id header is processed again
    // (documented in the module docs: dedup only stops retries and exact replays).
    for (scheme, id_header) in [
        (Scheme::GitHub, "x-github-delivery"),
        (Scheme::Shopify, "x-shopify-event-id"),
    ] {
        let gate = gate(scheme);
        let b = body(scheme, "x");
        let head = signed(scheme, SECRET, "evt_4", NOW, &b);
        processed(admit(&gate, &head, &b).await).1.finish(200).await;
        assert_eq!(
            refused(admit(&gate, &head, &b).await),
            Reply::AlreadyProcessed
        );
        let (verified, ticket) = processed(admit(&gate, &head.with(id_header, "evt_5"), &b).await);
        assert_eq!(verified.event_id, "evt_5");
        ticket.finish(200).await;
    }
}

#[tokio::test]
async fn missing_repeated_and_malformed_headers_are_400_naming_the_header() {
    /// A scheme, its required headers, and malformed values for some of them.
    type Case = (
        Scheme,
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
    );
    let cases: [Case; 7] = [
        (
            Scheme::Mapping,
            &["x-webhook-signature"],
            &[("x-webhook-signature", "t=1")],
        ),
        (
            Scheme::Standard,
            &["webhook-id", "webhook-timestamp", "webhook-signature"],
            &[
                ("webhook-signature", "v1,notbase64!"),
                ("webhook-signature", "v2,abc"),
                ("webhook-timestamp", "017"),
                ("webhook-timestamp", "-1"),
                ("webhook-id", "has space"),
            ],
        ),
        (
            Scheme::Svix,
            &["svix-id", "svix-timestamp", "svix-signature"],
            &[("svix-signature", ""), ("svix-timestamp", "soon")],
        ),
        (
            Scheme::Stripe,
            &["stripe-signature"],
            &[
                ("stripe-signature", "t=1,v0=00"),
                ("stripe-signature", "v1=ab"),
            ],
        ),
        (
            Scheme::GitHub,
            &["x-hub-signature-256", "x-github-delivery"],
            &[
                ("x-hub-signature-256", "sha1=00"),
                ("x-github-delivery", ""),
            ],
        ),
        (
            Scheme::Shopify,
            &["x-shopify-hmac-sha256", "x-shopify-event-id"],
            &[("x-shopify-hmac-sha256", "deadbeef")],
        ),
        (
            Scheme::Slack,
            &["x-slack-signature", "x-slack-request-timestamp"],
            &[
                ("x-slack-signature", "v1=00"),
                ("x-slack-request-timestamp", ""),
            ],
        ),
    ];
    for (scheme, required, malformed) in cases {
        let gate = gate(scheme);
        let b = body(scheme, "evt_6");
        let head = signed(scheme, SECRET, "evt_6", NOW, &b);
        for name in required {
            let r = refused(admit(&gate, &head.clone().without(name), &b).await);
            assert_eq!(
                (r.status(), r.code()),
                (400, "missing_header"),
                "{scheme} {name}"
            );
            assert!(
                r.to_string().to_ascii_lowercase().contains(name),
                "{scheme}: {r}"
            );
            let r = refused(admit(&gate, &head.clone().repeated(name), &b).await);
            assert_eq!(
                (r.status(), r.code()),
                (400, "repeated_header"),
                "{scheme} {name}"
            );
        }
        for (name, value) in malformed {
            let name: &'static str = required.iter().find(|n| *n == name).unwrap();
            let r = refused(admit(&gate, &head.clone().with(name, *value), &b).await);
            assert_eq!(
                (r.status(), r.code()),
                (400, "malformed_header"),
                "{scheme} {name}: {value:?}: {r}"
            );
        }
    }
}

#[tokio::test]
async fn stale_and_future_timestamps_are_401_where_the_scheme_signs_one() {
    let tolerance = crate::DEFAULT_TOLERANCE.as_secs();
    for scheme in Scheme::ALL {
        let gate = gate(scheme);
        for (t, code) in [
            (NOW - tolerance - 1, "timestamp_too_old"),
            (NOW + tolerance + 1, "timestamp_in_future"),
        ] {
            let b = body(scheme, &format!("evt_{t}"));
            let head = signed(scheme, SECRET, &format!("evt_{t}"), t, &b);
            let admission = admit(&gate, &head, &b).await;
            if scheme.has_timestamp() {
                let r = refused(admission);
                assert_eq!((r.status(), r.code()), (401, code), "{scheme}");
            } else {
                // GitHub and Shopify sign no time: there is nothing to be stale.
                processed(admission).1.finish(200).await;
            }
        }
        // At the edge, accepted.
        let b = body(scheme, "evt_edge");
        let head = signed(scheme, SECRET, "evt_edge", NOW - tolerance, &b);
        processed(admit(&gate, &head, &b).await).1.finish(200).await;
    }
}

#[tokio::test]
async fn every_scheme_reads_the_same_rotating_secrets_handle() {
    for scheme in Scheme::ALL {
        let secrets = Secrets::new(Secret::new(OTHER).unwrap());
        let clock = ManualClock::at_secs(NOW);
        let gate = Gate::builder()
            .scheme(scheme)
            .secrets(secrets.clone())
            .clock(clock.clone())
            .build()
            .unwrap();
        secrets.rotate(Secret::new(SECRET).unwrap());
        let b = body(scheme, "evt_new");
        let by_new = signed(scheme, SECRET, "evt_new", NOW, &b);
        let (v, t) = processed(admit(&gate, &by_new, &b).await);
        assert_eq!(v.secret, MatchedSecret::Current, "{scheme}");
        t.finish(200).await;
        let b = body(scheme, "evt_old");
        let by_old = signed(scheme, OTHER, "evt_old", NOW, &b);
        let (v, t) = processed(admit(&gate, &by_old, &b).await);
        assert_eq!(v.secret, MatchedSecret::Previous(0), "{scheme}");
        t.finish(200).await;
        // Once the previous secret expired, its signature no longer verifies.
        clock.advance(crate::DEFAULT_PREVIOUS_EXPIRY + Duration::from_secs(1));
        let b = body(scheme, "evt_late");
        let late = signed(scheme, OTHER, "evt_late", NOW + 601, &b);
        let r = refused(admit(&gate, &late, &b).await);
        assert_eq!(r.status(), 401, "{scheme}");
    }
}

#[tokio::test]
async fn two_schemes_sharing_a_store_never_share_a_key() {
    let store = MemoryStore::new();
    let gates: Vec<Gate> = Scheme::ALL
        .into_iter()
        .map(|scheme| {
            Gate::builder()
                .scheme(scheme)
                .secret(SECRET)
                .clock(ManualClock::at_secs(NOW))
                .dedup(store.clone())
                .build()
                .unwrap()
        })
        .collect();
    for gate in &gates {
        let b = body(gate.scheme(), "evt_shared");
        let head = signed(gate.scheme(), SECRET, "evt_shared", NOW, &b);
        processed(admit(gate, &head, &b).await).1.finish(200).await;
    }
    assert_eq!(gates[0].key_for("evt_1"), ":id:evt_1");
    assert_eq!(gates[1].key_for("evt_1"), ":scheme:standard:id:evt_1");
    assert_eq!(
        gates[3].key_for_tenant("acme", "evt_1"),
        ":tenant:acme:scheme:stripe:id:evt_1"
    );
}

#[tokio::test]
async fn stripe_tries_every_v1_and_ignores_v0() {
    let gate = gate(Scheme::Stripe);
    let b = body(Scheme::Stripe, "evt_stripe");
    let good = &signed(Scheme::Stripe, SECRET, "", NOW, &b).0[0].1;
    let bad = &signed(Scheme::Stripe, OTHER, "", NOW, &b).0[0].1;
    let v1 = |h: &str| h.split("v1=").nth(1).unwrap().to_owned();
    let header = format!("t={NOW},v1={},v0={},v1={}", v1(bad), v1(bad), v1(good));
    let head = Head(vec![("stripe-signature", header)]);
    let (v, t) = processed(admit(&gate, &head, &b).await);
    assert_eq!(
        (v.event_id.as_str(), v.event_type.as_str()),
        ("evt_stripe", "charge.succeeded")
    );
    t.finish(200).await;
    // A v0 alone is no signature.
    let only_v0 = Head(vec![(
        "stripe-signature",
        format!("t={NOW},v0={}", v1(good)),
    )]);
    assert_eq!(refused(admit(&gate, &only_v0, &b).await).status(), 400);
    // The bare `admit` takes Stripe's header as Mapping.Travel's.
    let body2 = body(Scheme::Stripe, "evt_stripe_2");
    let header = &signed(Scheme::Stripe, SECRET, "", NOW, &body2).0[0].1;
    let admitted = gate
        .admit([header.as_bytes()], UnsignedHeaders::default(), &body2)
        .await;
    processed(admitted).1.finish(200).await;
}

#[tokio::test]
async fn a_body_without_its_scheme_s_id_is_400() {
    for (scheme, b) in [
        (Scheme::Stripe, &br#"{"object":"event","type":"x"}"#[..]),
        (Scheme::Stripe, br#"{"id":"","type":"x"}"#),
        (Scheme::Slack, br#"{"type":"event_callback"}"#),
        (Scheme::Slack, b"token=x&team_id=T1"),
    ] {
        let gate = gate(scheme);
        let head = signed(scheme, SECRET, "", NOW, b);
        let r = refused(admit(&gate, &head, b).await);
        assert_eq!(r.status(), 400, "{scheme}: {r}");
    }
}

#[tokio::test]
async fn slack_s_url_verification_is_answered_every_time() {
    let gate = gate(Scheme::Slack);
    let b = br#"{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    for _ in 0..2 {
        let head = signed(Scheme::Slack, SECRET, "", NOW, b);
        let (v, ticket) = processed(admit(&gate, &head, b).await);
        assert_eq!(
            (v.event_id.as_str(), v.event_type.as_str()),
            ("", "url_verification")
        );
        assert!(!ticket.is_claimed());
        ticket.finish(200).await;
    }
}

#[tokio::test]
async fn github_and_shopify_hand_over_their_unsigned_type_and_delivery() {
    let gate = gate(Scheme::GitHub);
    let b = br#"{"zen":"Keep it logically awesome."}"#;
    let head = signed(
        Scheme::GitHub,
        SECRET,
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        NOW,
        b,
    )
    .with("x-github-event", "ping");
    let (v, t) = processed(admit(&gate, &head, b).await);
    assert_eq!(v.event_type, "ping");
    assert_eq!(v.delivery_id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    t.finish(200).await;

    let gate = self::gate(Scheme::Shopify);
    let head = signed(
        Scheme::Shopify,
        SECRET,
        "98880550-7158-44d4-b7cd-2c97c8a091b5",
        NOW,
        b,
    )
    .with("x-shopify-topic", "orders/create")
    .with(
        "x-shopify-webhook-id",
        "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
    );
    let (v, t) = processed(admit(&gate, &head, b).await);
    assert_eq!(
        (
            v.event_id.as_str(),
            v.event_type.as_str(),
            v.delivery_id.as_str()
        ),
        (
            "98880550-7158-44d4-b7cd-2c97c8a091b5",
            "orders/create",
            "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
        )
    );
    t.finish(200).await;
}

/// A head at a path (for tenants).
struct At<'a>(&'a Head, &'a str);

impl RequestHead for At<'_> {
    fn header_values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        self.0.header_values(name)
    }
    fn path(&self) -> &str {
        self.1
    }
    fn host(&self) -> Option<&str> {
        None
    }
}

#[tokio::test]
async fn tenants_have_their_own_secrets_and_keys_in_every_scheme() {
    for scheme in Scheme::ALL {
        let tenants = crate::Tenants::new(|key: String| async move {
            let secret = match key.as_str() {
                "acme" => SECRET,
                "globex" => OTHER,
                _ => return Ok(None),
            };
            Ok::<_, crate::ResolveError>(Some(crate::Tenant::new(
                key.as_str(),
                Secrets::new(Secret::new(secret).unwrap()),
            )))
        });
        let gate = Gate::builder()
            .scheme(scheme)
            .tenants(tenants, crate::TenantFrom::PathSegment(1))
            .clock(ManualClock::at_secs(NOW))
            .build()
            .unwrap();
        let b = body(scheme, "evt_t");
        for (tenant, secret) in [("acme", SECRET), ("globex", OTHER)] {
            let head = signed(scheme, secret, "evt_t", NOW, &b);
            let at = At(&head, &format!("/t/{tenant}"));
            let mut intake = gate.intake(&at).await.unwrap();
            intake.push(bytes::Bytes::from(b.clone())).unwrap();
            let admitted = intake.admit().await.unwrap();
            // The same id for another tenant is another event.
            assert_eq!(
                admitted.verified.tenant.as_deref(),
                Some(tenant),
                "{scheme}"
            );
            assert_eq!(admitted.verified.scheme, scheme);
            admitted.ticket.finish(200).await;
        }
        // One tenant's secret does not sign for another.
        let b = body(scheme, "evt_u");
        let head = signed(scheme, OTHER, "evt_u", NOW, &b);
        let at = At(&head, "/t/acme");
        let mut intake = gate.intake(&at).await.unwrap();
        intake.push(bytes::Bytes::from(b)).unwrap();
        assert_eq!(intake.admit().await.unwrap_err().status(), 401, "{scheme}");
    }
}

#[test]
fn standard_secrets_must_be_base64() {
    for scheme in [Scheme::Standard, Scheme::Svix] {
        for bad in ["whsec_not base64!", "whsec_", "whsk_c2VjcmV0"] {
            assert_eq!(
                Gate::builder()
                    .scheme(scheme)
                    .secret(bad)
                    .build()
                    .unwrap_err(),
                ConfigError::SecretNotForScheme(scheme),
                "{bad}"
            );
        }
        // A Mapping.Travel secret is any string.
        assert!(Gate::builder().secret("whsec_not base64!").build().is_ok());
    }
    assert_eq!("GitHub".parse::<Scheme>(), Ok(Scheme::GitHub));
    assert!("gitlab".parse::<Scheme>().is_err());
    for scheme in Scheme::ALL {
        assert_eq!(scheme.name().parse::<Scheme>(), Ok(scheme));
    }
}

#[tokio::test]
async fn the_bare_admit_refuses_what_needs_more_than_the_signature_header() {
    let gate = gate(Scheme::Standard);
    let b = body(Scheme::Standard, "evt_bare");
    let head = signed(Scheme::Standard, SECRET, "evt_bare", NOW, &b);
    let signature = &head.0[2].1;
    let r = refused(
        gate.admit([signature.as_bytes()], UnsignedHeaders::default(), &b)
            .await,
    );
    assert_eq!(
        r.error(),
        Some(&VerifyError::MissingSchemeHeader {
            header: "webhook-id"
        })
    );
}

#[tokio::test]
async fn debug_never_shows_a_signature() {
    let b = body(Scheme::Standard, "evt_dbg");
    let head = signed(Scheme::Standard, SECRET, "evt_dbg", NOW, &b);
    let parsed = Scheme::Standard.parse_head(&head).unwrap();
    let shown = format!("{parsed:?}");
    let signature = head.0[2].1.trim_start_matches("v1,");
    assert!(!shown.contains(signature), "{shown}");
    assert!(!shown.contains(&signature[..12]), "{shown}");
}

#[cfg(feature = "ed25519")]
mod ed25519 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn public(key: &SigningKey) -> String {
        format!("whpk_{}", BASE64.encode(key.verifying_key().as_bytes()))
    }

    fn v1a(key: &SigningKey, id: &str, t: u64, body: &[u8]) -> String {
        let mut message = format!("{id}.{t}.").into_bytes();
        message.extend_from_slice(body);
        format!("v1a,{}", BASE64.encode(key.sign(&message).to_bytes()))
    }

    fn head(signature: String, id: &str, t: u64) -> Head {
        Head(vec![
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", t.to_string()),
            ("webhook-signature", signature),
        ])
    }

    #[tokio::test]
    async fn a_public_key_verifies_v1a_and_nothing_else() {
        let sender = key(7);
        let gate = Gate::builder()
            .scheme(Scheme::Standard)
            .secret(public(&sender))
            .clock(ManualClock::at_secs(NOW))
            .build()
            .unwrap();
        let b = body(Scheme::Standard, "msg_1");
        let good = head(v1a(&sender, "msg_1", NOW, &b), "msg_1", NOW);
        let (v, t) = processed(admit(&gate, &good, &b).await);
        assert_eq!(
            (v.event_id.as_str(), v.secret),
            ("msg_1", MatchedSecret::Current)
        );
        t.finish(200).await;
        // Another sender's key, a changed body, a changed id: 401.
        let other = head(v1a(&key(8), "msg_2", NOW, &b), "msg_2", NOW);
        assert_eq!(refused(admit(&gate, &other, &b).await).status(), 401);
        let b3 = body(Scheme::Standard, "msg_3");
        let signed3 = head(v1a(&sender, "msg_3", NOW, &b3), "msg_3", NOW);
        assert_eq!(refused(admit(&gate, &signed3, &b).await).status(), 401);
        assert_eq!(
            refused(admit(&gate, &signed3.clone().with("webhook-id", "msg_4"), &b3).await).status(),
            401
        );
        // A v1 HMAC signature means nothing to a public key.
        let hmac = signed(Scheme::Standard, SECRET, "msg_5", NOW, &b);
        assert_eq!(refused(admit(&gate, &hmac, &b).await).status(), 401);
        processed(admit(&gate, &signed3, &b3).await)
            .1
            .finish(200)
            .await;
    }

    #[tokio::test]
    async fn hmac_secrets_and_public_keys_rotate_in_one_handle() {
        let sender = key(9);
        let secrets = Secrets::with_previous(
            Secret::new(public(&sender)).unwrap(),
            [Secret::new(SECRET).unwrap()],
        );
        let gate = Gate::builder()
            .scheme(Scheme::Standard)
            .secrets(secrets)
            .clock(ManualClock::at_secs(NOW))
            .build()
            .unwrap();
        let b = body(Scheme::Standard, "msg_r");
        // During a move from HMAC to ed25519, the sender sends both.
        let hmac = signed(Scheme::Standard, SECRET, "msg_r", NOW, &b).0[2]
            .1
            .clone();
        let both = head(
            format!("{hmac} {}", v1a(&sender, "msg_r", NOW, &b)),
            "msg_r",
            NOW,
        );
        let (v, t) = processed(admit(&gate, &both, &b).await);
        assert_eq!(v.secret, MatchedSecret::Current);
        t.finish(200).await;
        let b = body(Scheme::Standard, "msg_h");
        let hmac_only = signed(Scheme::Standard, SECRET, "msg_h", NOW, &b);
        let (v, t) = processed(admit(&gate, &hmac_only, &b).await);
        assert_eq!(v.secret, MatchedSecret::Previous(0));
        t.finish(200).await;
    }
}

/// A sink that keeps what it was given: the scheme, the signed headers and the body.
#[derive(Default)]
struct KeepingSink(std::sync::Mutex<Vec<Kept>>);

/// What [`KeepingSink`] kept of one delivery: scheme, signed headers, body, event id.
type Kept = (Scheme, String, Vec<u8>, String);

impl crate::Sink for KeepingSink {
    async fn store(
        &self,
        delivery: crate::SinkDelivery<'_>,
    ) -> Result<crate::Stored, Box<dyn std::error::Error + Send + Sync>> {
        self.0.lock().unwrap().push((
            delivery.scheme,
            delivery.signed_headers.to_owned(),
            delivery.body.to_vec(),
            delivery.verified.event_id.clone(),
        ));
        Ok(crate::Stored::New)
    }
}

#[tokio::test]
async fn a_durable_sink_stores_every_scheme_and_its_headers_verify_again() {
    // Every scheme is stored (202) with its signed headers; the stored text and body
    // verify again with the secret, at any age, and not with another one.
    for scheme in Scheme::ALL {
        let gate = gate(scheme);
        let sink = KeepingSink::default();
        let id = format!("evt_sink_{scheme}");
        let b = body(scheme, &id);
        let head = signed(scheme, SECRET, &id, NOW, &b);
        let mut intake = gate.intake(&head).await.unwrap();
        intake.push(bytes::Bytes::from(b.clone())).unwrap();
        assert_eq!(intake.admit_into(&sink).await, Reply::Queued, "{scheme}");
        let kept = sink.0.lock().unwrap().pop().expect("stored");
        let (stored_scheme, headers, stored_body, event_id) = kept;
        assert_eq!((stored_scheme, event_id.as_str()), (scheme, id.as_str()));
        let secrets = crate::Secrets::new(crate::Secret::new(SECRET).unwrap());
        let verified = scheme
            .verify_stored(&secrets, &headers, &stored_body)
            .unwrap_or_else(|e| panic!("{scheme}: {e} ({headers})"));
        assert_eq!(
            (verified.scheme, verified.event_id.as_str()),
            (scheme, id.as_str())
        );
        let other = crate::Secrets::new(crate::Secret::new(OTHER).unwrap());
        assert!(
            matches!(
                scheme.verify_stored(&other, &headers, &stored_body),
                Err(VerifyError::SignatureMismatch)
            ),
            "{scheme}"
        );
        let mut tampered = stored_body.clone();
        tampered.push(b' ');
        assert!(
            scheme.verify_stored(&secrets, &headers, &tampered).is_err(),
            "{scheme}"
        );
        // The event was claimed and completed: a second copy is a duplicate.
        let mut again = gate.intake(&head).await.unwrap();
        again.push(bytes::Bytes::from(b.clone())).unwrap();
        assert_eq!(
            again.admit_into(&sink).await,
            Reply::AlreadyProcessed,
            "{scheme}"
        );
    }
}
