//! [`EventRouter`]: one URL, a handler per event type.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use actix_web::dev::Payload;
use actix_web::{FromRequest, Handler, HttpMessage, HttpRequest, HttpResponse, Responder, web};
use mapping_webhooks::adapter::{EventTable, Route};
use mapping_webhooks::{EventPayload, Verified};

use crate::{VerifiedEvent, VerifiedEventRejection};

type BoxFuture = Pin<Box<dyn Future<Output = HttpResponse>>>;
type Erased = Rc<dyn Fn(HttpRequest, Payload) -> BoxFuture>;

/// Runs one handler per event type, behind [`WebhookVerify`](crate::WebhookVerify): an
/// actix-web [`Handler`](https://docs.rs/actix-web/4/actix_web/trait.Handler.html) for the one URL a destination posts every subscribed event to
/// (`web::post().to(router)`).
///
/// - [`on::<P>(handler)`](Self::on) runs `handler` (an `async fn(VerifiedEvent<P>)`) for
///   `P`'s event type, such as [`MappingCompleted`](crate::MappingCompleted);
/// - [`on_type("…", handler)`](Self::on_type) runs any actix-web handler (any extractors,
///   `web::Data` included) for that type;
/// - [`fallback(handler)`](Self::fallback) runs for every other type.
///
/// A type without a handler and no fallback is **acknowledged** with 200 and logged at
/// `info`, never refused: a refusal would be retried until the delivery is dead. A
/// handler's payload that does not match its type is answered 422 and stays retryable
/// (see [`VerifiedEvent`]).
///
/// ```
/// use actix_web::{App, HttpResponse, web};
/// use mapping_webhooks_actix::{
///     EventRouter, MappingCompleted, MappingErrorResolved, VerifiedEvent, WebhookVerify,
/// };
///
/// async fn on_completed(event: VerifiedEvent<MappingCompleted>) -> HttpResponse {
///     println!("job {} has {} rows", event.envelope.data.mapping_job_id, event.envelope.data.row_count);
///     HttpResponse::NoContent().finish()
/// }
///
/// async fn on_resolved(event: VerifiedEvent<MappingErrorResolved>) -> HttpResponse {
///     println!("resolved: {}", event.envelope.data.data);
///     HttpResponse::NoContent().finish()
/// }
///
/// let verify = WebhookVerify::new("whsec_test");
/// let app = App::new().service(
///     web::resource("/hooks/mapping").wrap(verify.clone()).route(web::post().to(
///         EventRouter::new()
///             .on(on_completed)
///             .on::<MappingErrorResolved>(on_resolved)
///             .on_type("export.expired", |event: VerifiedEvent| async move {
///                 println!("{}", event.envelope.data);
///                 HttpResponse::Ok().finish()
///             }),
///     )),
/// );
/// ```
///
/// Build it inside the `HttpServer::new` closure (it is per worker, like the app).
/// The event type comes from the signed body (the [`Verified`] the middleware inserted),
/// never from the unsigned `X-Webhook-Event` header. Without the middleware every
/// request is answered 500, as with [`VerifiedEvent`].
#[derive(Clone, Default)]
pub struct EventRouter {
    table: Rc<EventTable<Erased>>,
}

impl fmt::Debug for EventRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EventRouter").field(&self.table).finish()
    }
}

/// A handler for one payload type: an `async fn` (or closure) taking
/// [`VerifiedEvent<P>`] and returning any
/// [`Responder`](https://docs.rs/actix-web/4/actix_web/trait.Responder.html). Implemented for all of them;
/// see [`EventRouter::on`].
pub trait EventHandler<P>: Clone + 'static {
    /// Runs the handler.
    fn call(
        &self,
        event: VerifiedEvent<P>,
        req: HttpRequest,
    ) -> impl Future<Output = HttpResponse> + 'static;
}

impl<F, Fut, P> EventHandler<P> for F
where
    F: Fn(VerifiedEvent<P>) -> Fut + Clone + 'static,
    Fut: Future + 'static,
    Fut::Output: Responder,
{
    fn call(
        &self,
        event: VerifiedEvent<P>,
        req: HttpRequest,
    ) -> impl Future<Output = HttpResponse> + 'static {
        let future = self(event);
        async move { future.await.respond_to(&req).map_into_boxed_body() }
    }
}

