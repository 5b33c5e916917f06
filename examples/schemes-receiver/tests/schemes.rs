//! `schemes-receiver` as a real process on 127.0.0.1, over real HTTP: for every scheme,
//! a delivery signed by the core's `Scheme::sign` (what `sender --scheme` sends) is
//! processed once and printed with its scheme and id, the same event again is a
//! duplicate (200), another secret is 401 and a missing signature header 400; plus a
//! malformed header, a stale timestamp, a `v1a` signature checked with a `whpk_` public
//! key, and Slack's `url_verification` answered only once its signature matched.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey};
use examples_testkit::support::{Logged, free_port};
use mapping_webhooks::Secret;
use mapping_webhooks::scheme::Scheme;

const WAIT: Duration = Duration::from_secs(30);

/// Each scheme's secret as its provider shows it (base64 after `whsec_` where the
/// scheme decodes it), and the variable it is given in.
const SECRETS: [(Scheme, &str, &str); 7] = [
    (
        Scheme::Standard,
        "STANDARD_WEBHOOK_SECRET",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ),
    (
        Scheme::Svix,
        "SVIX_WEBHOOK_SECRET",
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
    ),
    (
        Scheme::Stripe,
        "STRIPE_WEBHOOK_SECRET",
        "whsec_c3RyaXBlX3NlY3JldF9mb3JfdGVzdHM=",
    ),
    (Scheme::GitHub, "GITHUB_WEBHOOK_SECRET", "gh-secret-7c1e9a"),
    (
        Scheme::Shopify,
        "SHOPIFY_WEBHOOK_SECRET",
        "shpss_2b8f0d6e4c1a",
    ),
    (
        Scheme::Slack,
        "SLACK_SIGNING_SECRET",
        "8f742231b10e8888abcd99yyyzzz85a5",
    ),
    (
        Scheme::Mapping,
        "MAPPING_WEBHOOK_SECRET",
        "whsec_mapping_0a1b2c3d4e5f6a7b8c9d",
    ),
];

