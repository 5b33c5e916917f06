//! `WebhookVerify::inbox`: the middleware's pipeline ending in a durable sink, served
//! over real HTTP on 127.0.0.1, with a sink that stores each delivery as a file (a real
//! directory, made to fail by removing it).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer};
use mapping_webhooks_actix::{
    Gate, Outcome, ResolveError, Secret, Secrets, SignedDelivery, Sink, SinkDelivery, Stored,
    Tenant, TenantFrom, Tenants, WebhookVerify,
};

const ACME: &str = "whsec_acme_inbox_0123456789abcdef";
const GLOBEX: &str = "whsec_globex_inbox_fedcba98765432";

/// Stores each delivery as a file named after its tenant and event, once.
struct FileSink(PathBuf);

impl Sink for FileSink {
    async fn store(
        &self,
        delivery: SinkDelivery<'_>,
    ) -> Result<Stored, Box<dyn std::error::Error + Send + Sync>> {
        let tenant = delivery.verified.tenant.as_deref().unwrap_or("none");
        let name = format!("{tenant}.{}", delivery.verified.event_id);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.0.join(name));
        match file {
            Ok(mut file) => {
                file.write_all(delivery.body)?;
                file.sync_all()?;
                Ok(Stored::New)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Stored::AlreadyStored),
            Err(e) => Err(e.into()),
        }
    }
}

/// Two tenants, `acme` and `globex`, each with its own secret.
fn tenants() -> Tenants {
    Tenants::new(|key: String| async move {
        let secret = match key.as_str() {
            "acme" => ACME,
            "globex" => GLOBEX,
            _ => return Ok::<_, ResolveError>(None),
        };
        let secrets = Secrets::new(Secret::new(secret).unwrap());
        Ok(Some(Tenant::new(key, secrets)))
    })
}

/// Serves `verify`'s inbox endpoints on 127.0.0.1 (one worker, its own thread).
fn serve(verify: WebhookVerify, dir: &Path) -> (u16, ServerHandle) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = dir.to_owned();
    let (handle_tx, handle_rx) = mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                App::new()
                    .service(
                        verify
                            .clone()
                            .inbox("/hooks/mapping/{tenant}", FileSink(dir.clone())),
                    )
                    // The app's own tenant-key function works here too.
                    .service(
                        verify
                            .clone()
                            .tenant_key(|req| req.match_info().get("who").map(str::to_owned))
                            .inbox("/by/{who}/hook", FileSink(dir.clone())),
                    )
            })
            .workers(1)
            .listen(listener)
            .unwrap()
            .run();
            handle_tx.send(server.handle()).unwrap();
            server.await
        })
    });
    let handle = handle_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    (port, handle)
}

/// An HTTP/1.1 POST of `delivery` over a real socket: the status, the head (lowercase)
/// and the body of the answer.
fn post(port: u16, path: &str, delivery: &SignedDelivery) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = delivery.body();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in delivery.headers() {
        request += &format!("{name}: {value}\r\n");
    }
    request += "\r\n";
    request += body;
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn delivery(event_id: &str, secret: &str) -> SignedDelivery {
    let body = format!(
        r#"{{"id":"del_{event_id}","eventId":"{event_id}","type":"mapping.completed","data":{{"mappingJobId":"job_1","status":"COMPLETED","rowCount":7}}}}"#
    );
    SignedDelivery::from_body(body, secret)
}

/// A fresh directory for one test's files.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("actix-inbox-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stop(handle: ServerHandle) {
    actix_web::rt::System::new().block_on(handle.stop(false));
}

#[test]
fn tenants_json_refusals_and_observers_work_on_the_inbox_endpoint() {
    let dir = temp_dir("tenants");
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&outcomes);
    let gate = Gate::builder()
        .tenants(tenants(), TenantFrom::PathSegment(2))
        .observer(move |outcome: Outcome| seen.lock().unwrap().push(format!("{outcome:?}")))
        .build()
        .unwrap();
    let (port, handle) = serve(WebhookVerify::from_gate(gate).json_rejections(), &dir);

    // Each tenant's delivery, signed with its own secret, is stored under its tenant.
    let acme = delivery("evt_1", ACME);
    let (status, head, body) = post(port, "/hooks/mapping/acme", &acme);
    assert_eq!(
        (status, body.as_str()),
        (
            202,
            r#"{"status":202,"code":"accepted","reason":"accepted"}"#
        )
    );
    assert!(head.contains("content-type: application/json"), "{head}");
    let stored = std::fs::read_to_string(dir.join("acme.evt_1")).unwrap();
    assert_eq!(stored, acme.body());
    let globex = delivery("evt_1", GLOBEX);
    assert_eq!(post(port, "/hooks/mapping/globex", &globex).0, 202);
    assert!(dir.join("globex.evt_1").exists());

    // The same event again: a duplicate, said in the header.
    let (status, head, _) = post(port, "/hooks/mapping/acme", &acme);
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("x-webhook-duplicate: true"), "{head}");

    // Another tenant's secret on acme's URL, an unknown tenant: refused, in JSON.
    let (status, _, body) = post(port, "/hooks/mapping/acme", &delivery("evt_2", GLOBEX));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains(r#""code":"signature_mismatch""#), "{body}");
    let (status, _, body) = post(port, "/hooks/mapping/initech", &delivery("evt_3", ACME));
    assert_eq!(status, 404, "{body}");
    assert!(body.starts_with(r#"{"status":404,"#), "{body}");

    // The app's own tenant-key function.
    let (status, _, body) = post(port, "/by/globex/hook", &delivery("evt_4", GLOBEX));
    assert_eq!(status, 202, "{body}");
    assert!(dir.join("globex.evt_4").exists());

    stop(handle);
    let files = std::fs::read_dir(&dir).unwrap().count();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(files, 3, "stored: acme.evt_1, globex.evt_1, globex.evt_4");
    let outcomes = outcomes.lock().unwrap().clone();
    let queued = outcomes.iter().filter(|o| o.starts_with("Queued")).count();
    assert_eq!((outcomes.len(), queued), (6, 3), "{outcomes:?}");
}

#[test]
fn a_sink_that_fails_is_503_and_the_retry_is_stored() {
    let dir = temp_dir("failing");
    let gate = Gate::builder()
        .tenants(tenants(), TenantFrom::PathSegment(2))
        .build()
        .unwrap();
    let (port, handle) = serve(WebhookVerify::from_gate(gate), &dir);
    let acme = delivery("evt_down", ACME);

    // The sink's directory is gone: the store fails, the sender is told to retry.
    std::fs::remove_dir_all(&dir).unwrap();
    let (status, head, body) = post(port, "/hooks/mapping/acme", &acme);
    assert_eq!(
        (status, body.as_str()),
        (503, "inbox database unavailable; retry later"),
        "{head}"
    );
    // It is back: the retry is stored (the failed attempt did not keep the event).
    std::fs::create_dir_all(&dir).unwrap();
    let (status, _, body) = post(port, "/hooks/mapping/acme", &acme);
    assert_eq!((status, body.as_str()), (202, "accepted"));
    let stored = std::fs::read_to_string(dir.join("acme.evt_down")).unwrap();
    stop(handle);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(stored, acme.body());
}
