//! `VerifiedEvent` and `EventRouter` behind the layer: the statuses and messages of a
//! payload refused, an event type without a handler, and a type routed twice.
#![cfg(feature = "axum")]

use axum::Router;
use axum::body::to_bytes;
use axum::http::StatusCode;
use axum::routing::post;
use mapping_webhooks_tower::testing::SignedRequest;
use mapping_webhooks_tower::{EventRouter, MappingCompleted, VerifiedEvent, WebhookVerify};
use tower::ServiceExt;

const SECRET: &str = "whsec_router_test_0123456789abcdef";

async fn on_completed(event: VerifiedEvent<MappingCompleted>) -> StatusCode {
    assert_eq!(event.envelope.data.mapping_job_id, "job_1");
    StatusCode::NO_CONTENT
}

/// Posts `body` to `app`; the status and the text of the answer.
async fn post_to(app: &Router, body: &str) -> (StatusCode, String) {
    let request = SignedRequest::from_body(body, SECRET).uri("/hooks").build();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let text = to_bytes(response.into_body(), 4096).await.unwrap();
    (status, String::from_utf8(text.to_vec()).unwrap())
}

fn body(event_id: &str, event_type: &str, data: &str) -> String {
    format!(r#"{{"id":"del_1","eventId":"{event_id}","type":"{event_type}","data":{data}}}"#)
}

const JOB: &str = r#"{"mappingJobId":"job_1","status":"COMPLETED","rowCount":3}"#;

#[tokio::test]
async fn a_typed_handler_acknowledges_other_types_and_refuses_a_bad_payload() {
    let app = Router::new()
        .route("/hooks", post(on_completed))
        .layer(WebhookVerify::new(SECRET));
    let (status, _) = post_to(&app, &body("evt_1", "mapping.completed", JOB)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, text) = post_to(&app, &body("evt_2", "export.expired", "{}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        text,
        r#"event type "export.expired" acknowledged without running the handler, which takes only "mapping.completed""#
    );
    let (status, text) = post_to(&app, &body("evt_3", "mapping.completed", "{}")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        text.starts_with("webhook payload does not match the expected type: "),
        "{text}"
    );
}

#[tokio::test]
async fn the_router_acknowledges_a_type_without_a_handler() {
    let app = Router::new()
        .route("/hooks", post(EventRouter::new().on(on_completed)))
        .layer(WebhookVerify::new(SECRET));
    let (status, _) = post_to(&app, &body("evt_1", "mapping.completed", JOB)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, text) = post_to(&app, &body("evt_2", "export.expired", "{}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        text,
        r#"no handler for event type "export.expired"; acknowledged"#
    );
    let (status, _) = post_to(&app, &body("evt_3", "mapping.completed", "[]")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[test]
#[should_panic(expected = r#"EventRouter: event type "mapping.completed" already has a handler"#)]
fn a_type_routed_twice_panics() {
    let _: EventRouter = EventRouter::new().on(on_completed).on(on_completed);
}