impl EventRouter {
    /// A router with no handler: every event is acknowledged (200) and logged.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `handler` for events of type `P::EVENT_TYPE`, with their payload parsed as `P`
    /// (a payload that does not match is answered 422 and stays retryable).
    ///
    /// `P` is inferred from the handler's argument (annotate a closure's:
    /// `|event: VerifiedEvent<MappingCompleted>| …`), or named: `on::<MappingCompleted>(f)`.
    /// For a handler that also needs `web::Data` or other extractors, use [`on_type`](Self::on_type)
    /// with `P::EVENT_TYPE`.
    ///
    /// # Panics
    ///
    /// When the type already has a handler.
    #[must_use]
    pub fn on<P: EventPayload>(self, handler: impl EventHandler<P>) -> Self {
        self.insert(
            P::EVENT_TYPE.to_owned(),
            Rc::new(move |req: HttpRequest, _payload: Payload| {
                let handler = handler.clone();
                Box::pin(async move {
                    match VerifiedEvent::<P>::extract(&req) {
                        Ok(event) => handler.call(event, req).await,
                        Err(rejection) => HttpResponse::from_error(rejection),
                    }
                })
            }),
        )
    }

    /// Runs `handler`, any actix-web handler, for events of type `event_type`. It can
    /// take [`VerifiedEvent`] (with the payload type it expects, [`Event`](crate::Event)
    /// or `serde_json::Value`), `web::ReqData<Verified>`, `web::Data`, `web::Json<T>` and
    /// the rest.
    ///
    /// # Panics
    ///
    /// When the type already has a handler.
    #[must_use]
    pub fn on_type<H, Args>(self, event_type: impl Into<String>, handler: H) -> Self
    where
        H: Handler<Args>,
        Args: FromRequest + 'static,
        H::Output: Responder + 'static,
    {
        self.insert(event_type.into(), erase(handler))
    }

    /// Runs `handler`, any actix-web handler, for every event type without its own
    /// handler, instead of acknowledging them. It decides the answer: a non-2xx one is
    /// retried by the sender, as for any handler.
    #[must_use]
    pub fn fallback<H, Args>(mut self, handler: H) -> Self
    where
        H: Handler<Args>,
        Args: FromRequest + 'static,
        H::Output: Responder + 'static,
    {
        Rc::make_mut(&mut self.table).set_fallback(erase(handler));
        self
    }

    fn insert(mut self, event_type: String, handler: Erased) -> Self {
        Rc::make_mut(&mut self.table).insert(event_type, handler);
        self
    }

    /// The event types with a handler of their own, in no particular order.
    pub fn event_types(&self) -> impl Iterator<Item = &str> {
        self.table.event_types()
    }

    fn dispatch(&self, req: HttpRequest, payload: Payload) -> BoxFuture {
        let route = match req.extensions().get::<Verified>() {
            None => Err(None),
            Some(verified) => match self.table.route(verified) {
                Route::Handler(handler) => Ok(Rc::clone(handler)),
                Route::Unrouted(reason) => Err(Some(reason)),
            },
        };
        match route {
            Ok(handler) => handler(req, payload),
            Err(None) => {
                let rejection = VerifiedEventRejection::missing_layer(req.path());
                Box::pin(async move { HttpResponse::from_error(rejection) })
            }
            Err(Some(reason)) => Box::pin(async move {
                HttpResponse::Ok()
                    .content_type(actix_web::http::header::ContentType::plaintext())
                    .body(reason)
            }),
        }
    }
}

fn erase<H, Args>(handler: H) -> Erased
where
    H: Handler<Args>,
    Args: FromRequest + 'static,
    H::Output: Responder + 'static,
{
    Rc::new(move |req: HttpRequest, mut payload: Payload| {
        let handler = handler.clone();
        Box::pin(async move {
            match Args::from_request(&req, &mut payload).await {
                Ok(args) => handler
                    .call(args)
                    .await
                    .respond_to(&req)
                    .map_into_boxed_body(),
                Err(error) => HttpResponse::from_error(error.into()),
            }
        })
    })
}

impl Handler<(HttpRequest, web::Payload)> for EventRouter {
    type Output = HttpResponse;
    type Future = BoxFuture;

    fn call(&self, (req, payload): (HttpRequest, web::Payload)) -> Self::Future {
        self.dispatch(req, payload.into_inner())
    }
}
