//! The inbox endpoint over real HTTP: the layer's own pipeline ending in a sink, so
//! tenants, the refusal format, the tenant-key function and the observer apply there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use mapping_webhooks_tower::{
    Gate, Outcome, ResolveError, Secret, Secrets, Signer, Sink, SinkDelivery, Stored, Tenant,
    TenantFrom, Tenants, WebhookVerify,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ACME: &str = "whsec_inbox_acme_0123456789abcdef";
const GLOBEX: &str = "whsec_inbox_globex_0123456789abcdef";

/// A stored delivery: its tenant, its event id, its body.
type Row = (Option<String>, String, Vec<u8>);

/// A sink keeping what it stored. It fails while `failing`.
#[derive(Clone, Default)]
struct Rows {
    rows: Arc<Mutex<Vec<Row>>>,
    failing: Arc<AtomicBool>,
}

impl Sink for Rows {
    async fn store(
        &self,
        delivery: SinkDelivery<'_>,
    ) -> Result<Stored, Box<dyn std::error::Error + Send + Sync>> {
        if self.failing.load(Ordering::SeqCst) {
            return Err("disk full".into());
        }
        let row = (
            delivery.verified.tenant.clone(),
            delivery.verified.event_id.clone(),
            delivery.body.to_vec(),
        );
        let mut rows = self.rows.lock().unwrap();
        if rows.iter().any(|r| (&r.0, &r.1) == (&row.0, &row.1)) {
            return Ok(Stored::AlreadyStored);
        }
        rows.push(row);
        Ok(Stored::New)
    }
}

fn tenants() -> Tenants {
    Tenants::new(|key: String| async move {
        let secret = match key.as_str() {
            "acme" => ACME,
            "globex" => GLOBEX,
            _ => return Ok::<_, ResolveError>(None),
        };
        Ok(Some(Tenant::new(key, Secrets::new(Secret::new(secret)?))))
    })
}

/// Serves `/hooks/{tenant}` (tenants from the path, JSON refusals) and `/by-header`
/// (the tenant from an `x-tenant` header, through the app's own function), both into
/// `rows`; returns the address and the outcomes the gate's observer saw.
async fn serve(rows: Rows) -> (String, Arc<Mutex<Vec<String>>>) {
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&outcomes);
    let gate = Gate::builder()
        .tenants(tenants(), TenantFrom::PathSegment(1))
        .observer(move |o: Outcome| seen.lock().unwrap().push(o.as_str().to_owned()))
        .build()
        .unwrap();
    let verify = WebhookVerify::from_gate(gate).json_rejections();
    let by_header = WebhookVerify::from_gate(Gate::for_tenants(tenants(), TenantFrom::Host))
        .tenant_key(|parts| Some(parts.headers.get("x-tenant")?.to_str().ok()?.to_owned()));
    let app = Router::new()
        .route_service("/hooks/{tenant}", verify.inbox(rows.clone()))
        .route_service("/by-header", by_header.inbox(rows));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, outcomes)
}

/// One POST; the status, the head (lowercase) and the body of the answer.
async fn post(
    addr: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (
        head[9..12].parse().unwrap(),
        head.to_lowercase(),
        body.to_owned(),
    )
}

fn delivery(event_id: &str, secret: &str) -> (Vec<(&'static str, String)>, String) {
    let body = format!(
        r#"{{"id":"del_1","eventId":"{event_id}","type":"mapping.completed","data":{{}}}}"#
    );
    let signature = Signer::new(Secret::new(secret).unwrap()).sign_now(body.as_bytes());
    (vec![("x-webhook-signature", signature)], body)
}

#[tokio::test]
async fn the_inbox_endpoint_takes_tenants_refusal_formats_and_observers() {
    let rows = Rows::default();
    let (addr, outcomes) = serve(rows.clone()).await;

    // Each tenant's delivery is verified with its own secret and stored with its tenant.
    let (headers, body) = delivery("evt_1", ACME);
    let (status, head, text) = post(&addr, "/hooks/acme", &headers, &body).await;
    assert_eq!(
        (status, text.as_str()),
        (
            202,
            r#"{"status":202,"code":"accepted","reason":"accepted"}"#
        ),
        "{head}"
    );
    let (headers, body) = delivery("evt_1", GLOBEX);
    assert_eq!(post(&addr, "/hooks/globex", &headers, &body).await.0, 202);

    // The same event again: a duplicate, said in a header.
    let (headers, body) = delivery("evt_1", ACME);
    let (status, head, _) = post(&addr, "/hooks/acme", &headers, &body).await;
    assert_eq!(status, 200);
    assert!(head.contains("x-webhook-duplicate: true"), "{head}");

    // Another tenant's secret, an unknown tenant, no signature: refused, as JSON.
    let (headers, body) = delivery("evt_2", GLOBEX);
    let (status, _, text) = post(&addr, "/hooks/acme", &headers, &body).await;
    assert_eq!(status, 401);
    let refusal: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(refusal["code"], "signature_mismatch", "{text}");
    let (headers, body) = delivery("evt_3", ACME);
    let (status, _, text) = post(&addr, "/hooks/initech", &headers, &body).await;
    assert_eq!(
        (status, text.contains(r#""code":"not_found""#)),
        (404, true),
        "{text}"
    );
    let (status, _, text) = post(&addr, "/hooks/acme", &[], &body).await;
    assert_eq!(
        (status, text.contains(r#""code":"missing_header""#)),
        (400, true),
        "{text}"
    );

    // The app's own tenant-key function, and the default plain-text refusals.
    let (mut headers, body) = delivery("evt_4", GLOBEX);
    headers.push(("x-tenant", "globex".to_owned()));
    assert_eq!(post(&addr, "/by-header", &headers, &body).await.0, 202);
    let (headers, body) = delivery("evt_5", GLOBEX);
    let (status, _, text) = post(&addr, "/by-header", &headers, &body).await;
    assert_eq!((status, text.as_str()), (404, "not found"));

    // The sink fails: 503, nothing stored, and the sender's retry is stored.
    rows.failing.store(true, Ordering::SeqCst);
    let (headers, body) = delivery("evt_6", ACME);
    let (status, _, text) = post(&addr, "/hooks/acme", &headers, &body).await;
    assert_eq!(status, 503, "{text}");
    rows.failing.store(false, Ordering::SeqCst);
    assert_eq!(post(&addr, "/hooks/acme", &headers, &body).await.0, 202);

    let stored: Vec<(Option<String>, String)> = rows
        .rows
        .lock()
        .unwrap()
        .iter()
        .map(|(tenant, event, _)| (tenant.clone(), event.clone()))
        .collect();
    let tenant = |t: &str, e: &str| (Some(t.to_owned()), e.to_owned());
    assert_eq!(
        stored,
        [
            tenant("acme", "evt_1"),
            tenant("globex", "evt_1"),
            tenant("globex", "evt_4"),
            tenant("acme", "evt_6"),
        ]
    );
    assert_eq!(
        rows.rows.lock().unwrap()[0].2,
        delivery("evt_1", ACME).1.into_bytes()
    );
    // The observer of the gate behind `/hooks/{tenant}` saw each of its requests once.
    assert_eq!(
        *outcomes.lock().unwrap(),
        [
            "queued",
            "queued",
            "duplicate",
            "refused",
            "refused",
            "refused",
            "store_error",
            "queued"
        ]
    );
}
