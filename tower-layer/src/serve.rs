//! [`serve`]: an app served over HTTP/1 with the limits `axum::serve` leaves out (the
//! `serve` feature; every item here is behind it).

#[cfg(feature = "serve")]
use {
    http::{Request, Response},
    hyper::{body::Incoming, server::conn::http1},
    hyper_util::{
        rt::{TokioIo, TokioTimer},
        server::graceful::GracefulShutdown,
        service::TowerToHyperService,
    },
    std::{
        error::Error as StdError,
        fmt,
        future::{Future, IntoFuture},
        io,
        pin::Pin,
        sync::Arc,
        time::Duration,
    },
    tokio::{net::TcpListener, sync::Semaphore},
    tower_service::Service,
};

/// Serves `service` (an axum `Router`, or any cloneable tower service) on `listener` over
/// HTTP/1, with what a server facing the internet needs and `axum::serve` does not set:
///
/// - a **header timeout** ([`header_timeout`](Serve::header_timeout), default 5 s): a
///   client has that long to send a request's head, on a new connection and, from the end
///   of the last response, on a kept-alive one; so a client trickling its headers
///   (slowloris) or an idle kept-alive connection is closed after that long. `axum::serve`
///   gives hyper no timer, and without one hyper's header timeout does nothing: such
///   clients hold their connections for ever. (The body has the layer's own deadline,
///   [`GateBuilder::read_timeout`].)
/// - a **connection cap** ([`max_connections`](Serve::max_connections), default 512): past
///   it, the next clients wait in the kernel's listen queue until a connection closes,
///   instead of taking a file descriptor each until the process has none left.
/// - **graceful shutdown** ([`with_graceful_shutdown`](Serve::with_graceful_shutdown)):
///   once the signal resolves, it stops accepting, closes idle connections, and waits for
///   the requests in progress before the future completes.
///
/// Awaiting it runs the server; it completes only after a graceful shutdown. A failed
/// `accept` (out of file descriptors, a connection reset before it was accepted) is
/// logged and retried after 100 ms, not returned: the output is an [`io::Result`] only so
/// that code written for `axum::serve(..).await?` compiles unchanged, and is always `Ok`.
///
/// ```no_run
/// use std::time::Duration;
///
/// use axum::{Router, http::StatusCode, routing::post};
/// use mapping_webhooks_tower::{Event, VerifiedEvent, WebhookVerify};
///
/// async fn on_event(_event: VerifiedEvent<Event>) -> StatusCode {
///     StatusCode::NO_CONTENT
/// }
///
/// # async fn shutdown_signal() {}
/// # #[tokio::main] async fn main() -> std::io::Result<()> {
/// let app = Router::new()
///     .route("/hooks/mapping", post(on_event))
///     .layer(WebhookVerify::new("whsec_..."));
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
/// mapping_webhooks_tower::serve(listener, app)
///     .header_timeout(Duration::from_secs(5))
///     .max_connections(512)
///     // Resolves on SIGTERM or Ctrl-C (tokio::signal).
///     .with_graceful_shutdown(shutdown_signal())
///     .await
/// # }
/// ```
///
/// HTTP/1 only: HTTP/2 has other limits to set (streams per connection, its own
/// timeouts), and webhook senders speak HTTP/1.1. A proxy in front may set all of this
/// too; these are the server's own, for when it does not.
///
/// [`GateBuilder::read_timeout`]: crate::GateBuilder::read_timeout
#[cfg(feature = "serve")]
pub fn serve<S>(listener: TcpListener, service: S) -> Serve<S> {
    Serve {
        listener,
        service,
        header_timeout: Duration::from_secs(5),
        max_connections: 512,
    }
}

/// The server [`serve`] returns: set its limits, then `.await` it (or
/// [`with_graceful_shutdown`](Self::with_graceful_shutdown) first).
#[cfg(feature = "serve")]
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve<S> {
    listener: TcpListener,
    service: S,
    header_timeout: Duration,
    max_connections: usize,
}

