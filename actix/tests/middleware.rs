//! The middleware: one test per outcome, through a real actix-web app
//! (`test::init_service`), using the public API only.

use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, Service, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use actix_web::test::{self, TestRequest};
use actix_web::web::{self, Bytes};
use actix_web::{App, Error, HttpRequest, HttpResponse};
use futures_core::Stream;
use mapping_webhooks::{Begin, Claim};
use mapping_webhooks_actix::{
    DedupStore, Envelope, Gate, GateBuilder, ManualClock, MappingCompleted, MatchedSecret,
    OnStoreError, Reply, ResolveError, Secret, Secrets, Signer, StoreError, Tenant, TenantFrom,
    Tenants, Verified, VerifiedEvent, WebhookVerify,
};
use serde_json::Value;
use tokio::sync::Notify;

const SECRET: &str = "whsec_actix_test_0123456789abcdef";
const OLD_SECRET: &str = "whsec_actix_old_fedcba9876543210";
const NOW: u64 = 1_717_250_400;
const HOOK: &str = "/hooks/mapping";

fn body(event_id: &str) -> String {
    format!(
        r#"{{"id":"del_{event_id}","eventId":"{event_id}","type":"mapping.completed","data":{{"mappingJobId":"job_1","status":"COMPLETED","rowCount":4821}}}}"#
    )
}

fn sign_with(secret: &str, body: &str, timestamp: u64) -> String {
    Signer::new(Secret::new(secret).unwrap()).sign(body.as_bytes(), timestamp)
}

/// A POST of `body`, signed with the test secret at `NOW`.
fn signed(uri: &str, body: &str) -> TestRequest {
    TestRequest::post()
        .uri(uri)
        .insert_header(("x-webhook-signature", sign_with(SECRET, body, NOW)))
        .insert_header((CONTENT_TYPE, "application/json"))
        .set_payload(body.to_owned())
}

/// The gate every test starts from: the test secret, at `NOW`.
fn gate() -> GateBuilder {
    Gate::builder()
        .secret(SECRET)
        .clock(ManualClock::at_secs(NOW))
}

/// The middleware for `gate`.
fn with<D: DedupStore>(gate: GateBuilder<D>) -> WebhookVerify<D> {
    WebhookVerify::from_gate(gate.build().expect("a valid gate"))
}

fn verify() -> WebhookVerify {
    with(gate())
}

/// What the handler was asked to do and how often it ran.
#[derive(Default)]
struct Probe {
    calls: AtomicUsize,
    entered: Notify,
    release: Notify,
}

impl Probe {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// Echoes the body and the verified metadata, or fails as the query string says.
async fn hook(
    req: HttpRequest,
    body: Bytes,
    verified: web::ReqData<Verified>,
    probe: web::Data<Probe>,
) -> Result<HttpResponse, Error> {
    probe.calls.fetch_add(1, Ordering::SeqCst);
    match req.query_string() {
        "then=500" => return Ok(HttpResponse::InternalServerError().finish()),
        "then=404" => return Ok(HttpResponse::NotFound().finish()),
        "then=err" => return Err(actix_web::error::ErrorServiceUnavailable("down")),
        "then=panic" => panic!("the handler panicked on purpose"),
        "then=wait" => {
            probe.entered.notify_one();
            probe.release.notified().await;
        }
        "then=yield" => {
            for _ in 0..10 {
                actix_web::rt::task::yield_now().await;
            }
        }
        _ => {}
    }
    Ok(HttpResponse::Ok()
        .insert_header(("x-event-id", verified.event_id.as_str()))
        .insert_header(("x-event-type", verified.event_type.as_str()))
        .insert_header(("x-delivery-id", verified.delivery_id.as_str()))
        .insert_header(("x-secret", verified.secret.to_string()))
        .body(body))
}

async fn typed(
    event: VerifiedEvent<MappingCompleted>,
    json: web::Json<Envelope<MappingCompleted>>,
) -> HttpResponse {
    assert_eq!(
        event.envelope,
        json.into_inner(),
        "both parse the same bytes"
    );
    HttpResponse::Ok().body(format!(
        "{} {} {}",
        event.verified.event_id, event.envelope.data.mapping_job_id, event.envelope.data.row_count
    ))
}

async fn string(body: String) -> HttpResponse {
    HttpResponse::Ok().body(body)
}

async fn unverified(event: VerifiedEvent) -> HttpResponse {
    HttpResponse::Ok().body(event.envelope.event_id)
}

/// The app every test uses: the middleware on the webhook routes only.
async fn build_app<D, R>(
    verify: WebhookVerify<D, R>,
) -> (
    Rc<
        impl Service<actix_http::Request, Response = ServiceResponse<impl MessageBody>, Error = Error>,
    >,
    web::Data<Probe>,
)
where
    D: DedupStore,
    R: Fn(&Reply) -> HttpResponse + 'static,
{
    let probe = web::Data::new(Probe::default());
    let app = App::new()
        .app_data(probe.clone())
        .service(
            web::resource(HOOK)
                .wrap(verify.clone())
                .route(web::post().to(hook)),
        )
        .service(
            web::resource("/hooks/typed")
                .wrap(verify.clone())
                .route(web::post().to(typed)),
        )
        .service(
            web::resource("/hooks/string")
                .wrap(verify)
                .route(web::post().to(string)),
        )
        .service(web::resource("/unwrapped").route(web::post().to(unverified)));
    (Rc::new(test::init_service(app).await), probe)
}

/// A header's value as text.
fn header(
    headers: &actix_web::http::header::HeaderMap,
    name: impl actix_web::http::header::AsHeaderName,
) -> &str {
    headers.get(name).expect("header present").to_str().unwrap()
}

async fn send<S, B>(app: &S, req: TestRequest) -> (StatusCode, String)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    call_streamed(app, req.to_request()).await
}

