//! Property tests for every signature scheme: a gate accepts exactly what its secret
//! signed. Any body, any secret, any id: signed with the gate's secret, it is processed
//! with the scheme's id; signed with another secret, or with one byte of the body, the
//! signed id or the signed timestamp changed, it is refused with 401.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use mapping_webhooks::scheme::Scheme;
use mapping_webhooks::{
    Admission, Gate, ManualClock, MatchedSecret, MemoryStore, Secret, UnsignedHeaders,
};
use proptest::prelude::*;

const NOW: u64 = 1_717_250_400;

/// Runs a future that never waits (the in-memory store answers at once).
fn ready<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the in-memory store never waits"),
    }
}

type Head = Vec<(&'static str, String)>;

fn scheme() -> impl Strategy<Value = Scheme> {
    prop::sample::select(Scheme::ALL.to_vec())
}

/// A secret as the scheme's provider issues it: `whsec_` and base64 for Standard
/// Webhooks and Svix, any non-blank text for the others.
fn secret(scheme: Scheme, raw: &[u8]) -> String {
    match scheme {
        Scheme::Standard | Scheme::Svix => {
            use base64::Engine;
            format!(
                "whsec_{}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        }
        _ => format!("s_{}", String::from_utf8_lossy(raw)),
    }
}

/// A body the scheme's sender could send: for the schemes whose id is in the body, a
/// JSON object holding `id` and `payload`; for the others, the payload bytes as they are.
fn body(scheme: Scheme, id: &str, payload: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(payload);
    let value = match scheme {
        Scheme::Mapping => {
            serde_json::json!({"id": "del", "eventId": id, "type": "t", "data": text})
        }
        Scheme::Stripe => serde_json::json!({"id": id, "type": "t", "data": text}),
        Scheme::Slack => serde_json::json!({"event_id": id, "type": "event_callback", "x": text}),
        _ => return payload.to_vec(),
    };
    serde_json::to_vec(&value).unwrap()
}

fn gate(scheme: Scheme, secret: &str) -> Gate {
    Gate::builder()
        .scheme(scheme)
        .secret(secret)
        .clock(ManualClock::at_secs(NOW))
        .build()
        .unwrap()
}

fn signed(scheme: Scheme, secret: &str, id: &str, t: u64, body: &[u8]) -> Head {
    scheme
        .sign(&Secret::new(secret).unwrap(), id, t, body)
        .unwrap()
}

/// The status the gate answers, and the id it processed.
fn outcome(gate: &Gate, head: &Head, body: &[u8]) -> Result<(String, MatchedSecret), u16> {
    match ready(gate.admit_head(head, UnsignedHeaders::default(), body)) {
        Admission::Process { verified, ticket } => {
            drop(ticket);
            Ok((verified.event_id, verified.secret))
        }
        Admission::Reply(reply) => Err(reply.status()),
    }
}

/// `Admission<MemoryStore>` is what the default gate gives.
const _: fn(Admission<MemoryStore>) = |_| {};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn each_scheme_accepts_what_its_secret_signed(
        scheme in scheme(),
        raw in proptest::collection::vec(1u8..=127, 1..48),
        id in "[A-Za-z0-9_.:-]{1,64}",
        payload in proptest::collection::vec(any::<u8>(), 0..1024),
        skew in -300i64..=300,
    ) {
        let secret = secret(scheme, &raw);
        let body = body(scheme, &id, &payload);
        let t = NOW.checked_add_signed(skew).unwrap();
        let head = signed(scheme, &secret, &id, t, &body);
        prop_assert_eq!(
            outcome(&gate(scheme, &secret), &head, &body),
            Ok((id, MatchedSecret::Current))
        );
    }

    #[test]
    fn another_secret_is_refused(
        scheme in scheme(),
        ours in proptest::collection::vec(1u8..=127, 1..48),
        theirs in proptest::collection::vec(1u8..=127, 1..48),
        payload in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let (ours, theirs) = (secret(scheme, &ours), secret(scheme, &theirs));
        prop_assume!(ours != theirs);
        let body = body(scheme, "evt_1", &payload);
        let head = signed(scheme, &theirs, "evt_1", NOW, &body);
        prop_assert_eq!(outcome(&gate(scheme, &ours), &head, &body), Err(401));
    }

    #[test]
    fn any_changed_byte_of_the_body_is_refused(
        scheme in scheme(),
        payload in proptest::collection::vec(any::<u8>(), 1..1024),
        index in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let secret = secret(scheme, b"prop-secret");
        let body = body(scheme, "evt_1", &payload);
        let head = signed(scheme, &secret, "evt_1", NOW, &body);
        let mut changed = body.clone();
        changed[index.index(body.len())] ^= flip;
        prop_assert_eq!(outcome(&gate(scheme, &secret), &head, &changed), Err(401));
    }

    #[test]
    fn a_changed_signed_id_or_timestamp_is_refused(
        scheme in prop::sample::select(vec![Scheme::Standard, Scheme::Svix, Scheme::Slack, Scheme::Mapping, Scheme::Stripe]),
        id in "[A-Za-z0-9_]{1,32}",
        other_id in "[A-Za-z0-9_]{1,32}",
        skew in -300i64..=300,
        moved in -300i64..=300,
    ) {
        prop_assume!(id != other_id && skew != moved);
        let secret = secret(scheme, b"prop-secret");
        let body = body(scheme, &id, b"payload");
        let t = NOW.checked_add_signed(skew).unwrap();
        let head = signed(scheme, &secret, &id, t, &body);
        let gate = gate(scheme, &secret);
        let t2 = NOW.checked_add_signed(moved).unwrap();
        let retimed: Head = head.iter().map(|(name, value)| {
            let value = if name.ends_with("timestamp") {
                t2.to_string()
            } else if name.ends_with("signature") && value.starts_with("t=") {
                value.replacen(&format!("t={t}"), &format!("t={t2}"), 1)
            } else {
                value.clone()
            };
            (*name, value)
        }).collect();
        prop_assert_eq!(outcome(&gate, &retimed, &body), Err(401));
        if matches!(scheme, Scheme::Standard | Scheme::Svix) {
            let renamed: Head = head.iter().map(|(name, value)| {
                (*name, if name.ends_with("-id") { other_id.clone() } else { value.clone() })
            }).collect();
            prop_assert_eq!(outcome(&gate, &renamed, &body), Err(401));
        }
    }
}
