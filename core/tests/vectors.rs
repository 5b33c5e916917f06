//! Checks our signer and verifier against vectors computed independently with Python's
//! `hmac` module (see `vectors/make_vectors.py`; one is cross-checked with openssl).

use mapping_webhooks::{ManualClock, MatchedSecret, Secret, Signer, Verifier, VerifyError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vector {
    secret: String,
    t: u64,
    body_hex: String,
    header: String,
}

fn vectors() -> Vec<Vector> {
    let vectors: Vec<Vector> =
        serde_json::from_str(include_str!("vectors/vectors.json")).expect("vectors.json parses");
    assert!(vectors.len() >= 5, "the vector file lost its cases");
    vectors
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn signer_matches_independent_vectors() {
    for v in vectors() {
        let signer = Signer::new(Secret::new(&v.secret).unwrap());
        assert_eq!(
            signer.sign(&unhex(&v.body_hex), v.t),
            v.header,
            "{}",
            v.header
        );
    }
}

#[test]
fn verifier_accepts_independent_vectors() {
    for v in vectors() {
        let body = unhex(&v.body_hex);
        let verifier =
            Verifier::new(Secret::new(&v.secret).unwrap()).clock(ManualClock::at_secs(v.t));
        let matched = verifier.verify_signature(&v.header, &body).unwrap();
        assert_eq!(matched.timestamp, v.t);
        assert_eq!(matched.secret, MatchedSecret::Current);
        // And with another secret, the same vector fails.
        let other =
            Verifier::new(Secret::new("whsec_other").unwrap()).clock(ManualClock::at_secs(v.t));
        assert_eq!(
            other.verify_signature(&v.header, &body),
            Err(VerifyError::SignatureMismatch)
        );
    }
}

#[test]
fn uppercase_hex_from_other_senders_is_accepted() {
    let v = &vectors()[0];
    let upper = v.header.replace(
        &v.header[v.header.len() - 64..],
        &v.header[v.header.len() - 64..].to_uppercase(),
    );
    let verifier = Verifier::new(Secret::new(&v.secret).unwrap()).clock(ManualClock::at_secs(v.t));
    assert!(
        verifier
            .verify_signature(&upper, &unhex(&v.body_hex))
            .is_ok()
    );
}
