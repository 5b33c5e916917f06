//! The envelope extraction on arbitrary bodies, correctly signed: `Verifier::verify`
//! (which reads only `eventId`, `type` and `id`) must agree with the full `Envelope`
//! deserialisation, and neither may panic or overflow the stack.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mapping_webhooks::{
    Envelope, ManualClock, MappingCompleted, Secret, Signer, Verifier, VerifyError,
};

const NOW: u64 = 1_717_250_400;
const SECRET: &str = "whsec_fuzz_envelope_0123456789abcdef";

fuzz_target!(|body: &[u8]| {
    let secret = Secret::new(SECRET).unwrap();
    let header = Signer::new(secret.clone()).sign(body, NOW);
    let verified = Verifier::new(secret)
        .clock(ManualClock::at_secs(NOW))
        .verify(&header, body);
    assert!(
        matches!(verified, Ok(_) | Err(VerifyError::NotAnEnvelope(_))),
        "{verified:?}"
    );

    if let Ok(envelope) = serde_json::from_slice::<Envelope>(body) {
        // The verifier is stricter than the full parse in two ways: the whole body must
        // be UTF-8 (the parse skips unknown fields unchecked) and a JSON object (a derived
        // `Deserialize` also reads an array by position).
        let object =
            std::str::from_utf8(body).is_ok_and(|text| text.trim_ascii_start().starts_with('{'));
        if !envelope.event_id.is_empty() && object {
            // Whatever the full parse accepts, the verifier extracts the same way.
            let verified = verified.as_ref().expect("a full envelope passes verify");
            assert_eq!(verified.event_id, envelope.event_id);
            assert_eq!(verified.event_type, envelope.event_type);
            assert_eq!(verified.delivery_id, envelope.id);
        }
        let _ = envelope.into_event();
    }
    let _ = serde_json::from_slice::<Envelope<MappingCompleted>>(body);
});
