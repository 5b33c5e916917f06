//! What every scheme head target shares: the fuzzer's bytes as a request (each header's
//! value, or its absence, then the body), through the parser and a real gate.

use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use mapping_webhooks::adapter::RequestHead;
use mapping_webhooks::scheme::{MAX_ID_LEN, Scheme};
use mapping_webhooks::{Admission, Gate, ManualClock, Secret, UnsignedHeaders};

pub const NOW: u64 = 1_717_250_400;
/// Usable by every scheme (base64 after `whsec_`, for Standard Webhooks and Svix).
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Head(Vec<(&'static str, Vec<u8>)>);

impl RequestHead for Head {
    fn header_values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        self.0
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| v.as_slice())
    }
    fn path(&self) -> &str {
        "/hooks"
    }
    fn host(&self) -> Option<&str> {
        None
    }
}

fn ready<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the in-memory store never waits"),
    }
}

/// `data` is split on `0xff` into one part per name in `names`, then the body. A part
/// that is a lone `0xfe` leaves its header out; a part holding `0xfd` is sent twice (the
/// bytes before and after it).
pub fn run(scheme: Scheme, names: &[&'static str], data: &[u8]) {
    let mut parts = data.splitn(names.len() + 1, |&b| b == 0xff);
    let mut headers = Vec::new();
    for name in names {
        let part = parts.next().unwrap_or_default();
        if part == [0xfe] {
            continue;
        }
        match part.iter().position(|&b| b == 0xfd) {
            Some(i) => {
                headers.push((*name, part[..i].to_vec()));
                headers.push((*name, part[i + 1..].to_vec()));
            }
            None => headers.push((*name, part.to_vec())),
        }
    }
    let body = parts.next().unwrap_or_default();
    let head = Head(headers);

    match scheme.parse_head(&head) {
        Ok(parsed) => {
            assert_eq!(parsed.scheme(), scheme);
            assert_eq!(parsed.timestamp().is_some(), scheme.has_timestamp());
            if let Some(id) = parsed.id() {
                assert!(!id.is_empty() && id.len() <= MAX_ID_LEN);
                assert!(id.bytes().all(|b| b.is_ascii_graphic()), "{id:?}");
            }
            // Debug never shows the signature header's value (beyond the id, which it
            // shows, and which may hold any text).
            let id = format!("{:?}", parsed.id().unwrap_or_default());
            let shown = format!("{parsed:?}").replace(&id, "");
            let signature = head
                .header_values(scheme.signature_header())
                .next()
                .unwrap();
            if signature.len() >= 16 {
                let text = String::from_utf8_lossy(signature);
                assert!(!shown.contains(text.trim()), "{shown}");
            }
        }
        Err(error) => {
            assert_eq!(error.status(), 400, "{error}");
            assert!(!error.to_string().contains(SECRET));
        }
    }

    // Through a real gate: a refusal is a 4xx that names no secret; anything processed
    // carries the signature our signer makes for that id, time and body. One gate per
    // target, without dedup, so an input's outcome never depends on the ones before it.
    static GATE: OnceLock<Gate> = OnceLock::new();
    let gate = GATE.get_or_init(|| {
        Gate::builder()
            .scheme(scheme)
            .secret(SECRET)
            .clock(ManualClock::at_secs(NOW))
            .without_dedup()
            .build()
            .expect("a valid secret")
    });
    match ready(gate.admit_head(&head, UnsignedHeaders::default(), body)) {
        Admission::Reply(reply) => {
            assert!((400..500).contains(&reply.status()), "{}", reply.status());
            if let Some(error) = reply.error() {
                assert!(!error.to_string().contains(SECRET));
            }
        }
        Admission::Process { verified, ticket } => {
            drop(ticket);
            let parsed = scheme.parse_head(&head).expect("a processed head parses");
            let id = parsed.id().unwrap_or_default();
            let expected = scheme
                .sign(&Secret::new(SECRET).unwrap(), id, verified.timestamp, body)
                .unwrap();
            let (_, ours) = expected
                .iter()
                .find(|(n, _)| *n == scheme.signature_header())
                .unwrap();
            let sent = String::from_utf8_lossy(signature_of(&head, scheme)).to_ascii_lowercase();
            let ours = ours.trim_start_matches("v1,").to_ascii_lowercase();
            assert!(
                sent.contains(&ours),
                "processed without our signature: {sent}"
            );
        }
    }
}

fn signature_of(head: &Head, scheme: Scheme) -> &[u8] {
    head.header_values(scheme.signature_header())
        .next()
        .unwrap_or_default()
}
