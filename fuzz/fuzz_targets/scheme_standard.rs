//! Standard Webhooks' (and Svix's) headers on arbitrary bytes, through the parser and a real gate: never a panic, a
//! refusal is a 4xx naming no secret, an accepted head is within its caps, and nothing
//! is processed without the signature our signer makes (see `common/scheme.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mapping_webhooks::scheme::Scheme;

#[path = "common/scheme.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    common::run(
        Scheme::Standard,
        &["webhook-id", "webhook-timestamp", "webhook-signature"],
        data,
    );
});
