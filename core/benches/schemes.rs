//! What each other sender's signature check costs against its floor: one pre-keyed
//! HMAC-SHA256 over exactly the bytes the scheme signs (for `v1a`, one `ed25519-dalek`
//! verify of the same message), measured side by side.
//!
//! `cargo bench -p mapping-webhooks --bench schemes [--features ed25519]`.

use std::hint::black_box;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use mapping_webhooks::adapter::RequestHead;
use mapping_webhooks::scheme::Scheme;
use mapping_webhooks::{ManualClock, Secret, Verifier};
use sha2::Sha256;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const T: u64 = 1_717_250_400;
const ID: &str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
const SIZES: [usize; 2] = [300, 4 * 1024];

struct Head(Vec<(&'static str, String)>);

impl RequestHead for Head {
    fn header_values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        self.0
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| v.as_bytes())
    }
    fn path(&self) -> &str {
        "/hooks"
    }
    fn host(&self) -> Option<&str> {
        None
    }
}

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

fn schemes(c: &mut Criterion) {
    let secret = Secret::new(SECRET).unwrap();
    let verifier = Verifier::new(secret.clone()).clock(ManualClock::at_secs(T));
    let mut group = c.benchmark_group("schemes");
    for scheme in Scheme::ALL {
        let key = floor_key(scheme);
        let prefix = prefix(scheme);
        for size in SIZES {
            let body = body(size);
            let head = Head(scheme.sign(&secret, ID, T, &body).unwrap());
            assert!(verifier.verify_head(scheme, &head, &body).is_ok());
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("{scheme}/floor"), size),
                &body,
                |b, body| {
                    b.iter(|| {
                        let mut mac = key.clone();
                        mac.update(black_box(prefix.as_bytes()));
                        mac.update(black_box(body));
                        mac.finalize()
                    });
                },
            );
            group.bench_with_input(
                BenchmarkId::new(format!("{scheme}/check"), size),
                &body,
                |b, body| {
                    b.iter(|| verifier.verify_head(scheme, black_box(&head), black_box(body)));
                },
            );
        }
    }
    #[cfg(feature = "ed25519")]
    v1a(&mut group);
    group.finish();
}

/// `v1a` with a `whpk_` key against one `ed25519-dalek` verify of the same message.
#[cfg(feature = "ed25519")]
fn v1a(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    use ed25519_dalek::{Signer, SigningKey, Verifier as _};
    let key = SigningKey::from_bytes(&[7; 32]);
    let public = format!("whpk_{}", BASE64.encode(key.verifying_key().as_bytes()));
    let verifier = Verifier::new(Secret::new(public).unwrap()).clock(ManualClock::at_secs(T));
    for size in SIZES {
        let body = body(size);
        let mut message = format!("{ID}.{T}.").into_bytes();
        message.extend_from_slice(&body);
        let signature = key.sign(&message);
        let head = Head(vec![
            ("webhook-id", ID.to_owned()),
            ("webhook-timestamp", T.to_string()),
            (
                "webhook-signature",
                format!("v1a,{}", BASE64.encode(signature.to_bytes())),
            ),
        ]);
        assert!(verifier.verify_head(Scheme::Standard, &head, &body).is_ok());
        let public = key.verifying_key();
        group.bench_with_input(BenchmarkId::new("v1a/floor", size), &message, |b, m| {
            b.iter(|| public.verify(black_box(m), black_box(&signature)));
        });
        group.bench_with_input(BenchmarkId::new("v1a/check", size), &body, |b, body| {
            b.iter(|| verifier.verify_head(Scheme::Standard, black_box(&head), black_box(body)));
        });
    }
}

criterion_group!(benches, schemes);
criterion_main!(benches);
