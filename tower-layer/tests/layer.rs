//! The layer's configuration and its refusal formats.

use std::time::Duration;

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use mapping_webhooks_tower::reject::{json, plain_text};
use mapping_webhooks_tower::{ConfigError, Gate, Reply, VerifyError, WebhookVerify};

#[test]
fn a_blank_secret_is_refused_by_the_gate_builder() {
    // Was `WebhookVerify::try_new`: the fallible form is the gate's builder.
    assert_eq!(
        Gate::builder()
            .secret(" ")
            .build()
            .map(WebhookVerify::from_gate)
            .unwrap_err(),
        ConfigError::EmptySecret
    );
}

#[test]
#[should_panic(expected = "signing secret is empty")]
fn new_panics_on_an_empty_secret() {
    let _ = WebhookVerify::new("");
}

#[test]
fn a_zero_body_limit_is_refused() {
    let error = Gate::builder()
        .secret("whsec_x")
        .body_limit(0)
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("body limit"), "{error}");
}

#[test]
fn builder_settings_reach_the_gate() {
    let gate = Gate::builder()
        .secret("whsec_0123456789abcdef0123456789")
        .body_limit(10)
        .read_timeout(Duration::from_secs(2))
        .tolerance(Duration::from_secs(7))
        .build()
        .unwrap();
    let layer = WebhookVerify::from_gate(gate);
    assert_eq!(layer.gate().body_limit(), 10);
    assert_eq!(layer.gate().read_timeout(), Duration::from_secs(2));
    assert_eq!(
        layer.gate().verifier().get_tolerance(),
        Duration::from_secs(7)
    );
    let shown = format!("{:?}", layer.on_reject(json));
    assert!(shown.contains("<fn>"), "{shown}");
    assert!(!shown.contains("0123456789abcdef"), "{shown}");
}

#[test]
fn plain_text_carries_status_and_reason() {
    let r = plain_text(&Reply::Refused(VerifyError::SignatureMismatch));
    assert_eq!(r.status(), 401);
    assert_eq!(r.body(), "signature does not match");
    assert!(r.headers().get(RETRY_AFTER).is_none());
}

#[test]
fn in_flight_says_when_to_retry() {
    let r = plain_text(&Reply::InFlight);
    assert_eq!(r.status(), 409);
    assert_eq!(r.headers()[RETRY_AFTER], "60");
    let r = json(&Reply::InFlight);
    assert_eq!(r.headers()[RETRY_AFTER], "60");
    assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
    let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(v["code"], "in_flight");
}
