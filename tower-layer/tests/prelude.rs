//! An app names everything from this crate alone (the core's prelude, re-exported whole):
//! here, a dedup store of its own, which needs `Begin` and `Claim`, served over real HTTP.
#![cfg(feature = "axum")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::{Router, http::StatusCode, routing::post};
use mapping_webhooks_tower::testing::SignedRequest;
use mapping_webhooks_tower::{
    Begin, Claim, DUPLICATE_HEADER, DedupStore, Gate, StoreError, VerifiedEvent, WebhookVerify,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every key's claim, or `None` once done; and every call, in order.
#[derive(Clone, Default)]
struct OwnStore {
    keys: Arc<Mutex<HashMap<String, Option<Claim>>>>,
    calls: Arc<Mutex<Vec<String>>>,
}

impl DedupStore for OwnStore {
    async fn begin(&self, key: &str) -> Result<Begin, StoreError> {
        self.calls.lock().unwrap().push("begin".into());
        let mut keys = self.keys.lock().unwrap();
        Ok(match keys.get(key) {
            Some(None) => Begin::Done,
            Some(Some(_)) => Begin::InFlight,
            None => {
                let claim = Claim::random();
                keys.insert(key.to_owned(), Some(claim));
                Begin::New(claim)
            }
        })
    }

    async fn complete(&self, key: &str, _claim: Claim) -> Result<(), StoreError> {
        self.calls.lock().unwrap().push("complete".into());
        self.keys.lock().unwrap().insert(key.to_owned(), None);
        Ok(())
    }

    async fn abandon(&self, key: &str, claim: Claim) -> Result<(), StoreError> {
        self.calls.lock().unwrap().push("abandon".into());
        let mut keys = self.keys.lock().unwrap();
        if keys.get(key) == Some(&Some(claim)) {
            keys.remove(key);
        }
        Ok(())
    }
}

/// Posts `request` to `addr` over a fresh connection: the status and the lowercased head.
async fn send(addr: &str, request: SignedRequest) -> (u16, String) {
    let request = request.uri("/hooks").build();
    let mut head = format!("POST /hooks HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in request.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", request.body().len()));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(request.body().as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    (answer[9..12].parse().unwrap(), answer.to_lowercase())
}

#[tokio::test]
async fn a_store_of_the_apps_own_is_written_with_this_crates_names_alone() {
    const SECRET: &str = "whsec_prelude_test_0123456789abcdef";
    let store = OwnStore::default();
    let gate = Gate::builder()
        .secret(SECRET)
        .dedup(store.clone())
        .build()
        .unwrap();
    let ran = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&ran);
    let handler = move |event: VerifiedEvent| async move {
        seen.lock().unwrap().push(event.verified.event_id);
        StatusCode::NO_CONTENT
    };
    let app = Router::new()
        .route("/hooks", post(handler))
        .layer(WebhookVerify::from_gate(gate));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let body = r#"{"id":"del_1","eventId":"evt_own","type":"mapping.completed","data":{}}"#;
    let first = send(&addr, SignedRequest::from_body(body, SECRET)).await;
    let again = send(&addr, SignedRequest::from_body(body, SECRET)).await;
    server.abort();

    assert_eq!(first.0, 204, "first delivery: {}", first.1);
    assert_eq!(again.0, 200, "the copy: {}", again.1);
    assert!(
        again.1.contains(&format!("{DUPLICATE_HEADER}: true")),
        "{}",
        again.1
    );
    assert_eq!(*ran.lock().unwrap(), ["evt_own"]);
    assert_eq!(*store.calls.lock().unwrap(), ["begin", "complete", "begin"]);
}
