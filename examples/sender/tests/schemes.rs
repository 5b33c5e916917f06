//! `sender --scheme`: for each other sender's scheme, the sender's delivery is processed
//! by a real receiver of that scheme (the tower layer on 127.0.0.1:0) with the event id
//! the sender was given, the same event again is a duplicate, and another secret is
//! refused.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Extension;
use axum::http::StatusCode;
use axum::routing::post;
use mapping_webhooks_tower::{Gate, Scheme, Verified, WebhookVerify};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Serves `POST /hooks/{scheme}` behind the tower layer; returns the URL and what the
/// handler saw.
fn receiver(
    runtime: &tokio::runtime::Runtime,
    scheme: Scheme,
) -> (String, Arc<Mutex<Vec<Verified>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let gate = Gate::builder()
        .scheme(scheme)
        .secret(SECRET)
        .build()
        .unwrap();
    let handler_seen = seen.clone();
    let app = Router::new()
        .route(
            &format!("/hooks/{scheme}"),
            post(move |Extension(verified): Extension<Verified>| {
                let seen = handler_seen.clone();
                async move {
                    seen.lock().unwrap().push(verified);
                    StatusCode::OK
                }
            }),
        )
        .layer(WebhookVerify::from_gate(gate));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/hooks/{scheme}", listener.local_addr().unwrap());
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn send(args: &[&str]) -> (u8, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let args = args.iter().map(|a| (*a).to_owned()).collect();
    let code = sender::run(args, &|_| None, &mut out, &mut err);
    let text = String::from_utf8(out).unwrap() + &String::from_utf8(err).unwrap();
    (code, text)
}

#[test]
fn every_scheme_the_sender_signs_is_processed_once_by_its_receiver() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for scheme in Scheme::ALL.into_iter().filter(|s| *s != Scheme::Mapping) {
        let (url, seen) = receiver(&runtime, scheme);
        let id = format!("evt_sender_{scheme}");
        let args = [
            "--scheme",
            scheme.name(),
            "--url",
            &url,
            "--secret",
            SECRET,
            "--event-id",
            &id,
        ];
        let (code, out) = send(&args);
        assert_eq!(code, 0, "{scheme}: {out}");
        assert!(out.contains("1 processed"), "{scheme}: {out}");
        let verified = seen.lock().unwrap().clone();
        assert_eq!(verified.len(), 1, "{scheme}");
        assert_eq!(
            (verified[0].scheme, verified[0].event_id.as_str()),
            (scheme, id.as_str())
        );

        let (code, out) = send(&args);
        assert_eq!(code, 0, "{scheme}: {out}");
        assert!(out.contains("1 duplicate"), "{scheme}: {out}");

        let stranger = "whsec_c3RyYW5nZXJfc3RyYW5nZXJfc3RyYW5nZXI=";
        let other = format!("{id}_forged");
        let (code, out) = send(&[
            "--scheme",
            scheme.name(),
            "--url",
            &url,
            "--secret",
            stranger,
            "--event-id",
            &other,
        ]);
        assert_eq!(code, 1, "{scheme}: {out}");
        assert!(out.contains("401"), "{scheme}: {out}");
        assert_eq!(seen.lock().unwrap().len(), 1, "{scheme}");
    }
    // A secret the scheme cannot use is a usage error.
    let (code, out) = send(&["--scheme", "standard", "--secret", "whsec_not base64!"]);
    assert_eq!(code, 2, "{out}");
    let (code, out) = send(&["--scheme", "gitlab"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("unknown webhook scheme"), "{out}");
}
