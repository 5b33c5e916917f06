//! Property tests: sign → verify round-trips for any body, and any single change to the
//! body, the timestamp or the signature is refused.

use mapping_webhooks::{ManualClock, Secret, Signer, Verifier, VerifyError};
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
