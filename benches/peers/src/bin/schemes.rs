//! Standard Webhooks at 300 B, side by side: this crate's check (`Verifier::verify_head`
//! with `Scheme::Standard` and `Scheme::Svix`, reading an `http::HeaderMap` as the tower
//! adapter does) against the `standardwebhooks` crate's and the `svix` crate's
//! `Webhook::verify`, and the floor (one pre-keyed HMAC-SHA256 over `{id}.{ts}.{body}`).
//! Every case verifies the same body, signed with the same `whsec_` secret, the same
//! id and timestamp. Interleaved rounds (every case in turn, the order rotated), each
//! ratio the median of the per-round ratios. The issue's goal: at least 3x faster than
//! both crates.
//!
//! `svix` is kept although it pulls an HTTP client: it was already this folder's
//! dependency (the Mapping.Travel comparison), and only `Webhook::verify` is measured.
//! `standardwebhooks` is small (base64, hmac-sha256, http, thiserror, time).
//!
//! `cargo run --release --manifest-path benches/peers/Cargo.toml --bin schemes`

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderValue};
use mapping_webhooks::adapter::RequestHead;
use mapping_webhooks::scheme::Scheme;
use mapping_webhooks::{Secret, Verifier};
use sha2::Sha256;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ID: &str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
const SIZE: usize = 300;
/// Rounds (odd, for a plain median).
const ROUNDS: usize = 61;
/// The time one batch of one case should take.
const BATCH: Duration = Duration::from_millis(2);

/// A request head as the tower adapter reads it: an `http::HeaderMap`.
struct Head<'a>(&'a HeaderMap);

impl RequestHead for Head<'_> {
    fn header_values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        self.0.get_all(name).iter().map(HeaderValue::as_bytes)
    }
    fn path(&self) -> &str {
        "/hooks/standard"
    }
    fn host(&self) -> Option<&str> {
        None
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let mut body = br#"{"type":"invoice.paid","data":{"pad":""#.to_vec();
    body.resize(SIZE - 3, b'x');
    body.extend_from_slice(br#""}}"#);
    let secret = Secret::new(SECRET).expect("valid");
    let headers_of = |scheme: Scheme| {
        let mut map = HeaderMap::new();
        for (name, value) in scheme.sign(&secret, ID, now, &body).expect("signs") {
            map.insert(name, HeaderValue::from_str(&value).expect("ascii"));
        }
        map
    };
    let standard_headers = headers_of(Scheme::Standard);
    let svix_headers = headers_of(Scheme::Svix);
    let ours = Verifier::new(secret.clone());
    let theirs = standardwebhooks::Webhook::new(SECRET).expect("a whsec_ secret");
    let svix = svix::webhooks::Webhook::new(SECRET).expect("a whsec_ secret");
    let floor_key = Hmac::<Sha256>::new_from_slice(&BASE64.decode(&SECRET[6..]).expect("base64"))
        .expect("any key length");
    let prefix = format!("{ID}.{now}.");

    type Case<'a> = (&'static str, Box<dyn Fn() -> bool + 'a>);
    let cases: [Case<'_>; 5] = [
        (
            "floor (one HMAC)",
            Box::new(|| {
                let mut mac = floor_key.clone();
                mac.update(std::hint::black_box(prefix.as_bytes()));
                mac.update(std::hint::black_box(&body));
                std::hint::black_box(mac.finalize());
                true
            }),
        ),
        (
            "ours, Standard",
            Box::new(|| {
                ours.verify_head(Scheme::Standard, &Head(&standard_headers), &body)
                    .is_ok()
            }),
        ),
        (
            "ours, Svix",
            Box::new(|| {
                ours.verify_head(Scheme::Svix, &Head(&svix_headers), &body)
                    .is_ok()
            }),
        ),
        (
            "standardwebhooks",
            Box::new(|| theirs.verify(&body, &standard_headers).is_ok()),
        ),
        (
            "svix",
            Box::new(|| svix.verify(&body, &svix_headers).is_ok()),
        ),
    ];
    let batch = |case: &dyn Fn() -> bool, iterations: u32| {
        let start = Instant::now();
        for _ in 0..iterations {
            assert!(case());
        }
        start.elapsed().as_nanos() as f64 / f64::from(iterations)
    };
    let iterations: Vec<u32> = cases
        .iter()
        .map(|(name, case)| {
            assert!(case(), "{name} refused a valid request");
            let once = batch(&**case, 32).max(1.0);
            ((BATCH.as_nanos() as f64 / once) as u32).max(1)
        })
        .collect();
    let mut times = vec![Vec::with_capacity(ROUNDS); cases.len()];
    for round in 0..ROUNDS {
        for k in 0..cases.len() {
            let i = (round + k) % cases.len();
            times[i].push(batch(&*cases[i].1, iterations[i]));
        }
    }
    let ratio = |a: usize, b: usize| {
        let mut r: Vec<f64> = (0..ROUNDS).map(|x| times[a][x] / times[b][x]).collect();
        median(&mut r)
    };
    println!("Standard Webhooks verify, {SIZE} B, {ROUNDS} interleaved rounds (medians)");
    println!("| case | time | / floor | / ours (Standard) |");
    println!("|---|---:|---:|---:|");
    for (i, (name, _)) in cases.iter().enumerate() {
        println!(
            "| {name} | {:.0} ns | {:.2}x | {:.2}x |",
            median(&mut times[i].clone()),
            ratio(i, 0),
            ratio(i, 1)
        );
    }
}
