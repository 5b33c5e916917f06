//! The inbox endpoint: verify and store each delivery in an
//! [`Inbox`](mapping_webhooks_inbox::Inbox), answering once it is committed.

use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, Resource, web};
use mapping_webhooks::{DUPLICATE_HEADER, VerifyError};
use mapping_webhooks_inbox::{Acceptance, Inbox};

use crate::middleware::{SIGNATURE, content_length, read_body, unsigned_headers};

/// A resource at `path` whose `POST` stores every verified delivery in `inbox` and
/// answers at once; a [`Worker`](mapping_webhooks_inbox::Worker) processes it
/// afterwards.
///
/// ```no_run
/// use actix_web::{App, HttpServer};
/// use mapping_webhooks_actix::inbox_resource;
/// use mapping_webhooks_inbox::{Delivery, Inbox};
///
/// # #[actix_web::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let inbox = Inbox::builder(std::env::var("MAPPING_WEBHOOK_SECRET")?)?
///     .connect("sqlite://webhooks.db")
///     .await?;
/// let worker = inbox.worker(|delivery: Delivery| async move {
///     println!("{}", delivery.envelope.event_id);
///     Ok::<(), std::io::Error>(())
/// });
/// actix_web::rt::spawn(worker.run());
/// HttpServer::new(move || App::new().service(inbox_resource("/hooks/mapping", inbox.clone())))
///     .bind("127.0.0.1:3000")?
///     .run()
///     .await?;
/// # Ok(()) }
/// ```
///
/// It reads the body within the inbox's [limit](Inbox::body_limit) (413 before reading
/// a larger `Content-Length`, or as soon as a streamed body passes it) and
/// [read timeout](Inbox::read_timeout) (408), then answers what [`Inbox::accept`]
/// decided: 202 once stored, 200 for a duplicate, 4xx for a refusal, 503 when the
/// database fails; a short plain-text reason in each case. For your own routing, call
/// [`inbox_accept`] from a handler.
pub fn inbox_resource(path: &str, inbox: Inbox) -> Resource {
    web::resource(path).route(
        web::post().to(move |req: HttpRequest, payload: web::Payload| {
            let inbox = inbox.clone();
            async move { inbox_accept(&inbox, &req, payload).await }
        }),
    )
}

/// Reads the body within the limits, stores the delivery and answers; the body of
/// [`inbox_resource`]'s handler.
pub async fn inbox_accept(inbox: &Inbox, req: &HttpRequest, payload: web::Payload) -> HttpResponse {
    let acceptance = accept(inbox, req, payload).await;
    let mut response = HttpResponse::build(
        StatusCode::from_u16(acceptance.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    );
    if acceptance.is_duplicate() {
        response.insert_header((DUPLICATE_HEADER, "true"));
    }
    response
        .content_type(ContentType::plaintext())
        .body(acceptance.reason())
}

async fn accept(inbox: &Inbox, req: &HttpRequest, payload: web::Payload) -> Acceptance {
    let headers = req.headers();
    let unsigned = unsigned_headers(headers);
    let declared = content_length(headers);
    let signatures = || headers.get_all(SIGNATURE).map(|value| value.as_bytes());
    // The head first: a refused one is answered without reading the body.
    let head = match inbox.check_head(signatures(), declared, unsigned) {
        Ok(head) => head,
        Err(refused) => return refused,
    };
    let mut payload = payload.into_inner();
    let read = actix_web::rt::time::timeout(
        inbox.read_timeout(),
        read_body(&mut payload, inbox.body_limit(), declared),
    )
    .await;
    let body = match read {
        Ok(Ok(body)) => body,
        Ok(Err(error)) => return inbox.refuse(error, unsigned),
        Err(_elapsed) => {
            return inbox.refuse(VerifyError::BodyRead { timed_out: true }, unsigned);
        }
    };
    // A head that passed has exactly one signature header.
    let header = signatures().next().unwrap_or_default();
    inbox.accept_checked(head, header, unsigned, &body).await
}
