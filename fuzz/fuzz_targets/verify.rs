//! The full verification of arbitrary (header, body) pairs, with a fixed clock and
//! secrets. Input: a little-endian `u16` header length, the header, then the body.
//!
//! Nothing the fuzzer makes up may be accepted unless it carries the signature our
//! signer computes for that body and timestamp; every refusal is a 4xx whose message
//! never carries a secret.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mapping_webhooks::{ManualClock, MatchedSecret, Secret, SignatureHeader, Signer, Verifier};

const NOW: u64 = 1_717_250_400;
const CURRENT: &str = "whsec_fuzz_current_0123456789abcdef";
const PREVIOUS: &str = "whsec_fuzz_previous_fedcba9876543210";

fuzz_target!(|data: &[u8]| {
    let (header, body) = split(data);
    let verifier = Verifier::new(Secret::new(CURRENT).unwrap())
        .previous_secret(Secret::new(PREVIOUS).unwrap())
        .clock(ManualClock::at_secs(NOW));
    match verifier.verify(header, body) {
        Ok(verified) => {
            let secret = match verified.secret {
                MatchedSecret::Current => CURRENT,
                _ => PREVIOUS,
            };
            let expected =
                Signer::new(Secret::new(secret).unwrap()).signature(body, verified.timestamp);
            let parsed = SignatureHeader::parse(header).expect("an accepted header parses");
            assert!(
                parsed.signatures().any(|s| *s == expected),
                "accepted a header without our signature"
            );
        }
        Err(error) => {
            assert!((400..500).contains(&error.status()), "{error:?}");
            // Messages may quote the request, never the secrets it did not hold.
            let shown = format!("{error} {error:?}");
            let input = String::from_utf8_lossy(data);
            for secret in [CURRENT, PREVIOUS] {
                assert!(!shown.contains(secret) || input.contains(secret), "{shown}");
            }
        }
    }
});

fn split(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return (data, &[]);
    };
    let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    rest.split_at(len)
}