#[actix_web::test]
async fn a_valid_request_runs_the_handler_once_with_the_original_bytes() {
    let (app, probe) = build_app(verify()).await;
    let body = body("evt_valid");
    let response = test::call_service(&*app, signed(HOOK, &body).to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(header(&headers, "x-event-id"), "evt_valid");
    assert_eq!(header(&headers, "x-event-type"), "mapping.completed");
    assert_eq!(header(&headers, "x-delivery-id"), "del_evt_valid");
    assert_eq!(header(&headers, "x-secret"), "current");
    assert_eq!(test::read_body(response).await, body.as_bytes());
    assert_eq!(probe.calls(), 1);
}

#[actix_web::test]
async fn string_and_json_extractors_see_the_verified_bytes() {
    let (app, _) = build_app(verify()).await;
    let body = body("evt_string");
    assert_eq!(
        send(&*app, signed("/hooks/string", &body)).await,
        (StatusCode::OK, body)
    );
    let body = self::body("evt_typed");
    assert_eq!(
        send(&*app, signed("/hooks/typed", &body)).await,
        (StatusCode::OK, "evt_typed job_1 4821".to_owned())
    );
}

#[actix_web::test]
async fn a_duplicate_is_acknowledged_without_running_the_handler() {
    let (app, probe) = build_app(verify()).await;
    let body = body("evt_dup");
    assert_eq!(send(&*app, signed(HOOK, &body)).await.0, StatusCode::OK);
    let (status, reason) = send(&*app, signed(HOOK, &body)).await;
    assert_eq!(
        (status, reason.as_str()),
        (StatusCode::OK, "event already received")
    );
    assert_eq!(probe.calls(), 1);
}

#[actix_web::test]
async fn bad_requests_are_refused_before_the_handler() {
    let (app, probe) = build_app(verify()).await;
    let body = body("evt_bad");
    let tampered = body.replace("4821", "4822");
    let header = |value: String| signed(HOOK, &body).insert_header(("x-webhook-signature", value));
    let cases = [
        (
            "missing header",
            TestRequest::post().uri(HOOK).set_payload(body.clone()),
            400,
            "missing X-Webhook-Signature header",
        ),
        (
            "repeated header",
            signed(HOOK, &body)
                .append_header(("x-webhook-signature", sign_with(SECRET, &body, NOW))),
            400,
            "more than one X-Webhook-Signature header",
        ),
        ("malformed header", header("v1=abc".into()), 400, ""),
        (
            "wrong secret",
            header(sign_with("whsec_someone_else_entirely", &body, NOW)),
            401,
            "signature does not match",
        ),
        (
            "tampered body",
            signed(HOOK, &body).set_payload(tampered),
            401,
            "signature does not match",
        ),
        (
            "stale",
            header(sign_with(SECRET, &body, NOW - 301)),
            401,
            "signature timestamp is too old",
        ),
        (
            "future",
            header(sign_with(SECRET, &body, NOW + 301)),
            401,
            "signature timestamp is in the future",
        ),
        (
            "not an envelope",
            signed(HOOK, r#"{"hello":"world"}"#),
            400,
            "body is not a webhook envelope with a string eventId",
        ),
    ];
    for (name, request, status, reason) in cases {
        let (got, text) = send(&*app, request).await;
        assert_eq!(got.as_u16(), status, "{name}: {text}");
        assert!(text.contains(reason), "{name}: {text}");
        assert!(!text.is_empty(), "{name}: a refusal carries a reason");
    }
    assert_eq!(probe.calls(), 0);
    // None of those touched the event: the genuine request is still processed.
    assert_eq!(send(&*app, signed(HOOK, &body)).await.0, StatusCode::OK);
}

#[actix_web::test]
async fn the_tolerance_is_inclusive_on_both_sides() {
    let (app, probe) = build_app(with(gate().tolerance(Duration::from_secs(60)))).await;
    for (offset, status) in [(-60, 200), (60, 200), (-61, 401), (61, 401)] {
        let body = body(&format!("evt_edge_{offset}"));
        let ts = NOW.checked_add_signed(offset).unwrap();
        let req = signed(HOOK, &body)
            .insert_header(("x-webhook-signature", sign_with(SECRET, &body, ts)));
        assert_eq!(send(&*app, req).await.0.as_u16(), status, "offset {offset}");
    }
    assert_eq!(probe.calls(), 2);
}

#[actix_web::test]
async fn the_previous_secret_is_accepted_during_a_rotation() {
    let (app, _) = build_app(with(gate().previous_secret(OLD_SECRET))).await;
    let body = body("evt_rotated");
    let req = signed(HOOK, &body)
        .insert_header(("x-webhook-signature", sign_with(OLD_SECRET, &body, NOW)));
    let response = test::call_service(&*app, req.to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(response.headers(), "x-secret"),
        MatchedSecret::Previous(0).to_string()
    );
}

/// A payload stream: the given chunks, then the end or, with `stall`, nothing ever.
struct Chunks {
    chunks: VecDeque<Result<Bytes, PayloadError>>,
    stall: bool,
    pulled: Rc<AtomicUsize>,
}

impl Stream for Chunks {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.chunks.pop_front() {
            Some(chunk) => {
                self.pulled.fetch_add(1, Ordering::SeqCst);
                Poll::Ready(Some(chunk))
            }
            // A stalled client: never woken, as no byte will ever come.
            None if self.stall => Poll::Pending,
            None => Poll::Ready(None),
        }
    }
}

/// `req` with its payload replaced by a stream of `chunks`.
fn streamed(req: TestRequest, chunks: Chunks) -> actix_http::Request {
    let payload = Payload::from(Box::pin(chunks) as actix_http::BoxedPayloadStream);
    req.to_request().replace_payload(payload).0
}

async fn call_streamed<S, B>(app: &S, req: actix_http::Request) -> (StatusCode, String)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    // An `Err` is what the server turns into a response; do the same here.
    let (status, body) = match test::try_call_service(app, req).await {
        Ok(response) => (response.status(), test::read_body(response).await),
        Err(error) => {
            let response = error.error_response();
            let status = response.status();
            (
                status,
                response.into_body().try_into_bytes().unwrap_or_default(),
            )
        }
    };
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[actix_web::test]
async fn a_declared_length_over_the_limit_is_refused_before_reading() {
    let (app, probe) = build_app(with(gate().body_limit(1000))).await;
    let pulled = Rc::new(AtomicUsize::new(0));
    // The body never arrives: reading it would stall, so a 413 proves nothing was read.
    let chunks = Chunks {
        chunks: VecDeque::new(),
        stall: true,
        pulled: pulled.clone(),
    };
    let req = signed(HOOK, "").insert_header((CONTENT_LENGTH, 1001));
    let (status, reason) = call_streamed(&*app, streamed(req, chunks)).await;
    assert_eq!(
        (status, reason.as_str()),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "body is larger than the limit"
        )
    );
    assert_eq!(pulled.load(Ordering::SeqCst), 0);
    assert_eq!(probe.calls(), 0);
}

