//! What the verification benchmarks share: realistic bodies, the physical floor and
//! the naive way. Also compiled into the peer comparison (`benches/peers`), so both
//! measure exactly the same code.

#![allow(dead_code, unreachable_pub)]

use std::fmt::Write as _;

use std::sync::Arc;

use hmac::digest::{CtOutput, Output};
use hmac::{Hmac, KeyInit, Mac};
use mapping_webhooks::{Clock, DEFAULT_TOLERANCE, SignatureHeader, SystemClock};
use sha2::Sha256;

/// The secret every benchmark signs with (the dashboard's format).
pub const SECRET: &str = "whsec_e1c5d3a0b2f4c6d8e0f2a4b6c8d0e2f4a6b83a0e";

/// The body sizes measured: a real delivery, then ever larger padded ones.
pub const SIZES: [usize; 4] = [300, 4 * 1024, 64 * 1024, 1024 * 1024];

/// A realistic event id, 30 characters like the sender's (`evt_` and a ULID-like tail).
pub fn event_id(n: u64) -> String {
    format!("evt_01HZ{n:022}")
}

/// A `mapping.completed` envelope of exactly `size` bytes, padded inside `data` so the
/// JSON shape stays the sender's.
pub fn envelope(size: usize, n: u64) -> Vec<u8> {
    let head = format!(
        r#"{{"id":"del_01HZ{n:022}","eventId":"{}","type":"mapping.completed","apiVersion":"2026-06-01","createdAt":"2026-06-07T12:01:00Z","data":{{"mappingJobId":"job_01HZ1A2B3C","status":"COMPLETED","rowCount":4821,"exportFileId":"ef_01HZ1A2B3C","n":""#,
        event_id(n)
    );
    let tail = r#""}}"#;
    let pad = size
        .checked_sub(head.len() + tail.len())
        .expect("size too small for an envelope");
    let words = b"rows mapped to the export ";
    let mut body = head.into_bytes();
    body.extend(words.iter().cycle().take(pad));
    body.extend_from_slice(tail.as_bytes());
    assert_eq!(body.len(), size);
    body
}

/// The seconds since the Unix epoch, for headers that must be within the window.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The physical floor: one HMAC-SHA256 over `"{t}." + body` from a MAC keyed in
/// advance, with the prefix already written. Nothing is parsed or compared.
#[derive(Clone)]
pub struct Floor {
    mac: Hmac<Sha256>,
}

impl Default for Floor {
    fn default() -> Self {
        Self::new()
    }
}

impl Floor {
    pub fn new() -> Self {
        Self {
            mac: Hmac::new_from_slice(SECRET.as_bytes()).expect("any key length"),
        }
    }

    #[inline]
    pub fn mac(&self, prefix: &[u8], body: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(prefix);
        mac.update(body);
        mac.finalize().into_bytes().into()
    }
}

/// The way many libraries verify: split the header into strings, build the key
/// schedule on every request, `format!` the signed payload into a new `String`,
/// hex-encode the MAC and compare strings.
pub fn naive_verify(secret: &str, header: &str, body: &[u8], now: u64, tolerance: u64) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            return false;
        };
        match key {
            "t" => timestamp = value.parse::<u64>().ok(),
            "v1" => signatures.push(value.to_string()),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return false;
    };
    if now.abs_diff(timestamp) > tolerance {
        return false;
    }
    let Ok(body) = std::str::from_utf8(body) else {
        return false;
    };
    let payload = format!("{timestamp}.{body}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(payload.as_bytes());
    let expected = hex(&mac.finalize().into_bytes());
    signatures.contains(&expected)
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The signature check as it was before the [`Secrets`](mapping_webhooks::Secrets)
/// handle: the same steps as `Verifier::verify_signature`, over keys fixed when it is
/// built. `verify/signature` (through the handle) is measured against it in the same run,
/// and `secrets_handle` interleaves the two.
pub struct FixedKeys {
    keys: Vec<Hmac<Sha256>>,
    tolerance_secs: u64,
    clock: Arc<dyn Clock>,
}

impl Default for FixedKeys {
    fn default() -> Self {
        Self::new()
    }
}

impl FixedKeys {
    pub fn new() -> Self {
        Self {
            keys: vec![Hmac::new_from_slice(SECRET.as_bytes()).expect("any key length")],
            tolerance_secs: DEFAULT_TOLERANCE.as_secs(),
            clock: Arc::new(SystemClock),
        }
    }

    pub fn verify_signature(&self, header: &str, body: &[u8]) -> Result<usize, &'static str> {
        let header = SignatureHeader::parse(header).map_err(|_| "malformed")?;
        let timestamp = header.timestamp();
        let now = self.clock.now_secs();
        if now.saturating_sub(timestamp) > self.tolerance_secs
            || timestamp.saturating_sub(now) > self.tolerance_secs
        {
            return Err("window");
        }
        for (index, key) in self.keys.iter().enumerate() {
            let mut mac = key.clone();
            let mut prefix = [0u8; 21];
            mac.update(timestamp_prefix(timestamp, &mut prefix));
            mac.update(body);
            let expected = mac.finalize();
            for signature in header.signatures() {
                if expected == CtOutput::new(Output::<Hmac<Sha256>>::from(*signature)) {
                    return Ok(index);
                }
            }
        }
        Err("mismatch")
    }
}

fn timestamp_prefix(mut timestamp: u64, buf: &mut [u8; 21]) -> &[u8] {
    let mut start = buf.len() - 1;
    buf[start] = b'.';
    loop {
        start -= 1;
        buf[start] = b'0' + (timestamp % 10) as u8;
        timestamp /= 10;
        if timestamp == 0 {
            return &buf[start..];
        }
    }
}
