//! The cases compared by the peer benchmark, the interleaved run and the chart: the
//! floor, our signature check, our full verify, the naive way and svix, all on the
//! same bodies. The floor, the naive way and the bodies come from the core's own
//! benchmark support, so both suites measure the same code.

#![allow(missing_docs)]

#[path = "../../../core/benches/support/mod.rs"]
pub mod support;

use http::{HeaderMap, HeaderValue};
use mapping_webhooks::{DEFAULT_TOLERANCE, Secret, Signer, Verifier};

use support::{Floor, SECRET, envelope, naive_verify, now_secs};

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// One HMAC-SHA256 over `"{t}." + body` from a pre-keyed MAC, nothing else.
    Floor,
    /// Our `Verifier::verify_signature`: parse, window, HMAC, compare.
    Signature,
    /// Our `Verifier::verify`: the signature check plus the envelope's ids.
    Full,
    /// New key schedule, `format!`, hex `String`s.
    Naive,
    /// `svix::webhooks::Webhook::verify`.
    Svix,
}

/// The cases, in the order they are drawn and printed.
pub const CASES: [Case; 5] = [
    Case::Floor,
    Case::Signature,
    Case::Full,
    Case::Naive,
    Case::Svix,
];

impl Case {
    /// The name used in criterion's ids and the tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Floor => "floor",
            Self::Signature => "signature",
            Self::Full => "full",
            Self::Naive => "naive",
            Self::Svix => "svix",
        }
    }
}

/// One body, signed for every case at the same moment.
pub struct Setup {
    pub body: Vec<u8>,
    floor: Floor,
    prefix: Vec<u8>,
    verifier: Verifier,
    header: String,
    timestamp: u64,
    svix: svix::webhooks::Webhook,
    svix_headers: HeaderMap,
}

impl Setup {
    /// Signs a `size`-byte envelope now; every case is checked to accept it.
    pub fn new(size: usize) -> Self {
        let secret = Secret::new(SECRET).expect("valid secret");
        let body = envelope(size, 1);
        let timestamp = now_secs();
        let header = Signer::new(secret.clone()).sign(&body, timestamp);
        // svix keys its HMAC with the same bytes, so both hash the same amount.
        let svix =
            svix::webhooks::Webhook::from_bytes(SECRET.as_bytes().to_vec()).expect("non-empty key");
        let svix_ts = i64::try_from(timestamp).expect("timestamp fits");
        let signature = svix
            .sign("msg_01HZ1A2B3C4D5E6F7G8H9J0K", svix_ts, &body)
            .expect("utf-8 body");
        let mut svix_headers = HeaderMap::new();
        svix_headers.insert(
            "webhook-id",
            HeaderValue::from_static("msg_01HZ1A2B3C4D5E6F7G8H9J0K"),
        );
        svix_headers.insert("webhook-timestamp", HeaderValue::from(svix_ts));
        svix_headers.insert(
            "webhook-signature",
            HeaderValue::from_str(&signature).expect("ascii signature"),
        );
        let setup = Self {
            body,
            floor: Floor::new(),
            prefix: format!("{timestamp}.").into_bytes(),
            verifier: Verifier::new(secret),
            header,
            timestamp,
            svix,
            svix_headers,
        };
        for case in CASES {
            assert!(
                setup.run(case),
                "{case:?} refused a valid request at {size} bytes"
            );
        }
        setup
    }

    /// Runs one case once on the body; `true` when it accepted the request.
    #[inline]
    pub fn run(&self, case: Case) -> bool {
        let body = std::hint::black_box(&self.body[..]);
        match case {
            Case::Floor => {
                std::hint::black_box(self.floor.mac(std::hint::black_box(&self.prefix), body));
                true
            }
            Case::Signature => self.verifier.verify_signature(&self.header, body).is_ok(),
            Case::Full => self.verifier.verify(&self.header, body).is_ok(),
            Case::Naive => naive_verify(
                SECRET,
                &self.header,
                body,
                now_secs(),
                DEFAULT_TOLERANCE.as_secs(),
            ),
            Case::Svix => self.svix.verify(body, &self.svix_headers).is_ok(),
        }
    }

    /// The signed timestamp.
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }
}
