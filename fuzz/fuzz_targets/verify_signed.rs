//! Correctly (or deliberately wrongly) signed requests for arbitrary bodies, so the
//! envelope extraction behind the signature check is reached.
//!
//! Input: a flags byte (which secret signs, decoys around the signature, upper case,
//! spaces), a little-endian `i16` clock skew, then the body. The outcome is predicted
//! independently and compared with the verifier's.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mapping_webhooks::{ManualClock, MatchedSecret, Secret, Signer, Verifier, VerifyError};

const NOW: u64 = 1_717_250_400;
const TOLERANCE: i64 = 300;
const CURRENT: &str = "whsec_fuzz_current_0123456789abcdef";
const PREVIOUS: &str = "whsec_fuzz_previous_fedcba9876543210";
const STRANGER: &str = "whsec_fuzz_stranger_00000000000000";

fuzz_target!(|data: &[u8]| {
    let Some((&[flags, s0, s1], body)) = data.split_first_chunk::<3>() else {
        return;
    };
    // Skews up to ±1023 s, so both sides of the five-minute window are exercised.
    let skew = i64::from(i16::from_le_bytes([s0, s1])) % 1024;
    let t = NOW.checked_add_signed(skew).unwrap();
    let (key, expected_secret) = match flags & 3 {
        0 | 1 => (CURRENT, Some(MatchedSecret::Current)),
        2 => (PREVIOUS, Some(MatchedSecret::Previous(0))),
        _ => (STRANGER, None),
    };
    let signature = Signer::new(Secret::new(key).unwrap()).signature(body, t);
    let mut hex: String = signature.iter().map(|b| format!("{b:02x}")).collect();
    if flags & 4 != 0 {
        hex.make_ascii_uppercase();
    }
    let sep = if flags & 8 != 0 { " , " } else { "," };
    let mut header = format!("t={t}{sep}v1={hex}");
    if flags & 16 != 0 {
        header = format!("v1={}{sep}{header}", "0".repeat(64));
    }
    if flags & 32 != 0 {
        header.push_str(&format!("{sep}v0=deadbeef{sep}v1=abc"));
    }

    let verifier = Verifier::new(Secret::new(CURRENT).unwrap())
        .previous_secret(Secret::new(PREVIOUS).unwrap())
        .clock(ManualClock::at_secs(NOW));
    let result = verifier.verify(&header, body);

    if skew < -TOLERANCE {
        assert!(
            matches!(result, Err(VerifyError::TimestampTooOld { .. })),
            "{result:?}"
        );
        return;
    }
    if skew > TOLERANCE {
        assert!(
            matches!(result, Err(VerifyError::TimestampInFuture { .. })),
            "{result:?}"
        );
        return;
    }
    let Some(expected_secret) = expected_secret else {
        assert_eq!(result, Err(VerifyError::SignatureMismatch));
        return;
    };
    match result {
        Ok(verified) => {
            assert_eq!(verified.timestamp, t);
            assert_eq!(verified.secret, expected_secret);
            assert!(!verified.event_id.is_empty());
            // Only a UTF-8 JSON object is an envelope.
            let text = std::str::from_utf8(body).expect("an accepted body is UTF-8");
            assert!(
                text.trim_ascii_start().starts_with('{'),
                "accepted a non-object"
            );
            // What was extracted is what a generic JSON parser sees (when it can parse
            // the body at all: it stops at 128 levels of nesting, which the verifier skips).
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
                assert_eq!(value["eventId"].as_str(), Some(verified.event_id.as_str()));
                assert_eq!(value["type"].as_str(), Some(verified.event_type.as_str()));
                assert_eq!(value["id"].as_str().unwrap_or(""), verified.delivery_id);
            }
        }
        Err(VerifyError::NotAnEnvelope(why)) => {
            // The parser's message may quote the body (the sender's bytes), never the
            // secret or the signature, unless the body itself holds them.
            let body = String::from_utf8_lossy(body);
            for needle in [CURRENT, PREVIOUS, &hex] {
                assert!(!why.contains(needle) || body.contains(needle), "{why}");
            }
        }
        Err(other) => panic!("a correctly signed request was refused: {other:?}"),
    }
});