#[actix_web::test]
async fn a_bad_signature_header_is_refused_before_reading() {
    let (app, probe) = build_app(verify()).await;
    let valid = sign_with(SECRET, "{}", NOW);
    let stale = sign_with(SECRET, "{}", NOW - 3600);
    let cases: [(&[&str], StatusCode); 4] = [
        (&[], StatusCode::BAD_REQUEST),
        (&["t=soon"], StatusCode::BAD_REQUEST),
        (&[&valid, &valid], StatusCode::BAD_REQUEST),
        (&[&stale], StatusCode::UNAUTHORIZED),
    ];
    for (headers, expected) in cases {
        let pulled = Rc::new(AtomicUsize::new(0));
        // A body that would arrive and then stall: a refusal proves it was not waited for.
        let chunks = Chunks {
            chunks: [Ok(Bytes::from_static(b"{\"id\":"))].into(),
            stall: true,
            pulled: pulled.clone(),
        };
        let mut req = TestRequest::post()
            .uri(HOOK)
            .insert_header((CONTENT_LENGTH, 1000));
        for value in headers {
            req = req.append_header(("x-webhook-signature", *value));
        }
        let (status, _) = call_streamed(&*app, streamed(req, chunks)).await;
        assert_eq!(status, expected, "{headers:?}");
        assert_eq!(pulled.load(Ordering::SeqCst), 0, "{headers:?}: body read");
    }
    assert_eq!(probe.calls(), 0);
}

