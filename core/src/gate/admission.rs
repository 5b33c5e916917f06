//! Admission: a verified body's dedup claim, and what the handler is handed.

use std::sync::Arc;
use std::time::Instant;

use super::ticket::{Held, Observed, record};
use super::{CheckedHead, Gate, OnStoreError, Reply, Signed, Ticket, UnsignedHeaders};
use crate::adapter::RequestHead;
use crate::dedup::{Begin, DedupStore};
use crate::observe::{Outcome, StoreOperation};
use crate::scheme::{Scheme, read_verified};
use crate::verify::read_envelope;
use crate::{MatchedSecret, SignatureMatch, Tenant, Verified};

impl<D: DedupStore> Gate<D> {
    /// Verifies a request and claims its event.
    ///
    /// `signatures` are the values of every `X-Webhook-Signature` header (none or more
    /// than one is refused), `body` the raw body, read already. An adapter that reads the
    /// body itself opens an [`intake`](Self::intake) instead, so a request refused on its
    /// head is never read.
    ///
    /// For another [`Scheme`], `signatures` are the values of its
    /// [signature header](Scheme::signature_header); a scheme that needs more headers
    /// (Standard Webhooks, Svix, GitHub, Shopify, Slack) is given the whole head with
    /// [`admit_head`](Self::admit_head).
    pub async fn admit<'h>(
        &self,
        signatures: impl IntoIterator<Item = &'h [u8]>,
        unsigned: UnsignedHeaders<'_>,
        body: &[u8],
    ) -> Admission<D> {
        if !self.scheme.is_signature_header_only() {
            let mut signatures = signatures.into_iter();
            let only = OnlySignatures {
                name: self.scheme.signature_header(),
                values: [signatures.next(), signatures.next()],
            };
            return self.admit_head(&only, unsigned, body).await;
        }
        match self.check_head(signatures, None, unsigned) {
            Ok(head) => self.admit_checked(&head, unsigned, body).await,
            Err(reply) => Admission::Reply(reply),
        }
    }

    /// Verifies a request whose body was read already and claims its event, reading
    /// the scheme's headers from `head`: [`admit`](Self::admit) for any scheme. A gate
    /// with tenants refuses it (404): give the request to [`intake`](Self::intake).
    pub async fn admit_head<H: RequestHead>(
        &self,
        head: &H,
        unsigned: UnsignedHeaders<'_>,
        body: &[u8],
    ) -> Admission<D> {
        match self.check_scheme_head(head, None, unsigned) {
            Ok(head) => self.admit_checked(&head, unsigned, body).await,
            Err(reply) => Admission::Reply(reply),
        }
    }

    /// Verifies the body of a request whose head passed [`check_head`](Self::check_head)
    /// and claims its event: the signature (401), then the envelope (400), then the dedup
    /// claim (200 for a duplicate, 409 for a copy in flight, 503 for a store failure).
    ///
    /// The timestamp window is not checked again: it was checked when the head arrived,
    /// and the body read that followed is bounded by the read timeout.
    pub(crate) async fn admit_checked(
        &self,
        head: &CheckedHead<'_>,
        unsigned: UnsignedHeaders<'_>,
        body: &[u8],
    ) -> Admission<D> {
        // With an observer, each step's end is the next one's start: one clock read per
        // step. Without one, no clock is read.
        let started = self.observer.as_ref().map(|_| Instant::now());
        let secrets = match (&head.tenant, &self.tenants) {
            (Some(tenant), _) => tenant.secrets(),
            (None, None) => self.verifier.secrets(),
            // A gate for tenants never verifies without one (check_tenant was skipped).
            (None, Some(_)) => {
                return Admission::Reply(self.tenant_refused(Reply::UnknownTenant));
            }
        };
        let (matched, scheme_head) = match &head.signed {
            Signed::Header(header) => (
                self.verifier.match_signature_with(secrets, header, body),
                None,
            ),
            Signed::Scheme(scheme_head) => (
                self.scheme
                    .match_signature(secrets, scheme_head, body)
                    .map(|secret| SignatureMatch {
                        timestamp: scheme_head.timestamp().unwrap_or(0),
                        secret,
                    }),
                Some(scheme_head),
            ),
        };
        let secret = matched.as_ref().ok().map(|m| m.secret);
        let verified = matched.and_then(|matched| match self.scheme {
            Scheme::Mapping => read_envelope(matched, body),
            scheme => read_verified(scheme, matched, scheme_head, body),
        });
        let mut step = None;
        if let (Some(observer), Some(started)) = (&self.observer, started) {
            let now = Instant::now();
            observer.verification(now - started, secret);
            step = Some(now);
        }
        let mut verified = match verified {
            Ok(verified) => verified,
            Err(error) => return Admission::Reply(self.refuse(error, unsigned)),
        };
        // The tenant's canonical id, as its resolver named it: every spelling of its key
        // shares one dedup namespace.
        let tenant = head.tenant.as_ref();
        verified.tenant = tenant.map(|t| t.id().to_owned());
        let span = tracing::info_span!(
            "webhook",
            event_id = verified.event_id,
            delivery_id = verified.delivery_id,
            event_type = verified.event_type,
            secret = %verified.secret,
            outcome = tracing::field::Empty,
            reason = tracing::field::Empty,
        );
        if let MatchedSecret::Previous(index) = verified.secret {
            tracing::info!(
                previous_secret = index,
                event_id = verified.event_id,
                "webhook signed with a previous secret; remove it once this no longer appears"
            );
        }
        if let Some(hint) = unsigned.event_type
            && hint != verified.event_type
        {
            tracing::warn!(
                header = hint,
                body = verified.event_type,
                event_id = verified.event_id,
                "X-Webhook-Event disagrees with the signed body; using the body"
            );
        }
        // Slack's `url_verification` has no event id: it is answered, never deduplicated.
        let store = self
            .store
            .as_ref()
            .filter(|_| !verified.event_id.is_empty());
        let Some(store) = store else {
            return Admission::Process {
                verified,
                ticket: Ticket::new(None, self.observed(step, false), span),
            };
        };
        let key = self.key_in(tenant.map(Tenant::id), &verified.event_id);
        let begun = store.begin(&key).await;
        if let (Some(observer), Some(started)) = (&self.observer, step) {
            let now = Instant::now();
            observer.store(StoreOperation::Begin, now - started, begun.is_ok());
            step = Some(now);
        }
        let reply = |reply: Reply, outcome: Outcome| {
            record(&span, outcome);
            if let Some(observer) = &self.observer {
                observer.outcome(outcome);
            }
            Admission::Reply(reply)
        };
        match begun {
            Ok(Begin::New(claim)) => {
                if let Some(observer) = &self.observer {
                    observer.claim_started();
                }
                let held = Held {
                    store: Arc::clone(store),
                    key,
                    claim,
                };
                Admission::Process {
                    verified,
                    ticket: Ticket::new(Some(held), self.observed(step, false), span),
                }
            }
            Ok(Begin::Done) => {
                tracing::debug!(
                    event_id = verified.event_id,
                    delivery_id = verified.delivery_id,
                    "webhook already processed; acknowledged without running the handler"
                );
                reply(Reply::AlreadyProcessed, Outcome::Duplicate)
            }
            Ok(Begin::InFlight) => {
                tracing::info!(
                    event_id = verified.event_id,
                    delivery_id = verified.delivery_id,
                    "another copy of this webhook is being processed; asked the sender to retry"
                );
                reply(Reply::InFlight, Outcome::InFlight)
            }
            Err(error) => match self.on_store_error {
                OnStoreError::Reject => {
                    tracing::error!(
                        %error,
                        event_id = verified.event_id,
                        delivery_id = verified.delivery_id,
                        "dedup store failed; answered 503 so the sender retries"
                    );
                    reply(Reply::StoreUnavailable, Outcome::StoreUnavailable)
                }
                OnStoreError::PassThrough => {
                    tracing::warn!(
                        %error,
                        event_id = verified.event_id,
                        delivery_id = verified.delivery_id,
                        "dedup store failed; running the handler without deduplication"
                    );
                    Admission::Process {
                        verified,
                        ticket: Ticket::new(None, self.observed(step, true), span),
                    }
                }
            },
        }
    }

    /// What a ticket needs to report its handler, started at `started`, when there is
    /// an observer.
    fn observed(&self, started: Option<Instant>, store_error: bool) -> Option<Observed> {
        let (observer, started) = (self.observer.as_ref()?, started?);
        Some(Observed {
            observer: Arc::clone(observer),
            started,
            store_error,
        })
    }
}

/// The signature header values given to [`Gate::admit`], as a head, for a scheme read
/// through [`Gate::admit_head`]: every other header is missing.
pub(super) struct OnlySignatures<'h> {
    pub(super) name: &'static str,
    pub(super) values: [Option<&'h [u8]>; 2],
}

impl RequestHead for OnlySignatures<'_> {
    fn header_values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        let wanted = name == self.name;
        self.values
            .iter()
            .flatten()
            .copied()
            .filter(move |_| wanted)
    }

    fn path(&self) -> &str {
        ""
    }

    fn host(&self) -> Option<&str> {
        None
    }
}

/// What [`Gate::admit`] decided.
#[derive(Debug)]
// `Process` is the larger variant by design: it is moved once per request, never stored.
#[allow(clippy::large_enum_variant)]
pub enum Admission<D: DedupStore> {
    /// Run the handler with this verified event, then [`finish`](Ticket::finish) the
    /// ticket with its status.
    Process {
        /// The verified request.
        verified: Verified,
        /// The dedup claim, to finish once the handler answered.
        ticket: Ticket<D>,
    },
    /// Answer this without running the handler.
    Reply(Reply),
}
