//! Property tests: sign → verify round-trips for any body, and any single change to the
//! body, the timestamp or the signature is refused.

use mapping_webhooks::{ManualClock, MatchedSecret, Secret, Signer, Verifier, VerifyError};
use proptest::prelude::*;

const NOW: u64 = 1_717_250_400;

fn pair(secret: &[u8]) -> (Signer, Verifier) {
    let secret = Secret::new(secret).unwrap();
    (
        Signer::new(secret.clone()),
        Verifier::new(secret).clock(ManualClock::at_secs(NOW)),
    )
}

fn secret_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 1..80)
        .prop_filter("not blank", |s| !s.iter().all(u8::is_ascii_whitespace))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn sign_then_verify_round_trips(
        secret in secret_bytes(),
        body in proptest::collection::vec(any::<u8>(), 0..4096),
        skew in -300i64..=300,
    ) {
        let (signer, verifier) = pair(&secret);
        let t = NOW.checked_add_signed(skew).unwrap();
        let header = signer.sign(&body, t);
        let matched = verifier.verify_signature(&header, &body).unwrap();
        prop_assert_eq!(matched.timestamp, t);
    }

    #[test]
    fn any_single_byte_change_of_the_body_is_refused(
        body in proptest::collection::vec(any::<u8>(), 1..2048),
        index in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let (signer, verifier) = pair(b"whsec_prop");
        let header = signer.sign(&body, NOW);
        let mut changed = body.clone();
        changed[index.index(body.len())] ^= flip;
        prop_assert_eq!(verifier.verify_signature(&header, &changed), Err(VerifyError::SignatureMismatch));
    }

    #[test]
    fn appended_or_truncated_bodies_are_refused(
        body in proptest::collection::vec(any::<u8>(), 1..512),
        extra in proptest::collection::vec(any::<u8>(), 1..16),
    ) {
        let (signer, verifier) = pair(b"whsec_prop");
        let header = signer.sign(&body, NOW);
        let mut longer = body.clone();
        longer.extend_from_slice(&extra);
        prop_assert!(verifier.verify_signature(&header, &longer).is_err());
        prop_assert!(verifier.verify_signature(&header, &body[..body.len() - 1]).is_err());
    }

    #[test]
    fn another_timestamp_is_refused(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        delta in -300i64..=300,
    ) {
        prop_assume!(delta != 0);
        let (signer, verifier) = pair(b"whsec_prop");
        let sig = signer.sign(&body, NOW);
        let moved = sig.replacen(&format!("t={NOW},"), &format!("t={},", NOW.checked_add_signed(delta).unwrap()), 1);
        prop_assert_eq!(verifier.verify_signature(&moved, &body), Err(VerifyError::SignatureMismatch));
    }

    #[test]
    fn any_single_change_of_the_signature_is_refused(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        position in 0usize..64,
        digit in 0u8..16,
    ) {
        let (signer, verifier) = pair(b"whsec_prop");
        let header = signer.sign(&body, NOW);
        let hex_start = header.len() - 64;
        let old = header.as_bytes()[hex_start + position];
        let new = b"0123456789abcdef"[usize::from(digit)];
        prop_assume!(old != new);
        let mut changed = header.into_bytes();
        changed[hex_start + position] = new;
        prop_assert_eq!(verifier.verify_signature(&changed, &body), Err(VerifyError::SignatureMismatch));
    }

    #[test]
    fn another_secret_never_verifies(
        secret in secret_bytes(),
        other in secret_bytes(),
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        prop_assume!(secret != other);
        let (signer, _) = pair(&other);
        let (_, verifier) = pair(&secret);
        prop_assert_eq!(
            verifier.verify_signature(signer.sign(&body, NOW), &body),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn parsing_arbitrary_headers_never_panics(header in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let (_, verifier) = pair(b"whsec_prop");
        let err = verifier.verify(&header, b"{}").unwrap_err();
        prop_assert!((400..500).contains(&err.status()));
    }

    #[test]
    fn parsing_header_like_strings_never_panics(header in "(t=[0-9+-]{0,22}|v1=[0-9a-fA-Fxz]{0,70}|v0=[a-z]{0,3}| |,){0,12}") {
        let (_, verifier) = pair(b"whsec_prop");
        let err = verifier.verify(&header, b"{}").unwrap_err();
        prop_assert!((400..500).contains(&err.status()));
    }
}

// Forgery: a verifier holding a current and a previous secret accepts a request if and
// only if its header carries a signature our signer made for that very body and
// timestamp with one of them, and the timestamp is within the window.

const CURRENT: &[u8] = b"whsec_forgery_current";
const PREVIOUS: &[u8] = b"whsec_forgery_previous";
const STRANGER: &[u8] = b"whsec_forgery_stranger";

fn rotating_verifier() -> Verifier {
    Verifier::new(Secret::new(CURRENT).unwrap())
        .previous_secret(Secret::new(PREVIOUS).unwrap())
        .clock(ManualClock::at_secs(NOW))
}

fn sig(secret: &[u8], body: &[u8], t: u64) -> [u8; 32] {
    Signer::new(Secret::new(secret).unwrap()).signature(body, t)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A candidate `v1` value an attacker could put in a header, with what it was made from.
#[derive(Debug, Clone)]
enum Candidate {
    /// Made with the current secret over the request's body and timestamp.
    Current,
    /// Made with the previous secret over the request's body and timestamp.
    Previous,
    /// Made with a secret the verifier does not hold.
    Stranger,
    /// Made with the current secret over other bytes.
    OtherBody(Vec<u8>),
    /// Made with the current secret at another timestamp.
    OtherTime(i64),
    /// Random bytes.
    Random([u8; 32]),
}

fn candidate() -> impl Strategy<Value = Candidate> {
    prop_oneof![
        Just(Candidate::Current),
        Just(Candidate::Previous),
        Just(Candidate::Stranger),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Candidate::OtherBody),
        (-400i64..=400).prop_map(Candidate::OtherTime),
        any::<[u8; 32]>().prop_map(Candidate::Random),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn accepted_exactly_when_a_configured_secret_signed_this_body_and_time(
        body in proptest::collection::vec(any::<u8>(), 0..256),
        skew in -400i64..=400,
        candidates in proptest::collection::vec(candidate(), 1..=8),
    ) {
        let t = NOW.checked_add_signed(skew).unwrap();
        let mut values = Vec::new();
        let mut expected = None;
        for c in &candidates {
            let value = match c {
                Candidate::Current => sig(CURRENT, &body, t),
                Candidate::Previous => sig(PREVIOUS, &body, t),
                Candidate::Stranger => sig(STRANGER, &body, t),
                Candidate::OtherBody(other) => sig(CURRENT, other, t),
                Candidate::OtherTime(delta) => sig(CURRENT, &body, t.checked_add_signed(*delta).unwrap()),
                Candidate::Random(bytes) => *bytes,
            };
            // Only a signature equal to one the signer makes for (this body, t) with a
            // configured secret counts, whatever it was meant to be.
            if value == sig(CURRENT, &body, t) {
                expected = Some(MatchedSecret::Current);
            } else if value == sig(PREVIOUS, &body, t) && expected.is_none() {
                expected = Some(MatchedSecret::Previous(0));
            }
            values.push(format!("v1={}", hex(&value)));
        }
        let header = format!("t={t},{}", values.join(","));
        let result = rotating_verifier().verify_signature(&header, &body);
        if skew.unsigned_abs() > 300 {
            prop_assert!(result.is_err());
            prop_assert_eq!(result.unwrap_err().status(), 401);
        } else {
            match expected {
                Some(secret) => {
                    let matched = result.unwrap();
                    prop_assert_eq!(matched.secret, secret);
                    prop_assert_eq!(matched.timestamp, t);
                }
                None => prop_assert_eq!(result, Err(VerifyError::SignatureMismatch)),
            }
        }
    }

    #[test]
    fn random_well_formed_headers_are_never_accepted(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        skew in -300i64..=300,
        signatures in proptest::collection::vec(any::<[u8; 32]>(), 1..=8),
        upper in any::<bool>(),
    ) {
        let t = NOW.checked_add_signed(skew).unwrap();
        let mut header = format!("t={t}");
        for s in &signatures {
            header.push_str(",v1=");
            header.push_str(&if upper { hex(s).to_uppercase() } else { hex(s) });
        }
        prop_assert_eq!(
            rotating_verifier().verify(&header, &body),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn a_signature_for_one_body_never_verifies_another(
        signed in proptest::collection::vec(any::<u8>(), 0..256),
        presented in proptest::collection::vec(any::<u8>(), 0..256),
        secret in prop_oneof![Just(CURRENT), Just(PREVIOUS)],
    ) {
        prop_assume!(signed != presented);
        let header = Signer::new(Secret::new(secret).unwrap()).sign(&signed, NOW);
        prop_assert_eq!(
            rotating_verifier().verify_signature(&header, &presented),
            Err(VerifyError::SignatureMismatch)
        );
        // While the body it was made for still verifies.
        prop_assert!(rotating_verifier().verify_signature(&header, &signed).is_ok());
    }

    #[test]
    fn digits_moved_between_the_timestamp_and_the_body_are_refused(
        digit in 0u8..10,
        rest in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        // `"{t}.{body}"` is unambiguous: the signature of (t, "7…") does not verify
        // (t*10+7, "…") nor the other way round, and the dot cannot move either.
        let t = NOW / 10;
        let mut body = vec![b'0' + digit];
        body.extend_from_slice(&rest);
        let verifier = rotating_verifier().tolerance(std::time::Duration::from_secs(NOW));
        let signed = Signer::new(Secret::new(CURRENT).unwrap()).sign(&body, t);
        let shifted = signed.replacen(&format!("t={t},"), &format!("t={},", t * 10 + u64::from(digit)), 1);
        prop_assert_eq!(verifier.verify_signature(&shifted, &rest), Err(VerifyError::SignatureMismatch));
        let signed = Signer::new(Secret::new(CURRENT).unwrap()).sign(&rest, t * 10 + u64::from(digit));
        let shifted = signed.replacen(&format!("t={},", t * 10 + u64::from(digit)), &format!("t={t},"), 1);
        prop_assert_eq!(verifier.verify_signature(&shifted, &body), Err(VerifyError::SignatureMismatch));
        let mut dotted = b".".to_vec();
        dotted.extend_from_slice(&body);
        prop_assert_eq!(
            verifier.verify_signature(Signer::new(Secret::new(CURRENT).unwrap()).sign(&body, t), &dotted),
            Err(VerifyError::SignatureMismatch)
        );
    }
}
