//! [`EventRouter`]: one URL, a handler per event type.

use std::{fmt, future::Future, pin::Pin, sync::Arc};

use axum::extract::Request;
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mapping_webhooks::adapter::{EventTable, Route};
use mapping_webhooks::{EventPayload, Verified};

use crate::{VerifiedEvent, VerifiedEventRejection};

type BoxFuture = Pin<Box<dyn Future<Output = Response> + Send>>;
type Erased<S> = Arc<dyn Fn(Request, S) -> BoxFuture + Send + Sync>;

/// Runs one handler per event type, behind [`WebhookVerify`](crate::WebhookVerify): an
/// axum [`Handler`](https://docs.rs/axum/0.8/axum/handler/trait.Handler.html) for the one URL a destination posts every subscribed event to.
///
/// - [`on::<P>(handler)`](Self::on) runs `handler` (an `async fn(VerifiedEvent<P>)`) for
///   `P`'s event type, such as [`MappingCompleted`](crate::MappingCompleted);
/// - [`on_type("…", handler)`](Self::on_type) runs any axum handler (any extractors, state
///   included) for that type;
/// - [`fallback(handler)`](Self::fallback) runs for every other type.
///
/// A type without a handler and no fallback is **acknowledged** with 200 and logged at
/// `info`, never refused: a refusal would be retried until the delivery is dead. A
/// handler's payload that does not match its type is answered 422 and stays retryable
/// (see [`VerifiedEvent`]).
///
/// ```
/// use axum::{Router, http::StatusCode, routing::post};
/// use mapping_webhooks_tower::{
///     EventRouter, MappingCompleted, MappingErrorResolved, VerifiedEvent, WebhookVerify,
/// };
///
/// async fn on_completed(event: VerifiedEvent<MappingCompleted>) -> StatusCode {
///     println!("job {} has {} rows", event.envelope.data.mapping_job_id, event.envelope.data.row_count);
///     StatusCode::NO_CONTENT
/// }
///
/// async fn on_resolved(event: VerifiedEvent<MappingErrorResolved>) -> StatusCode {
///     println!("resolved: {}", event.envelope.data.data);
///     StatusCode::NO_CONTENT
/// }
///
/// let events = EventRouter::new()
///     .on(on_completed)
///     .on::<MappingErrorResolved>(on_resolved)
///     .on_type("export.expired", |event: VerifiedEvent| async move {
///         println!("{}", event.envelope.data);
///     });
/// let app: Router = Router::new()
///     .route("/hooks/mapping", post(events))
///     .layer(WebhookVerify::new("whsec_test"));
/// ```
///
/// The event type comes from the signed body (the [`Verified`] the layer inserted),
/// never from the unsigned `X-Webhook-Event` header. Without the layer every request is
/// answered 500, as with [`VerifiedEvent`].
#[derive(Clone)]
pub struct EventRouter<S = ()> {
    table: Arc<EventTable<Erased<S>>>,
}

impl<S> Default for EventRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<S> fmt::Debug for EventRouter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EventRouter").field(&self.table).finish()
    }
}

/// A handler for one payload type: an `async fn` (or closure) taking
/// [`VerifiedEvent<P>`] and returning any
/// [`IntoResponse`](https://docs.rs/axum/0.8/axum/response/trait.IntoResponse.html). Implemented for all of them;
/// see [`EventRouter::on`].
pub trait EventHandler<P>: Clone + Send + Sync + 'static {
    /// Runs the handler.
    fn call(self, event: VerifiedEvent<P>) -> impl Future<Output = Response> + Send + 'static;
}

impl<F, Fut, P> EventHandler<P> for F
where
    F: FnOnce(VerifiedEvent<P>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoResponse,
{
    fn call(self, event: VerifiedEvent<P>) -> impl Future<Output = Response> + Send + 'static {
        let future = self(event);
        async move { future.await.into_response() }
    }
}

impl<S> EventRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    /// A router with no handler: every event is acknowledged (200) and logged.
    pub fn new() -> Self {
        Self {
            table: Arc::new(EventTable::new()),
        }
    }

    /// Runs `handler` for events of type `P::EVENT_TYPE`, with their payload parsed as `P`
    /// (a payload that does not match is answered 422 and stays retryable).
    ///
    /// `P` is inferred from the handler's argument (annotate a closure's:
    /// `|event: VerifiedEvent<MappingCompleted>| …`), or named: `on::<MappingCompleted>(f)`.
    /// For a handler that also needs state or other extractors, use [`on_type`](Self::on_type)
    /// with `P::EVENT_TYPE`.
    ///
    /// # Panics
    ///
    /// When the type already has a handler.
    #[must_use]
    pub fn on<P: EventPayload>(self, handler: impl EventHandler<P>) -> Self {
        // An axum handler whose one extractor is the event: a rejection is its response.
        self.on_type(P::EVENT_TYPE, move |event: VerifiedEvent<P>| {
            handler.call(event)
        })
    }

    /// Runs `handler`, any axum handler, for events of type `event_type`. It can take
    /// [`VerifiedEvent`] (with the payload type it expects, [`Event`](crate::Event) or
    /// `serde_json::Value`), `Extension<Verified>`, `State`, `Json<T>` and the rest.
    ///
    /// # Panics
    ///
    /// When the type already has a handler.
    #[must_use]
    pub fn on_type<H, T>(mut self, event_type: impl Into<String>, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        Arc::make_mut(&mut self.table).insert(event_type.into(), erase(handler));
        self
    }

    /// Runs `handler`, any axum handler, for every event type without its own handler,
    /// instead of acknowledging them. It decides the answer: a non-2xx one is retried
    /// by the sender, as for any handler.
    #[must_use]
    pub fn fallback<H, T>(mut self, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        Arc::make_mut(&mut self.table).set_fallback(erase(handler));
        self
    }

    /// The event types with a handler of their own, in no particular order.
    pub fn event_types(&self) -> impl Iterator<Item = &str> {
        self.table.event_types()
    }

    async fn dispatch(self, request: Request, state: S) -> Response {
        let Some(verified) = request.extensions().get::<Verified>() else {
            return VerifiedEventRejection::missing_layer(request.uri().path()).into_response();
        };
        match self.table.route(verified) {
            Route::Handler(handler) => handler(request, state).await,
            Route::Unrouted(reason) => (StatusCode::OK, reason).into_response(),
        }
    }
}

fn erase<H, T, S>(handler: H) -> Erased<S>
where
    H: Handler<T, S>,
    T: 'static,
    S: Send + 'static,
{
    Arc::new(move |request: Request, state: S| Box::pin(handler.clone().call(request, state)))
}

impl<S> Handler<EventRouter<S>, S> for EventRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    type Future = BoxFuture;

    fn call(self, request: Request, state: S) -> Self::Future {
        Box::pin(self.dispatch(request, state))
    }
}
