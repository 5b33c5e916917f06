//! The layer in a plain hyper 1 server, without axum, over real TCP.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use mapping_webhooks::{Secret, Signer, Verified};
use mapping_webhooks_tower::{VerifiedBody, WebhookVerify};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceBuilder;

const SECRET: &str = "whsec_hyper_test_0123456789abcdef";

type Seen = Arc<Mutex<Vec<(Verified, Bytes)>>>;

async fn serve(seen: Seen) -> String {
    let service = ServiceBuilder::new()
        .layer(WebhookVerify::new(SECRET))
        .service_fn(move |request: Request<VerifiedBody>| {
            let seen = Arc::clone(&seen);
            async move {
                let verified = request.extensions().get::<Verified>().cloned().unwrap();
                seen.lock()
                    .unwrap()
                    .push((verified, request.into_body().into_bytes()));
                Ok::<_, Infallible>(Response::new(VerifiedBody::new(Bytes::from_static(b"ok"))))
            }
        });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Sends one request and returns the status and the body of the answer.
async fn exchange(addr: &str, signature: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "POST /hooks/mapping HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(signature) = signature {
        head.push_str(&format!("x-webhook-signature: {signature}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[tokio::test]
async fn a_plain_hyper_server_verifies_and_deduplicates() {
    let seen = Seen::default();
    let addr = serve(Arc::clone(&seen)).await;
    let body = br#"{"id":"del_1", "eventId":"evt_hyper","type":"mapping.completed","data":{}}"#;
    let signer = Signer::new(Secret::new(SECRET).unwrap());

    let (status, text) = exchange(&addr, Some(&signer.sign_now(body)), body).await;
    assert_eq!((status, text.as_str()), (200, "ok"));
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0.event_id, "evt_hyper");
        assert_eq!(seen[0].1.as_ref(), body, "the handler gets the raw bytes");
    }

    let (status, text) = exchange(&addr, Some(&signer.sign_now(body)), body).await;
    assert_eq!((status, text.as_str()), (200, "event already received"));
    let (status, _) = exchange(&addr, None, body).await;
    assert_eq!(status, 400);
    assert_eq!(seen.lock().unwrap().len(), 1, "the handler ran once");
}
