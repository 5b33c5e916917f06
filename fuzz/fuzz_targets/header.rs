//! The `X-Webhook-Signature` parser on arbitrary bytes: it never panics, respects its
//! caps, and what it accepts survives a round trip through the canonical form.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mapping_webhooks::{HeaderError, MAX_HEADER_LEN, MAX_SIGNATURES, SignatureHeader};

fuzz_target!(|data: &[u8]| {
    match SignatureHeader::parse(data) {
        Ok(header) => {
            assert!(data.len() <= MAX_HEADER_LEN);
            assert!(data.is_ascii(), "accepted a header that is not ASCII");
            let signatures: Vec<[u8; 32]> = header.signatures().copied().collect();
            assert!(!signatures.is_empty() && signatures.len() <= MAX_SIGNATURES);
            // The Debug form never shows a signature.
            let shown = format!("{header:?}");
            for signature in &signatures {
                assert!(!shown.contains(&hex(signature)));
            }
            let mut canonical = format!("t={}", header.timestamp());
            for signature in &signatures {
                canonical.push_str(",v1=");
                canonical.push_str(&hex(signature));
            }
            let again = SignatureHeader::parse(&canonical).expect("canonical form parses");
            assert_eq!(again.timestamp(), header.timestamp());
            assert!(again.signatures().copied().eq(signatures.iter().copied()));
        }
        Err(error) => {
            if data.len() > MAX_HEADER_LEN {
                assert_eq!(error, HeaderError::TooLong);
            }
            assert!(!error.reason().is_empty());
        }
    }
});

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