#[actix_web::test]
async fn a_streamed_body_over_the_limit_is_refused_without_buffering_the_rest() {
    let (app, probe) = build_app(with(gate().body_limit(1000))).await;
    let pulled = Rc::new(AtomicUsize::new(0));
    let chunks = Chunks {
        chunks: (0..100).map(|_| Ok(Bytes::from(vec![b' '; 300]))).collect(),
        stall: false,
        pulled: pulled.clone(),
    };
    let (status, _) = call_streamed(&*app, streamed(signed(HOOK, ""), chunks)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        pulled.load(Ordering::SeqCst),
        4,
        "stopped at the chunk that crossed 1000 bytes"
    );
    assert_eq!(probe.calls(), 0);

    // Exactly at the limit, in several chunks, is accepted.
    let body = body("evt_chunked");
    let padded = format!("{body:<1000}");
    let chunks = Chunks {
        chunks: padded
            .as_bytes()
            .chunks(300)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect(),
        stall: false,
        pulled,
    };
    let (status, echoed) = call_streamed(&*app, streamed(signed(HOOK, &padded), chunks)).await;
    assert_eq!((status, echoed), (StatusCode::OK, padded));
}

#[actix_web::test]
async fn a_body_not_received_in_time_is_408() {
    let (app, probe) = build_app(with(gate().read_timeout(Duration::from_millis(50)))).await;
    let chunks = Chunks {
        chunks: [Ok(Bytes::from_static(b"{\"id\":"))].into(),
        stall: true,
        pulled: Rc::default(),
    };
    let (status, reason) = call_streamed(&*app, streamed(signed(HOOK, ""), chunks)).await;
    assert_eq!(
        (status, reason.as_str()),
        (StatusCode::REQUEST_TIMEOUT, "body was not received in time")
    );
    assert_eq!(probe.calls(), 0);
}

#[actix_web::test]
async fn a_broken_body_is_400() {
    let (app, _) = build_app(verify()).await;
    let chunks = Chunks {
        chunks: [
            Ok(Bytes::from_static(b"{")),
            Err(PayloadError::Incomplete(None)),
        ]
        .into(),
        stall: false,
        pulled: Rc::default(),
    };
    let (status, reason) = call_streamed(&*app, streamed(signed(HOOK, ""), chunks)).await;
    assert_eq!(
        (status, reason.as_str()),
        (StatusCode::BAD_REQUEST, "body could not be read")
    );
}

