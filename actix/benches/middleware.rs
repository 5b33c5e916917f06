//! What `WebhookVerify` adds to an actix-web request, against the same route without it.
//!
//! `cargo bench -p mapping-webhooks-actix --bench middleware`. Each request goes through
//! a real actix-web app (`test::init_service`) on one actix runtime, without sockets, so
//! the numbers are the middleware's own cost (read, verify, claim, restore the payload,
//! finish), not the network's.

use std::hint::black_box;

use actix_web::dev::Service;
use actix_web::test::{TestRequest, init_service};
use actix_web::{App, HttpResponse, web};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use mapping_webhooks::{Secret, Signer};
use mapping_webhooks_actix::{Gate, WebhookVerify};

const SECRET: &str = "whsec_bench_0123456789abcdef0123456789abcdef";

/// The documented example delivery, with its own event id.
fn envelope(event_id: u64) -> String {
    format!(
        r#"{{"id":"del_01HZ1A2B3C4D5E6F7G8H9J0K","eventId":"evt_{event_id:020}","type":"mapping.completed","apiVersion":"2026-06-01","createdAt":"2026-06-07T12:01:00Z","data":{{"mappingJobId":"job_01HZ","status":"COMPLETED","rowCount":4821,"exportFileId":"ef_01HZ"}}}}"#
    )
}

fn request(body: String, signer: &Signer) -> actix_http::Request {
    let signature = signer.sign_now(body.as_bytes());
    TestRequest::post()
        .uri("/hooks/mapping")
        .insert_header(("content-type", "application/json"))
        .insert_header(("x-webhook-signature", signature))
        .set_payload(body)
        .to_request()
}

/// The handler every variant runs: it takes the raw bytes, as `web::Json` would.
async fn handler(body: web::Bytes) -> HttpResponse {
    black_box(body);
    HttpResponse::NoContent().finish()
}

fn middleware(c: &mut Criterion) {
    let system = actix_web::rt::System::new();
    let signer = Signer::new(Secret::new(SECRET).unwrap());
    let bare = system.block_on(init_service(
        App::new().route("/hooks/mapping", web::post().to(handler)),
    ));
    let verified = |verify: WebhookVerify| {
        system.block_on(init_service(
            App::new().service(
                web::resource("/hooks/mapping")
                    .wrap(verify)
                    .route(web::post().to(handler)),
            ),
        ))
    };
    let no_dedup = verified(WebhookVerify::from_gate(
        Gate::builder()
            .secret(SECRET)
            .without_dedup()
            .build()
            .unwrap(),
    ));
    let dedup = verified(WebhookVerify::new(SECRET));

    let mut group = c.benchmark_group("actix");
    let mut next_id = 0;
    let mut fresh = || {
        next_id += 1;
        request(envelope(next_id), &signer)
    };
    group.bench_function("without middleware", |b| {
        b.iter_batched(
            &mut fresh,
            |req| system.block_on(bare.call(req)).unwrap().status(),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("verified, no dedup", |b| {
        b.iter_batched(
            &mut fresh,
            |req| system.block_on(no_dedup.call(req)).unwrap().status(),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("verified, new event (claim + complete)", |b| {
        b.iter_batched(
            &mut fresh,
            |req| {
                let status = system.block_on(dedup.call(req)).unwrap().status();
                assert_eq!(status, 204);
                status
            },
            BatchSize::SmallInput,
        );
    });
    let body = envelope(0);
    assert_eq!(
        system
            .block_on(dedup.call(request(body.clone(), &signer)))
            .unwrap()
            .status(),
        204
    );
    group.bench_function("verified, duplicate (answered 200)", |b| {
        b.iter_batched(
            || request(body.clone(), &signer),
            |req| {
                let status = system.block_on(dedup.call(req)).unwrap().status();
                assert_eq!(status, 200);
                status
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, middleware);
criterion_main!(benches);
