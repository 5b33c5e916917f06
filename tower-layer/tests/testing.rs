//! What a user's tests need, from this crate alone: signed requests at a given time for
//! `oneshot`, a manual clock that drives the window and the default store, and handlers
//! unit-tested without the layer.
#![cfg(feature = "axum")]

use std::time::Duration;

use axum::Router;
use axum::body::to_bytes;
use axum::http::StatusCode;
use axum::routing::post;
use mapping_webhooks_tower::testing::SignedRequest;
use mapping_webhooks_tower::{
    Clock, Envelope, Event, EventRouter, Gate, MAPPING_COMPLETED, MAPPING_ERROR_RESOLVED,
    ManualClock, MappingCompleted, MappingErrorResolved, Verified, VerifiedEvent, WebhookVerify,
};
use tower::ServiceExt;

const SECRET: &str = "whsec_tower_testing_0123456789abcdef";
const T: u64 = 1_717_250_400;

async fn on_event(event: VerifiedEvent<Event>) -> StatusCode {
    match event.envelope.data {
        Event::MappingCompleted(job) if job.row_count == 0 => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::NO_CONTENT,
    }
}

fn completed(event_id: &str, rows: u64) -> Envelope<MappingCompleted> {
    let job = MappingCompleted::new("job_1", "COMPLETED", rows, None);
    Envelope::new("del_1", event_id, MAPPING_COMPLETED, job)
}

#[tokio::test]
async fn a_signed_request_at_a_manual_time_is_processed_once() {
    let clock = ManualClock::at_secs(T);
    let app =
        Router::new()
            .route("/hooks/mapping", post(on_event))
            .layer(WebhookVerify::from_gate(
                Gate::builder()
                    .secret(SECRET)
                    .clock(clock.clone())
                    .build()
                    .unwrap(),
            ));
    let signed = || {
        SignedRequest::new(&completed("evt_1", 10), SECRET)
            .uri("/hooks/mapping")
            .signed_at(clock.now_secs())
            .build()
    };
    let first = app.clone().oneshot(signed()).await.unwrap();
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    let copy = app.clone().oneshot(signed()).await.unwrap();
    assert_eq!(copy.status(), StatusCode::OK, "a copy is acknowledged");
    // The manual clock drives the default store: past its TTL the event is forgotten.
    clock.advance(Duration::from_secs(24 * 3600 + 1));
    let later = app.clone().oneshot(signed()).await.unwrap();
    assert_eq!(later.status(), StatusCode::NO_CONTENT, "processed again");
    // Signed at the old time: outside the window of the manual clock.
    let stale = SignedRequest::new(&completed("evt_2", 10), SECRET)
        .uri("/hooks/mapping")
        .signed_at(T)
        .build();
    let response = app.oneshot(stale).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn the_request_carries_the_sender_s_headers_and_body() {
    let envelope = completed("evt_h", 3);
    let signed = SignedRequest::new(&envelope, SECRET).signed_at(T);
    let signature = signed.signature();
    let request = signed.build();
    let header = |name: &str| request.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("x-webhook-signature"), signature);
    assert!(signature.starts_with(&format!("t={T},v1=")));
    assert_eq!(header("x-webhook-event"), MAPPING_COMPLETED);
    assert_eq!(header("x-webhook-delivery"), "del_1");
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(request.method(), "POST");
    let body: Envelope<MappingCompleted> = serde_json::from_str(request.body()).unwrap();
    assert_eq!(body, envelope);
}

#[tokio::test]
async fn handlers_are_unit_tested_without_the_layer() {
    let event = VerifiedEvent::from_envelope(completed("evt_u", 0));
    assert_eq!(event.verified.event_id, "evt_u");
    assert_eq!(event.verified.event_type, MAPPING_COMPLETED);
    let job = MappingCompleted::new("job_1", "COMPLETED", 0, None);
    let typed = VerifiedEvent::new(
        Envelope::new(
            "del_1",
            "evt_u",
            MAPPING_COMPLETED,
            Event::MappingCompleted(job),
        ),
        Verified::new("evt_u", MAPPING_COMPLETED, "del_1", T),
    );
    assert_eq!(on_event(typed).await, StatusCode::UNPROCESSABLE_ENTITY);
    let resolved = VerifiedEvent::from_envelope(Envelope::new(
        "del_2",
        "evt_r",
        MAPPING_ERROR_RESOLVED,
        Event::MappingErrorResolved(MappingErrorResolved::new(serde_json::json!({}))),
    ));
    assert_eq!(on_event(resolved).await, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_router_without_the_layer_is_500() {
    let router = EventRouter::new().on(|_: VerifiedEvent<MappingCompleted>| async {});
    let app = Router::new().route("/hooks/mapping", post(router));
    let request = SignedRequest::new(&completed("evt_x", 1), SECRET)
        .uri("/hooks/mapping")
        .build();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn the_router_s_fallback_takes_the_types_without_a_handler() {
    let router = EventRouter::new()
        .on(|_: VerifiedEvent<MappingCompleted>| async { StatusCode::NO_CONTENT })
        .fallback(|event: VerifiedEvent| async move {
            (StatusCode::ACCEPTED, event.envelope.event_type)
        });
    let app = Router::new()
        .route("/hooks/mapping", post(router))
        .layer(WebhookVerify::new(SECRET));
    let body = r#"{"id":"d","eventId":"evt_f","type":"export.expired","data":{}}"#;
    let request = SignedRequest::from_body(body, SECRET).uri("/hooks/mapping");
    let response = app.clone().oneshot(request.build()).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let text = to_bytes(response.into_body(), 1024).await.unwrap();
    assert_eq!(text, "export.expired");
    let request = SignedRequest::new(&completed("evt_c", 1), SECRET).uri("/hooks/mapping");
    let response = app.oneshot(request.build()).await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

/// A payload type of the user's, for an event type this crate does not know.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExportExpired {
    export_file_id: String,
}

impl mapping_webhooks_tower::EventPayload for ExportExpired {
    const EVENT_TYPE: &'static str = "export.expired";
}

#[tokio::test]
async fn the_router_routes_a_user_s_own_payload_type() {
    let router = EventRouter::new().on(|event: VerifiedEvent<ExportExpired>| async move {
        (StatusCode::ACCEPTED, event.envelope.data.export_file_id)
    });
    let app = Router::new()
        .route("/hooks/mapping", post(router))
        .layer(WebhookVerify::new(SECRET));
    let body =
        r#"{"id":"d","eventId":"evt_e","type":"export.expired","data":{"exportFileId":"ef_9"}}"#;
    let request = SignedRequest::from_body(body, SECRET).uri("/hooks/mapping");
    let response = app.clone().oneshot(request.build()).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(to_bytes(response.into_body(), 1024).await.unwrap(), "ef_9");
    // No handler for mapping.completed here: acknowledged, not refused.
    let request = SignedRequest::new(&completed("evt_n", 1), SECRET).uri("/hooks/mapping");
    let response = app.oneshot(request.build()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
