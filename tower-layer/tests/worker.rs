//! One handler model: the handlers an app runs inline (`VerifiedEvent<T>`, an
//! `EventRouter`) run unchanged in a real inbox worker, on deliveries stored over real
//! HTTP through `WebhookVerify::inbox` in a SQLite file.
#![cfg(all(feature = "inbox-sqlite", feature = "axum"))]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::handler::Handler;
use axum::http::StatusCode;
use mapping_webhooks_inbox::{Inbox, State};
use mapping_webhooks_tower::{
    EventRouter, MappingCompleted, Secret, Signer, VerifiedEvent, WebhookVerify, worker_handler,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &str = "whsec_worker_test_0123456789abcdef";
const JOB: &str = r#"{"mappingJobId":"job_7","status":"COMPLETED","rowCount":42}"#;

/// Job ids and row counts the handler saw, with the tenant and event id it was given.
type Seen = Arc<Mutex<Vec<(String, u64, String)>>>;

/// A SQLite file of its own, removed at the end.
struct TempDb(PathBuf);

impl TempDb {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("tower-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.0.join("inbox.db").display())
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Serves the inbox endpoint on 127.0.0.1:0 and posts each body to it, signed;
/// returns the statuses answered.
async fn store_over_http(inbox: &Inbox, bodies: &[String]) -> Vec<u16> {
    let app = Router::new().route_service(
        "/hooks/mapping",
        WebhookVerify::new(SECRET).inbox(inbox.clone()),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let signer = Signer::new(Secret::new(SECRET).unwrap());
    let mut statuses = Vec::new();
    for body in bodies {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /hooks/mapping HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\
             content-type: application/json\r\ncontent-length: {}\r\nx-webhook-signature: {}\r\n\r\n",
            body.len(),
            signer.sign_now(body.as_bytes())
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        statuses.push(answer[9..12].parse().unwrap());
    }
    server.abort();
    statuses
}

fn body(event_id: &str, event_type: &str, data: &str) -> String {
    format!(
        r#"{{"id":"del_{event_id}","eventId":"{event_id}","type":"{event_type}","data":{data}}}"#
    )
}

/// The three deliveries each test stores: a job, another type, a job whose payload does
/// not match `MappingCompleted`.
fn deliveries() -> Vec<String> {
    vec![
        body("evt_job", "mapping.completed", JOB),
        body("evt_other", "export.expired", "{}"),
        body("evt_bad", "mapping.completed", r#"{"rowCount":"many"}"#),
        // A type no header can carry (a control character, escaped in the JSON).
        body("evt_odd", r"export.\u0001odd", "{}"),
    ]
}

/// Stores the deliveries over HTTP, runs a worker with `handler` once over them, and
/// returns each delivery's state and last error.
async fn run<H, Fut>(name: &str, handler: H) -> Vec<(State, Option<String>)>
where
    H: Fn(mapping_webhooks_inbox::Delivery) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let db = TempDb::new(name);
    let inbox = Inbox::builder().connect(&db.url()).await.unwrap();
    assert_eq!(
        store_over_http(&inbox, &deliveries()).await,
        [202, 202, 202, 202]
    );
    let worker = inbox.worker(handler).max_attempts(1);
    for _ in 0..5 {
        if worker.run_once().await.unwrap() == 0 {
            break;
        }
    }
    let mut states = Vec::new();
    for event_id in ["evt_job", "evt_other", "evt_bad", "evt_odd"] {
        let stored = inbox.find(event_id).await.unwrap().expect("stored");
        states.push((stored.info.state, stored.info.last_error));
    }
    states
}

fn assert_outcomes(states: &[(State, Option<String>)], seen: &Seen) {
    assert_eq!(
        *seen.lock().unwrap(),
        [("job_7".to_owned(), 42, "evt_job".to_owned())],
        "the handler ran once, for the job"
    );
    assert_eq!(
        (states[0].0, states[1].0, states[2].0, states[3].0),
        (State::Done, State::Done, State::Dead, State::Done),
        "{states:?}"
    );
    let error = states[2].1.as_deref().unwrap_or_default();
    assert!(
        error.starts_with(
            "the handler answered 422 Unprocessable Entity: webhook payload does not match"
        ),
        "{error}"
    );
}

fn on_completed(
    seen: Seen,
) -> impl Fn(VerifiedEvent<MappingCompleted>) -> std::future::Ready<StatusCode> + Clone {
    move |event: VerifiedEvent<MappingCompleted>| {
        let job = &event.envelope.data;
        seen.lock().unwrap().push((
            job.mapping_job_id.clone(),
            job.row_count,
            event.verified.event_id.clone(),
        ));
        std::future::ready(StatusCode::NO_CONTENT)
    }
}

#[tokio::test]
async fn a_verified_event_handler_runs_in_the_inbox_worker() {
    let seen = Seen::default();
    let handler = on_completed(Arc::clone(&seen));
    let states = run("handler", worker_handler(handler.with_state(()))).await;
    assert_outcomes(&states, &seen);
}

#[tokio::test]
async fn an_event_router_runs_in_the_inbox_worker() {
    let seen = Seen::default();
    let events = EventRouter::new().on(on_completed(Arc::clone(&seen)));
    let states = run("router", worker_handler(events.with_state(()))).await;
    assert_outcomes(&states, &seen);
}