#[actix_web::test]
async fn a_failed_handler_leaves_the_event_retryable() {
    for failure in ["then=500", "then=404", "then=err", "then=panic"] {
        let (app, probe) = build_app(verify()).await;
        let body = body("evt_fail");
        let (status, _) = send(&*app, signed(&format!("{HOOK}?{failure}"), &body)).await;
        assert!(
            status.is_client_error() || status.is_server_error(),
            "{failure}: {status}"
        );
        // The sender's retry is processed, and then remembered.
        assert_eq!(
            send(&*app, signed(HOOK, &body)).await.0,
            StatusCode::OK,
            "{failure}"
        );
        assert_eq!(probe.calls(), 2, "{failure}");
        assert_eq!(
            send(&*app, signed(HOOK, &body)).await.0,
            StatusCode::OK,
            "{failure}"
        );
        assert_eq!(probe.calls(), 2, "{failure}");
    }
}

#[actix_web::test]
async fn a_panicking_handler_is_answered_500() {
    let (app, _) = build_app(verify()).await;
    let (status, _) = send(
        &*app,
        signed(&format!("{HOOK}?then=panic"), &body("evt_panic")),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[actix_web::test]
async fn an_inner_service_error_leaves_the_event_retryable() {
    // A middleware between WebhookVerify and the handler that fails with an `Err`.
    let probe = web::Data::new(Probe::default());
    let app =
        test::init_service(
            App::new().app_data(probe.clone()).service(
                web::resource(HOOK)
                    .wrap(actix_web::middleware::from_fn(
                        |req: actix_web::dev::ServiceRequest,
                         next: actix_web::middleware::Next<_>| async move {
                            if req.query_string() == "fail" {
                                return Err(actix_web::error::ErrorBadGateway("upstream down"));
                            }
                            next.call(req).await
                        },
                    ))
                    .wrap(verify())
                    .route(web::post().to(hook)),
            ),
        )
        .await;
    let body = body("evt_inner_err");
    let error = test::try_call_service(&app, signed(&format!("{HOOK}?fail"), &body).to_request())
        .await
        .expect_err("the inner error is passed on");
    assert_eq!(
        error.as_response_error().status_code(),
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(send(&app, signed(HOOK, &body)).await.0, StatusCode::OK);
    assert_eq!(probe.calls(), 1);
}

#[actix_web::test]
async fn a_copy_arriving_while_the_first_runs_gets_409_with_retry_after() {
    let (app, probe) = build_app(verify()).await;
    let body = body("evt_inflight");
    let first = {
        let (app, req) = (app.clone(), signed(&format!("{HOOK}?then=wait"), &body));
        actix_web::rt::spawn(async move { send(&*app, req).await.0 })
    };
    probe.entered.notified().await;
    let response = test::call_service(&*app, signed(HOOK, &body).to_request()).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(header(response.headers(), RETRY_AFTER), "60");
    probe.release.notify_one();
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    assert_eq!(send(&*app, signed(HOOK, &body)).await.0, StatusCode::OK);
    assert_eq!(probe.calls(), 1);
}

#[actix_web::test]
async fn concurrent_copies_run_the_handler_once() {
    let (app, probe) = build_app(verify()).await;
    let body = body("evt_concurrent");
    let copies: Vec<_> = (0..32)
        .map(|_| {
            let (app, req) = (app.clone(), signed(&format!("{HOOK}?then=yield"), &body));
            actix_web::rt::spawn(async move { send(&*app, req).await.0 })
        })
        .collect();
    for copy in copies {
        let status = copy.await.unwrap();
        assert!(matches!(status.as_u16(), 200 | 409), "{status}");
    }
    assert_eq!(probe.calls(), 1);
}

#[actix_web::test]
async fn a_dropped_request_leaves_the_event_retryable() {
    let (app, probe) = build_app(verify()).await;
    let body = body("evt_dropped");
    let first = {
        let (app, req) = (app.clone(), signed(&format!("{HOOK}?then=wait"), &body));
        actix_web::rt::spawn(async move { send(&*app, req).await.0 })
    };
    probe.entered.notified().await;
    first.abort(); // the client went away: actix drops the request's future
    assert!(first.await.unwrap_err().is_cancelled());
    // Bounded polling: a store may free the claim asynchronously.
    let mut status = StatusCode::CONFLICT;
    for _ in 0..100 {
        status = send(&*app, signed(HOOK, &body)).await.0;
        if status != StatusCode::CONFLICT {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, StatusCode::OK);
    assert_eq!(probe.calls(), 2);
}

/// A store that is down, counting the calls it got.
struct Counter(std::sync::Arc<AtomicUsize>);

impl DedupStore for Counter {
    async fn begin(&self, _: &str) -> Result<Begin, StoreError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::backend("store is down"))
    }
    async fn complete(&self, _: &str, _: Claim) -> Result<(), StoreError> {
        Err(StoreError::backend("store is down"))
    }
    async fn abandon(&self, _: &str, _: Claim) -> Result<(), StoreError> {
        Err(StoreError::backend("store is down"))
    }
}

#[actix_web::test]
async fn a_store_error_is_503_by_default_and_forged_requests_never_reach_the_store() {
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let (app, probe) = build_app(with(gate().dedup(Counter(calls.clone())))).await;
    let body = body("evt_store");
    let forged = signed(HOOK, &body).insert_header((
        "x-webhook-signature",
        sign_with("whsec_forger_forger", &body, NOW),
    ));
    assert_eq!(send(&*app, forged).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let (status, reason) = send(&*app, signed(HOOK, &body)).await;
    assert_eq!(
        (status, reason.as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "deduplication store unavailable; retry later"
        )
    );
    assert_eq!((calls.load(Ordering::SeqCst), probe.calls()), (1, 0));
}

#[actix_web::test]
async fn a_store_error_can_pass_through() {
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let verify = with(
        gate()
            .dedup(Counter(calls))
            .on_store_error(OnStoreError::PassThrough),
    );
    let (app, probe) = build_app(verify).await;
    assert_eq!(
        send(&*app, signed(HOOK, &body("evt_pass"))).await.0,
        StatusCode::OK
    );
    assert_eq!(probe.calls(), 1);
}

#[actix_web::test]
async fn without_dedup_every_copy_runs() {
    let (app, probe) = build_app(with(gate().without_dedup())).await;
    let body = body("evt_nodedup");
    for _ in 0..3 {
        assert_eq!(send(&*app, signed(HOOK, &body)).await.0, StatusCode::OK);
    }
    assert_eq!(probe.calls(), 3);
}

#[actix_web::test]
async fn rejections_can_be_json_or_custom() {
    let (app, _) = build_app(verify().json_rejections()).await;
    let response = test::call_service(&*app, TestRequest::post().uri(HOOK).to_request()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(response.headers(), CONTENT_TYPE), "application/json");
    let json: Value = serde_json::from_slice(&test::read_body(response).await).unwrap();
    assert_eq!(json["code"], "missing_header");

    let custom = verify().on_reject(|reply: &Reply| {
        HttpResponse::build(StatusCode::from_u16(reply.status()).unwrap())
            .body(format!("nope: {}", reply.code()))
    });
    let (app, _) = build_app(custom).await;
    let req = TestRequest::post().uri(HOOK).set_payload("{}");
    assert_eq!(
        send(&*app, req).await,
        (StatusCode::BAD_REQUEST, "nope: missing_header".to_owned())
    );
}

#[actix_web::test]
async fn the_extractor_refuses_a_payload_of_the_wrong_type_with_422() {
    let (app, _) = build_app(verify()).await;
    let body = r#"{"id":"del_1","eventId":"evt_shape","type":"mapping.completed","data":{"rowCount":"many"}}"#;
    let (status, reason) = send(&*app, signed("/hooks/typed", body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reason.contains("does not match the expected type"),
        "{reason}"
    );
    // The event stays retryable: the fix is deployed, the retry succeeds.
    let (app, _) = self::build_app(verify()).await;
    assert_eq!(send(&*app, signed(HOOK, body)).await.0, StatusCode::OK);
}

#[actix_web::test]
async fn the_extractor_refuses_a_route_without_the_middleware_with_500() {
    let (app, _) = build_app(verify()).await;
    let (status, reason) = send(&*app, signed("/unwrapped", &body("evt_unwrapped"))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reason.contains("WebhookVerify"), "{reason}");
}

#[test]
#[should_panic(expected = "the webhook signing secret is empty")]
fn an_empty_secret_panics_at_construction() {
    let _ = WebhookVerify::new("  ");
}

#[test]
fn an_empty_secret_is_reported_by_the_gate_builder() {
    // Was `WebhookVerify::try_new`: the fallible form is the gate's builder.
    assert_eq!(
        mapping_webhooks_actix::Gate::builder()
            .secret("")
            .build()
            .map(WebhookVerify::from_gate)
            .unwrap_err(),
        mapping_webhooks_actix::ConfigError::EmptySecret
    );
}

#[test]
fn a_zero_body_limit_is_refused_at_construction() {
    // Was a panic of `WebhookVerify::body_limit(0)`; the gate's builder now says it.
    let error = gate().body_limit(0).build().unwrap_err();
    assert!(
        error
            .to_string()
            .contains("the body limit must be at least one byte"),
        "{error}"
    );
}

#[test]
fn debug_never_shows_the_secret() {
    let shown = format!(
        "{:?}",
        with(gate().previous_secret(OLD_SECRET)).on_reject(mapping_webhooks_actix::reject::json)
    );
    assert!(!shown.contains("0123456789abcdef"), "{shown}");
    assert!(!shown.contains("fedcba9876543210"), "{shown}");
    assert!(shown.contains("<fn>"), "{shown}");
}

#[test]
fn the_middleware_can_be_built_once_and_sent_to_every_worker() {
    fn send_and_clone<T: Send + Clone>(_: &T) {}
    send_and_clone(&verify());
}

#[actix_web::test]
async fn a_scope_of_webhook_routes_can_be_wrapped_at_once() {
    let probe = web::Data::new(Probe::default());
    let app = test::init_service(
        App::new().app_data(probe.clone()).service(
            web::scope("/hooks")
                .wrap(verify())
                .route("/mapping", web::post().to(hook))
                .route("/string", web::post().to(string)),
        ),
    )
    .await;
    let body = body("evt_scope");
    let (status, echoed) = send(&app, signed(HOOK, &body)).await;
    assert_eq!((status, echoed), (StatusCode::OK, body.clone()));
    let other = self::body("evt_scope_2");
    assert_eq!(
        send(&app, signed("/hooks/string", &other)).await,
        (StatusCode::OK, other)
    );
    let unsigned = TestRequest::post().uri(HOOK).set_payload(body);
    assert_eq!(send(&app, unsigned).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(probe.calls(), 1);
}

#[actix_web::test]
async fn the_app_s_tenant_key_function_takes_the_route_s_parameter() {
    let tenants = Tenants::new(|key: String| async move {
        let secrets = Secrets::new(Secret::new(SECRET).unwrap());
        Ok::<_, ResolveError>((key == "acme").then(|| Tenant::new("acme", secrets)))
    });
    // The tenant is a path parameter, not the default path segment.
    let gate = gate().tenants(tenants, TenantFrom::PathSegment(0));
    let verify = with(gate).tenant_key(|req| req.match_info().get("tenant").map(str::to_owned));
    let app =
        test::init_service(
            App::new().service(web::resource("/t/{tenant}/hook").wrap(verify).route(
                web::post().to(|verified: web::ReqData<Verified>| async move {
                    HttpResponse::Ok().body(verified.tenant.clone().unwrap_or_default())
                }),
            )),
        )
        .await;
    let body = body("evt_tenant");
    assert_eq!(
        send(&app, signed("/t/acme/hook", &body)).await,
        (StatusCode::OK, "acme".to_owned())
    );
    assert_eq!(
        send(&app, signed("/t/initech/hook", &body)).await.0,
        StatusCode::NOT_FOUND
    );
}

use mapping_webhooks_test_spans::{SpanFields, current_span};

#[actix_web::test]
async fn the_handler_runs_inside_the_delivery_span() {
    let spans = SpanFields::default();
    let app = test::init_service(App::new().service(web::resource(HOOK).wrap(verify()).route(
        web::post().to(|| async {
            tracing::info!("the handler logs");
            HttpResponse::Ok().body(current_span().unwrap_or("none"))
        }),
    )))
    .await;
    // Registers the callsites before the subscriber (see `install`).
    let warm_up = signed(HOOK, &body("evt_span_warm_up")).to_request();
    assert_eq!(
        test::call_service(&app, warm_up).await.status(),
        StatusCode::OK
    );
    let _guard = spans.install();
    let response = test::call_service(&app, signed(HOOK, &body("evt_span")).to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = test::read_body(response).await;
    assert_eq!(text, "webhook", "the handler ran outside the delivery span");
    let fields = spans.fields();
    for field in [
        "event_id=evt_span",
        "delivery_id=del_evt_span",
        "event_type=mapping.completed",
        "outcome=processed",
        "reason=2xx",
    ] {
        assert!(fields.iter().any(|f| f == field), "{field} in {fields:?}");
    }
}