#[cfg(feature = "serve")]
impl<S> Serve<S> {
    /// How long a client has to send a request's head (default 5 s): on a new connection,
    /// and on a kept-alive one from the end of the last response, so an idle connection
    /// is closed after this long too. Five seconds is ample for a sender's few hundred
    /// bytes of headers, even over a slow link, and short enough that a slow client holds
    /// a connection (a file descriptor, a slot of [`max_connections`](Self::max_connections))
    /// only briefly.
    ///
    /// # Panics
    ///
    /// When `timeout` is zero: every connection would be closed before its first byte.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        assert!(
            !timeout.is_zero(),
            "a header timeout of zero closes every connection"
        );
        self.header_timeout = timeout;
        self
    }

    /// How many connections are open at once (default 512); past it, the next clients
    /// wait in the listen queue until one closes. 512 is half of the usual limit of 1,024
    /// open files, so that a flood of connections cannot take the descriptors the process
    /// needs for anything else (its files, its database or Redis connections, its logs).
    /// Raise it together with the process's limit (`ulimit -n`).
    ///
    /// # Panics
    ///
    /// When `max` is zero: no connection would ever be served.
    pub fn max_connections(mut self, max: usize) -> Self {
        assert!(max > 0, "a connection cap of zero serves no connection");
        self.max_connections = max.min(Semaphore::MAX_PERMITS);
        self
    }

    /// Shuts down gracefully once `signal` resolves: stops accepting (the listener is
    /// closed), closes idle connections, and completes once the requests in progress are
    /// answered. Without it, the server runs until its future is dropped.
    pub fn with_graceful_shutdown<F>(self, signal: F) -> WithGracefulShutdown<S, F>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        WithGracefulShutdown {
            serve: self,
            signal,
        }
    }
}

#[cfg(feature = "serve")]
impl<S> fmt::Debug for Serve<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("header_timeout", &self.header_timeout)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

/// A [`Serve`] that shuts down gracefully when its signal resolves: `.await` it.
#[cfg(feature = "serve")]
#[must_use = "a server does nothing until it is awaited"]
pub struct WithGracefulShutdown<S, F> {
    serve: Serve<S>,
    signal: F,
}

#[cfg(feature = "serve")]
impl<S, F> fmt::Debug for WithGracefulShutdown<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithGracefulShutdown")
            .field("serve", &self.serve)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "serve")]
impl<S, B> IntoFuture for Serve<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run(self, std::future::pending()))
    }
}

#[cfg(feature = "serve")]
impl<S, B, F> IntoFuture for WithGracefulShutdown<S, F>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
    F: Future<Output = ()> + Send + 'static,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run(self.serve, self.signal))
    }
}

#[cfg(feature = "serve")]
async fn run<S, B>(serve: Serve<S>, signal: impl Future<Output = ()>) -> io::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let Serve {
        listener,
        service,
        header_timeout,
        max_connections,
    } = serve;
    let mut http = http1::Builder::new();
    // The timer is what makes the header timeout work at all.
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let slots = Arc::new(Semaphore::new(max_connections));
    let graceful = GracefulShutdown::new();
    let mut signal = std::pin::pin!(signal);
    loop {
        // A slot first, then a connection: past the cap, clients wait in the kernel's
        // queue instead of taking file descriptors.
        let (slot, accepted) = tokio::select! {
            () = &mut signal => break,
            accepted = async {
                let slot = slots.clone().acquire_owned().await.expect("never closed");
                (slot, listener.accept().await)
            } => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // Out of file descriptors, or a connection reset before it was accepted:
                // wait a little rather than spin.
                tracing::warn!("accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(service.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // Errors are the client's (a header timeout, a reset): nothing to do.
            if let Err(error) = connection.await {
                tracing::debug!("connection closed: {error}");
            }
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("shutting down: finishing the requests in progress");
    graceful.shutdown().await;
    Ok(())
}
