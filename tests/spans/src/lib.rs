//! For the adapters' tests: [`SpanFields`], a `tracing` layer that records the fields of
//! every `webhook` span (the delivery span the core opens), so a test can check what an
//! adapter's request recorded, whatever the framework.

use std::sync::{Arc, Mutex};

use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Records the fields of every `webhook` span, as `name=value`. Clones share the record.
#[derive(Debug, Clone, Default)]
pub struct SpanFields(Arc<Mutex<Vec<String>>>);

impl tracing::field::Visit for SpanFields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.push(format!("{}={value:?}", field.name()));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.push(format!("{}={value}", field.name()));
    }
}

impl<S> tracing_subscriber::Layer<S> for SpanFields
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: Context<'_, S>,
    ) {
        if attrs.metadata().name() == "webhook" {
            attrs.record(&mut self.clone());
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if ctx.span(id).is_some_and(|span| span.name() == "webhook") {
            values.record(&mut self.clone());
        }
    }
}

impl SpanFields {
    fn push(&self, field: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(field);
    }

    /// Installs a registry with this layer as the thread's default subscriber.
    ///
    /// Send one delivery before: tracing caches each callsite's interest when the callsite
    /// is first hit, and a test on another thread hitting the span's callsite while this
    /// subscriber is being installed can leave it cached as "never" (the span then disabled
    /// here). Hit first on this thread, the callsite is registered before the subscriber,
    /// whose installation rebuilds every registered callsite's interest.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(tracing_subscriber::registry().with(self.clone()))
    }

    /// Every field recorded so far, in order.
    pub fn fields(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The name of the span the code calling this runs in.
pub fn current_span() -> Option<&'static str> {
    tracing::Span::current().metadata().map(|m| m.name())
}
