//! The axum extractor for verified events.

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use mapping_webhooks::{FromEventData, Verified};

mapping_webhooks::declare_verified_event! {
    /// A webhook that passed [`WebhookVerify`](crate::WebhookVerify): the envelope, with its
    /// `data` parsed as `T` from the verified bytes, and the verified metadata.
    ///
    /// `T` decides which events the handler takes:
    ///
    /// - [`Event`](crate::Event) takes **every** event type: match on it. This is the way to
    ///   receive a destination's events, which all arrive at one URL.
    /// - [`MappingCompleted`](crate::MappingCompleted) or
    ///   [`MappingErrorResolved`](crate::MappingErrorResolved) takes only its own type. Another
    ///   type is acknowledged (200, logged at `warn`) without running the handler, so the
    ///   sender does not retry it; route by type with [`EventRouter`](crate::EventRouter) to
    ///   handle several.
    /// - `serde_json::Value` (the default) or your own type takes any type whose `data`
    ///   parses as `T`.
    ///
    /// ```
    /// use axum::{Router, http::StatusCode, routing::post};
    /// use mapping_webhooks_tower::{Event, VerifiedEvent, WebhookVerify};
    ///
    /// async fn on_event(event: VerifiedEvent<Event>) -> StatusCode {
    ///     match &event.envelope.data {
    ///         Event::MappingCompleted(job) => println!("job {} has {} rows", job.mapping_job_id, job.row_count),
    ///         Event::MappingErrorResolved(resolved) => println!("resolved: {}", resolved.data),
    ///         other => println!("{}: nothing to do", other.event_type()),
    ///     }
    ///     StatusCode::NO_CONTENT
    /// }
    ///
    /// let app: Router = Router::new()
    ///     .route("/hooks/mapping", post(on_event))
    ///     .layer(WebhookVerify::new("whsec_test"));
    /// ```
    ///
    /// It refuses with 500 (and logs an error) on a route without the layer, so a
    /// misconfigured router never treats an unverified body as verified. When the payload of
    /// a type it takes does not match `T`, it answers 422: the event stays retryable (the
    /// handler did not answer 2xx), so a deploy that fixes `T` within the sender's retries
    /// (about 36 minutes) still receives it, and a delivery that stays unreadable shows as
    /// dead in the dashboard instead of being acknowledged unread.
    ///
    /// Build one with [`new`](VerifiedEvent::new) or
    /// [`from_envelope`](VerifiedEvent::from_envelope) to unit-test a handler without the layer.
    pub struct VerifiedEvent;
    /// Why [`VerifiedEvent`] did not run the handler. Each variant is a response, with the
    /// status [`status`](VerifiedEventRejection::status) gives.
    pub enum VerifiedEventRejection;
    crate = "mapping_webhooks_tower",
    status = StatusCode,
    missing_layer = "VerifiedEvent needs the WebhookVerify layer on this route: add `.layer(WebhookVerify::new(secret))` (or `.route_layer(..)`) to the router serving it",
}

impl<T, S> FromRequest<S> for VerifiedEvent<T>
where
    T: FromEventData,
    S: Send + Sync,
{
    type Rejection = VerifiedEventRejection;

    async fn from_request(mut request: Request<Body>, _state: &S) -> Result<Self, Self::Rejection> {
        let path = request.uri().path().to_owned();
        let Some(verified) = request.extensions_mut().remove::<Verified>() else {
            return Err(VerifiedEventRejection::missing_layer(&path));
        };
        // The layer bounded and buffered the body: this takes its one frame, which cannot
        // fail. A body that does fail did not come from the layer (another layer set the
        // `Verified` extension): the route is misconfigured, as without the layer.
        match request.into_body().collect().await {
            Ok(body) => Self::from_request_parts(verified, &body.to_bytes()),
            Err(_) => Err(VerifiedEventRejection::missing_layer(&path)),
        }
    }
}

impl IntoResponse for VerifiedEventRejection {
    fn into_response(self) -> Response {
        (self.status(), self.to_string()).into_response()
    }
}
