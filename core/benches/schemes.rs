//! What each other sender's signature check costs against its floor: one pre-keyed
//! HMAC-SHA256 over exactly the bytes the scheme signs (for `v1a`, one `ed25519-dalek`
//! verify of the same message), measured interleaved.
//!
//! The check is [`Verifier::verify_head`]: the scheme's headers read from the request
//! head, the timestamp window, the signature matched against the secrets handle. For
//! each scheme and size the floor and the check run in turn, batch by batch, for many
//! rounds (floor first in even rounds, check first in odd ones), so the noise of a
//! shared machine hits both alike; the ratio is the median of the per-round ratios.
//! The issue's goals: ≤ 1.3x at 300 B, ≤ 1.05x from 4 KiB; `v1a` ≤ 1.1x.
//!
//! `cargo bench -p mapping-webhooks --bench schemes [--features ed25519]`
//! (`-- --rounds N`; `-- --head` also times reading the head alone; `-- --scheme NAME`
//! runs one scheme; `cargo test --benches` runs a quick pass of 3 rounds).

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use mapping_webhooks::scheme::Scheme;
use mapping_webhooks::{ManualClock, Secret, Verifier};
use sha2::Sha256;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const T: u64 = 1_717_250_400;
const ID: &str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
const SIZES: [usize; 2] = [300, 4 * 1024];
/// Rounds (odd, for a plain median).
const ROUNDS: usize = 101;
/// The time one batch of one case should take.
const BATCH: Duration = Duration::from_millis(1);

/// A request head: the headers the scheme's sender sends, looked up by name as an
/// adapter's header map does (one lookup per header).
type Head = Vec<(&'static str, String)>;

/// A JSON body of `size` bytes holding the ids every scheme reads.
fn body(size: usize) -> Vec<u8> {
    let head = format!(r#"{{"id":"{ID}","event_id":"{ID}","eventId":"{ID}","type":"t","pad":""#);
    let mut body = head.into_bytes();
    body.resize(size - 2, b'x');
    body.extend_from_slice(b"\"}");
    body
}

/// The floor: one pre-keyed HMAC over the scheme's signed bytes (prefix, then body).
fn floor_key(scheme: Scheme) -> Hmac<Sha256> {
    let key = match scheme {
        Scheme::Standard | Scheme::Svix => BASE64.decode(&SECRET[6..]).unwrap(),
        _ => SECRET.as_bytes().to_vec(),
    };
    Hmac::new_from_slice(&key).unwrap()
}

fn prefix(scheme: Scheme) -> String {
    match scheme {
        Scheme::Mapping | Scheme::Stripe => format!("{T}."),
        Scheme::Standard | Scheme::Svix => format!("{ID}.{T}."),
        Scheme::Slack => format!("v0:{T}:"),
        _ => String::new(),
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Nanoseconds per call of `case` over `iterations` calls.
fn batch(case: &dyn Fn() -> bool, iterations: u32) -> f64 {
    let start = Instant::now();
    for _ in 0..iterations {
        assert!(case());
    }
    start.elapsed().as_nanos() as f64 / f64::from(iterations)
}

/// Runs `floor` and `check` interleaved for `rounds` rounds and prints their medians and
/// the median ratio.
fn compare(name: &str, rounds: usize, floor: &dyn Fn() -> bool, check: &dyn Fn() -> bool) {
    let iterations = |case: &dyn Fn() -> bool| {
        let once = batch(case, 64).max(1.0);
        ((BATCH.as_nanos() as f64 / once) as u32).max(1)
    };
    let (n_floor, n_check) = (iterations(floor), iterations(check));
    let (mut floors, mut checks, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (f, c) = if round % 2 == 0 {
            let f = batch(floor, n_floor);
            (f, batch(check, n_check))
        } else {
            let c = batch(check, n_check);
            (batch(floor, n_floor), c)
        };
        floors.push(f);
        checks.push(c);
        ratios.push(c / f);
    }
    println!(
        "{name:<18} floor {:>8.1} ns   check {:>8.1} ns   {:.3}x",
        median(&mut floors),
        median(&mut checks),
        median(&mut ratios)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; run any other way (`cargo test --benches`), a quick
    // pass is enough.
    let quick = !args.iter().any(|a| a == "--bench");
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(if quick { 3 } else { ROUNDS });
    // `--head`: also times reading the head alone (`Scheme::parse_head`) against the floor.
    let head_alone = args.iter().any(|a| a == "--head");
    let secret = Secret::new(SECRET).unwrap();
    let verifier = Verifier::new(secret.clone()).clock(ManualClock::at_secs(T));
    println!("signature check against its floor, {rounds} interleaved rounds (medians)");
    // `--scheme NAME`: that scheme only (for a profiler).
    let only: Option<Scheme> = args
        .iter()
        .position(|a| a == "--scheme")
        .and_then(|i| args.get(i + 1)?.parse().ok());
    for scheme in Scheme::ALL
        .into_iter()
        .filter(|s| only.is_none_or(|o| o == *s))
    {
        let key = floor_key(scheme);
        let prefix = prefix(scheme);
        for size in SIZES {
            let body = body(size);
            let head: Head = scheme.sign(&secret, ID, T, &body).unwrap();
            let floor = || {
                let mut mac = key.clone();
                mac.update(black_box(prefix.as_bytes()));
                mac.update(black_box(&body));
                black_box(mac.finalize());
                true
            };
            let check = || {
                verifier
                    .verify_head(scheme, black_box(&head), black_box(&body))
                    .is_ok()
            };
            compare(&format!("{scheme} {size} B"), rounds, &floor, &check);
            if head_alone {
                let parse = || scheme.parse_head(black_box(&head)).is_ok();
                compare(&format!("{scheme} head"), rounds, &floor, &parse);
            }
        }
    }
    #[cfg(feature = "ed25519")]
    if only.is_none() {
        v1a(rounds);
    }
}

/// `v1a` with a `whpk_` key against one `ed25519-dalek` verify of the same message.
#[cfg(feature = "ed25519")]
fn v1a(rounds: usize) {
    use ed25519_dalek::{Signer, SigningKey, Verifier as _};
    let key = SigningKey::from_bytes(&[7; 32]);
    let public = format!("whpk_{}", BASE64.encode(key.verifying_key().as_bytes()));
    let verifier = Verifier::new(Secret::new(public).unwrap()).clock(ManualClock::at_secs(T));
    for size in SIZES {
        let body = body(size);
        let mut message = format!("{ID}.{T}.").into_bytes();
        message.extend_from_slice(&body);
        let signature = key.sign(&message);
        let head: Head = vec![
            ("webhook-id", ID.to_owned()),
            ("webhook-timestamp", T.to_string()),
            (
                "webhook-signature",
                format!("v1a,{}", BASE64.encode(signature.to_bytes())),
            ),
        ];
        let public = key.verifying_key();
        let floor = || {
            public
                .verify(black_box(&message), black_box(&signature))
                .is_ok()
        };
        let check = || {
            verifier
                .verify_head(Scheme::Standard, black_box(&head), black_box(&body))
                .is_ok()
        };
        compare(&format!("v1a {size} B"), rounds, &floor, &check);
    }
}
