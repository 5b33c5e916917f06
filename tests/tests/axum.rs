//! The conformance suite against axum with `mapping-webhooks-tower`, built the way the
//! crate's docs show.

use axum::routing::post;
use axum::{Extension, Json, Router};
use bytes::Bytes;
use http::StatusCode;
use mapping_webhooks::{MappingCompleted, Verified};
use mapping_webhooks_conformance::{
    App, AppSpec, HANDLER_COMPLETED, HANDLER_RESOLVED, Probe, ROUTE_ANY, ROUTE_EVENTS, ROUTE_HOOKS,
    ROUTE_JSON, ROUTE_TENANT_KEY, ROUTE_TENANTS, ROUTE_TYPED, ROUTE_UNLAYERED, conformance_suite,
};
use mapping_webhooks_tower::{Event, EventRouter, Gate, VerifiedEvent, WebhookVerify};
use serde_json::value::RawValue;
use tower_http::catch_panic::CatchPanicLayer;

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).expect("a valid status")
}

async fn spawn_axum_app(spec: AppSpec) -> App {
    let app = routes(spec.probe.clone(), WebhookVerify::from_gate(spec.gate()));
    let app = match spec.tenants_gate() {
        Some(gate) => {
            let layer = WebhookVerify::from_gate(gate);
            // The same tenants, the key taken by a function of the request's parts.
            let keyed = layer.clone().tenant_key(|parts| {
                let rest = parts.uri.path().strip_prefix(ROUTE_TENANT_KEY)?;
                Some(rest.trim_start_matches('/').to_owned())
            });
            let hook = |p: Probe, route: &'static str| {
                move |Extension(meta): Extension<Verified>, body: Bytes| {
                    let p = p.clone();
                    async move { status(p.handle(route, Some(meta), body).await) }
                }
            };
            app.merge(
                Router::new()
                    .route(
                        &format!("{ROUTE_TENANTS}/{{tenant}}"),
                        post(hook(spec.probe.clone(), ROUTE_TENANTS)),
                    )
                    .route_layer(layer),
            )
            .merge(
                Router::new()
                    .route(
                        &format!("{ROUTE_TENANT_KEY}/{{tenant}}"),
                        post(hook(spec.probe.clone(), ROUTE_TENANT_KEY)),
                    )
                    .route_layer(keyed),
            )
        }
        None => app,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    App::new(url, AbortOnDrop(server))
}

fn routes<D: mapping_webhooks::DedupStore>(probe: Probe, layer: WebhookVerify<D>) -> Router {
    let p = probe.clone();
    let hooks = move |Extension(meta): Extension<Verified>, body: Bytes| {
        let p = p.clone();
        async move { status(p.handle(ROUTE_HOOKS, Some(meta), body).await) }
    };
    let p = probe.clone();
    let json = move |Extension(meta): Extension<Verified>, Json(raw): Json<Box<RawValue>>| {
        let p = p.clone();
        async move {
            let body = Bytes::copy_from_slice(raw.get().as_bytes());
            status(p.handle(ROUTE_JSON, Some(meta), body).await)
        }
    };
    let typed = |p: Probe, route: &'static str| {
        move |event: VerifiedEvent<MappingCompleted>| {
            let p = p.clone();
            async move {
                let (envelope, meta) = event.into_parts();
                let body = Bytes::from(serde_json::to_vec(&envelope).unwrap());
                status(p.handle(route, Some(meta), body).await)
            }
        }
    };
    let p = probe.clone();
    let any = move |event: VerifiedEvent<Event>| {
        let p = p.clone();
        async move {
            let (envelope, meta) = event.into_parts();
            let body = Bytes::from(serde_json::to_vec(&envelope).unwrap());
            status(p.handle(ROUTE_ANY, Some(meta), body).await)
        }
    };
    let (p1, p2) = (probe.clone(), probe.clone());
    let events = EventRouter::new()
        .on(move |event: VerifiedEvent<MappingCompleted>| {
            let p = p1.clone();
            async move {
                let (envelope, meta) = event.into_parts();
                let body = Bytes::from(serde_json::to_vec(&envelope).unwrap());
                status(p.handle(HANDLER_COMPLETED, Some(meta), body).await)
            }
        })
        .on_type("mapping.error.resolved", move |event: VerifiedEvent| {
            let p = p2.clone();
            async move {
                let (envelope, meta) = event.into_parts();
                let body = Bytes::from(serde_json::to_vec(&envelope).unwrap());
                status(p.handle(HANDLER_RESOLVED, Some(meta), body).await)
            }
        });
    // `layer` for most routes, `route_layer` for the typed one: both documented ways.
    let verified = Router::new()
        .route(ROUTE_HOOKS, post(hooks))
        .route(ROUTE_JSON, post(json))
        .route(ROUTE_ANY, post(any))
        .route(ROUTE_EVENTS, post(events))
        .layer(layer.clone());
    let typed_route = Router::new()
        .route(ROUTE_TYPED, post(typed(probe.clone(), ROUTE_TYPED)))
        .route_layer(layer);
    let unlayered = Router::new().route(ROUTE_UNLAYERED, post(typed(probe, ROUTE_UNLAYERED)));
    verified
        .merge(typed_route)
        .merge(unlayered)
        .layer(CatchPanicLayer::new())
}

/// Stops the server when the case ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

conformance_suite!(spawn_axum_app);

/// The inbox endpoint, mounted with `route_service` as `WebhookVerify::inbox`'s docs
/// show, at the inbox route and under it with a tenant segment.
async fn spawn_axum_inbox(gate: Gate, inbox: mapping_webhooks_inbox::Inbox) -> App {
    use axum::routing::post_service;
    use mapping_webhooks_conformance::inbox_cases::ROUTE_INBOX;
    let endpoint = WebhookVerify::from_gate(gate).inbox(inbox);
    let app = Router::new()
        .route_service(ROUTE_INBOX, post_service(endpoint.clone()))
        .route_service(&format!("{ROUTE_INBOX}/{{tenant}}"), post_service(endpoint));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    App::new(url, AbortOnDrop(server))
}

mapping_webhooks_conformance::inbox_suite!(spawn_axum_inbox);