/// A secret no route holds (base64, so every scheme can sign with it).
const STRANGER: &str = "whsec_c3RyYW5nZXJfc3RyYW5nZXJfc3RyYW5nZXI=";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The body a sender of `scheme` sends for event `id` (the id in the body where the
/// scheme keeps it there).
fn body_of(scheme: Scheme, id: &str) -> String {
    match scheme {
        Scheme::Mapping => format!(
            r#"{{"id":"del_{id}","eventId":"{id}","type":"mapping.completed","apiVersion":"2026-06-01","data":{{}}}}"#
        ),
        Scheme::Stripe => format!(r#"{{"id":"{id}","object":"event","type":"invoice.paid"}}"#),
        Scheme::Slack => format!(
            r#"{{"token":"t","event_id":"{id}","type":"event_callback","event":{{"type":"app_mention"}}}}"#
        ),
        _ => r#"{"type":"order.created","data":{"n":1}}"#.to_owned(),
    }
}

/// Starts the receiver with every scheme's secret and the `v1a` public key.
fn start(binary: &str, public_key: &str) -> Logged {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut command = Command::new(binary);
    for (_, name, secret) in SECRETS {
        command.env(name, secret);
    }
    Logged::start(command.env("STANDARD_WEBHOOK_PUBLIC_KEY", public_key), addr)
}

struct Client {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    addr: String,
}

impl Client {
    /// POSTs `body` with `headers` to `/hooks/{route}`: the status and the answer.
    fn post(&self, route: &str, headers: &[(&str, String)], body: &str) -> (u16, String) {
        let url = format!("http://{}/hooks/{route}", self.addr);
        self.runtime.block_on(async {
            let mut request = self
                .http
                .post(url)
                .header("content-type", "application/json");
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            let response = request
                .body(body.to_owned())
                .send()
                .await
                .expect("an answer");
            (response.status().as_u16(), response.text().await.unwrap())
        })
    }
}

/// The headers `scheme`'s sender sends for `body`, signed with `secret` at `t`.
fn signed(
    scheme: Scheme,
    secret: &str,
    id: &str,
    t: u64,
    body: &str,
) -> Vec<(&'static str, String)> {
    scheme
        .sign(&Secret::new(secret).unwrap(), id, t, body.as_bytes())
        .unwrap()
}

fn lines(receiver: &Logged, at_least: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + WAIT;
    while receiver.stdout.lock().unwrap().len() < at_least {
        assert!(
            Instant::now() < deadline,
            "{} lines, expected {at_least}: {:?}",
            receiver.stdout.lock().unwrap().len(),
            receiver.stdout
        );
        thread::sleep(Duration::from_millis(10));
    }
    receiver
        .stdout
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn every_scheme_is_processed_once_and_refused_as_documented() {
    let key = SigningKey::from_bytes(&[7; 32]);
    let public = format!("whpk_{}", BASE64.encode(key.verifying_key().as_bytes()));
    let receiver = start(env!("CARGO_BIN_EXE_schemes-receiver"), &public);
    let client = Client {
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        http: reqwest::Client::new(),
        addr: receiver.addr.clone(),
    };
    let mut expected = Vec::new();
    for (scheme, _, secret) in SECRETS {
        let route = scheme.name();
        let id = format!("evt_{route}_1");
        let body = body_of(scheme, &id);
        let headers = signed(scheme, secret, &id, now(), &body);

        let (status, text) = client.post(route, &headers, &body);
        assert_eq!(status, 204, "{scheme}: processed: {text}");
        expected.push((route, id.clone()));
        let (status, text) = client.post(route, &headers, &body);
        assert_eq!(status, 200, "{scheme}: the same event again: {text}");

        // Another secret: this route's neighbour's, and one nobody holds.
        let other = format!("evt_{route}_forged");
        let forged = body_of(scheme, &other);
        for wrong in [STRANGER, neighbour(scheme)] {
            let headers = signed(scheme, wrong, &other, now(), &forged);
            let (status, text) = client.post(route, &headers, &forged);
            assert_eq!(status, 401, "{scheme}: signed with {wrong}: {text}");
        }

        // No signature header at all (the id and timestamp headers still sent).
        let unsigned: Vec<_> = headers
            .iter()
            .filter(|(name, _)| *name != scheme.signature_header())
            .cloned()
            .collect();
        let (status, text) = client.post(route, &unsigned, &body);
        assert_eq!(status, 400, "{scheme}: no signature header: {text}");
        // A signature header that does not parse.
        let mut malformed = unsigned.clone();
        malformed.push((scheme.signature_header(), "not a signature".to_owned()));
        let (status, text) = client.post(route, &malformed, &body);
        assert_eq!(status, 400, "{scheme}: malformed signature header: {text}");

        // A stale timestamp, correctly signed, where the scheme signs one.
        if scheme.has_timestamp() {
            let stale_id = format!("evt_{route}_stale");
            let stale_body = body_of(scheme, &stale_id);
            let headers = signed(scheme, secret, &stale_id, now() - 400, &stale_body);
            let (status, text) = client.post(route, &headers, &stale_body);
            assert_eq!(status, 401, "{scheme}: signed 400 s ago: {text}");
        }
    }

    // Standard Webhooks' `v1a`, checked with the public key alone.
    let (id, t, body) = ("msg_v1a_1", now(), r#"{"type":"user.created"}"#);
    let signature = key.sign(format!("{id}.{t}.{body}").as_bytes());
    let headers = [
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", t.to_string()),
        (
            "webhook-signature",
            format!("v1a,{}", BASE64.encode(signature.to_bytes())),
        ),
    ];
    assert_eq!(client.post("standard", &headers, body).0, 204, "v1a");
    expected.push(("standard", id.to_owned()));
    assert_eq!(client.post("standard", &headers, body).0, 200, "v1a again");
    let other = SigningKey::from_bytes(&[8; 32]).sign(format!("{id}.{t}.{body}").as_bytes());
    let forged = [
        headers[0].clone(),
        headers[1].clone(),
        (
            "webhook-signature",
            format!("v1a,{}", BASE64.encode(other.to_bytes())),
        ),
    ];
    assert_eq!(
        client.post("standard", &forged, body).0,
        401,
        "v1a, other key"
    );

    // Slack's handshake: its challenge echoed once the signature matched, every time
    // (never a duplicate), and no event line.
    let challenge = r#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let (_, _, slack_secret) = SECRETS[5];
    for _ in 0..2 {
        let headers = signed(Scheme::Slack, slack_secret, "", now(), challenge);
        let (status, text) = client.post("slack", &headers, challenge);
        assert_eq!(status, 200, "url_verification: {text}");
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            answer,
            serde_json::json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
        );
    }
    let headers = signed(Scheme::Slack, STRANGER, "", now(), challenge);
    let (status, text) = client.post("slack", &headers, challenge);
    assert_eq!(
        status, 401,
        "url_verification signed with another secret: {text}"
    );

    // One line per processed delivery, with its scheme and dedup id, nothing else.
    let seen = lines(&receiver, expected.len());
    thread::sleep(Duration::from_millis(100));
    let seen_now = receiver.stdout.lock().unwrap().len();
    assert_eq!(seen_now, expected.len(), "{:?}", receiver.stdout);
    let seen: Vec<(String, String)> = seen
        .iter()
        .map(|l| {
            (
                l["scheme"].as_str().unwrap().to_owned(),
                l["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = expected
        .into_iter()
        .map(|(s, id)| (s.to_owned(), id))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(
        client
            .runtime
            .block_on(async {
                client
                    .http
                    .get(format!("http://{}/healthz", client.addr))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
            .as_u16(),
        200
    );
}

/// The secret of the route listed after `scheme`'s.
fn neighbour(scheme: Scheme) -> &'static str {
    let at = SECRETS.iter().position(|(s, _, _)| *s == scheme).unwrap();
    SECRETS[(at + 1) % SECRETS.len()].2
}
