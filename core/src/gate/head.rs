//! What the gate decides on a request's head, before its body: the declared length, the
//! signature header and its window, the tenant; and how a refusal is logged and observed.

use super::{Gate, Reply, UnsignedHeaders};
use crate::adapter::RequestHead;
use crate::dedup::DedupStore;
use crate::observe::{Outcome, Refusal};
use crate::scheme::{Scheme, SchemeHead};
use crate::tenants::MAX_TENANT_KEY_LEN;
use crate::{LookupError, SignatureHeader, Tenant, VerifyError};

impl<D: DedupStore> Gate<D> {
    /// Looks up the tenant of a request whose head passed [`check_head`](Self::check_head),
    /// before its body is read: `tenant` is its key, taken from the request as
    /// [`tenant_from`](Self::tenant_from) says (or as the adapter's own function does).
    /// A gate without tenants returns `head` as it is.
    ///
    /// # Errors
    ///
    /// 404 (`not found`, the answer of a route that does not exist) for a missing key or a
    /// tenant the resolver does not know; 503 with `Retry-After` when the lookup failed,
    /// panicked, timed out, or too many lookups were running (the sender retries). The
    /// tenant found names the request's dedup namespace by its [id](crate::Tenant::id).
    pub(crate) async fn check_tenant<'r>(
        &self,
        mut head: CheckedHead<'r>,
        tenant: Option<&str>,
        unsigned: UnsignedHeaders<'_>,
    ) -> Result<CheckedHead<'r>, Reply> {
        let Some((tenants, _)) = &self.tenants else {
            return Ok(head);
        };
        let Some(key) = tenant.filter(|k| !k.is_empty() && k.len() <= MAX_TENANT_KEY_LEN) else {
            tracing::info!(
                delivery_id = unsigned.delivery_id,
                "webhook without a tenant key refused (404)"
            );
            return Err(self.tenant_refused(Reply::UnknownTenant));
        };
        // A cached answer costs no await: the lookup's future (large, with its timeout)
        // is built, boxed, only on a miss, so a request's pipeline stays small.
        let found = match tenants.cached(key) {
            Some(cached) => cached,
            None => match Box::pin(tenants.lookup(key)).await {
                Ok(found) => found,
                Err(error) => {
                    tracing::error!(%error, tenant = key, delivery_id = unsigned.delivery_id, "tenant lookup failed; answered 503 so the sender retries");
                    return Err(self.tenant_refused(match error {
                        LookupError::TimedOut(_) => Reply::TenantLookupTimedOut,
                        LookupError::Busy(_) => Reply::TenantLookupsBusy,
                        _ => Reply::TenantLookupFailed,
                    }));
                }
            },
        };
        match found {
            Some(tenant) => {
                head.tenant = Some(tenant);
                Ok(head)
            }
            None => {
                tracing::info!(
                    tenant = key,
                    delivery_id = unsigned.delivery_id,
                    "webhook for an unknown tenant refused (404)"
                );
                Err(self.tenant_refused(Reply::UnknownTenant))
            }
        }
    }

    /// Reports a tenant refusal (404 or 503) to the observer and returns `reply`. Every
    /// 503 of a lookup (failed, timed out, too many) is observed as
    /// [`Refusal::TenantLookupFailed`]; the log line tells them apart.
    pub(super) fn tenant_refused(&self, reply: Reply) -> Reply {
        if let Some(observer) = &self.observer {
            let refusal = match reply {
                Reply::UnknownTenant => Refusal::UnknownTenant,
                _ => Refusal::TenantLookupFailed,
            };
            observer.outcome(Outcome::Refused(refusal));
        }
        reply
    }

    /// Refuses a declared `Content-Length` over the limit before any byte is read.
    ///
    /// # Errors
    ///
    /// A 413 [`Reply`] when `content_length` is over the limit.
    pub(crate) fn check_content_length(
        &self,
        content_length: Option<u64>,
        unsigned: UnsignedHeaders<'_>,
    ) -> Result<(), Reply> {
        match content_length {
            Some(len) if len > self.body_limit as u64 => Err(self.refuse(
                VerifyError::BodyTooLarge {
                    limit: self.body_limit,
                },
                unsigned,
            )),
            _ => Ok(()),
        }
    }

    /// Logs a refusal found by the adapter itself (the body was too large or could
    /// not be read), reports it to the observer, and turns it into a reply. Every
    /// refusal, the gate's own included, goes through here, so each is reported once.
    pub(crate) fn refuse(&self, error: VerifyError, unsigned: UnsignedHeaders<'_>) -> Reply {
        if let Some(observer) = &self.observer {
            observer.outcome(Outcome::Refused(Refusal::of(&error)));
        }
        tracing::warn!(
            status = error.status(),
            reason = error.reason(),
            delivery_id = unsigned.delivery_id,
            event_type = unsigned.event_type,
            "webhook refused"
        );
        Reply::Refused(error)
    }

    /// Checks what a request's head says, before any byte of its body is read: the
    /// declared length, then the signature header (exactly one, well formed, its
    /// timestamp within the tolerance). An adapter calls this first, and reads the body
    /// only when it passes, so an unauthenticated client cannot make the receiver wait
    /// for or buffer a body (nor answer its `Expect: 100-continue`).
    ///
    /// `signatures` are the values of every signature header (`X-Webhook-Signature`, or
    /// `Stripe-Signature` for [`Scheme::Stripe`]), `content_length`
    /// the declared body length if any. The header is parsed once, here; the returned
    /// [`CheckedHead`] owns the result (no allocation) and goes to
    /// [`admit_checked`](Self::admit_checked) with the body.
    ///
    /// # Errors
    ///
    /// The [`Reply`] to answer with, in this order: 413 for a declared length over the
    /// limit; 400 for no header or more than one; 400 for a malformed one; 401 for a
    /// timestamp outside the tolerance.
    pub(crate) fn check_head<'h>(
        &self,
        signatures: impl IntoIterator<Item = &'h [u8]>,
        content_length: Option<u64>,
        unsigned: UnsignedHeaders<'_>,
    ) -> Result<CheckedHead<'h>, Reply> {
        self.check_content_length(content_length, unsigned)?;
        let mut signatures = signatures.into_iter();
        let header = match (signatures.next(), signatures.next()) {
            (Some(header), None) => header,
            (None, _) => return Err(self.refuse(self.missing_header(), unsigned)),
            (Some(_), Some(_)) => return Err(self.refuse(self.repeated_header(), unsigned)),
        };
        let header = match SignatureHeader::parse(header) {
            Ok(header) => header,
            Err(error) => return Err(self.refuse(error.into(), unsigned)),
        };
        if let Err(error) = self.verifier.check_window(&header) {
            return Err(self.refuse(error, unsigned));
        }
        Ok(CheckedHead {
            signed: Signed::Header(header),
            tenant: None,
        })
    }

    /// [`check_head`](Self::check_head) for any scheme: reads the scheme's headers from
    /// `head` (Mapping.Travel's and Stripe's through `check_head`, the others through
    /// [`Scheme::parse_head`]), then checks the signed timestamp, if the scheme has one.
    ///
    /// # Errors
    ///
    /// As `check_head`: 413, then 400 for a missing, repeated or malformed header, then
    /// 401 for a timestamp outside the tolerance.
    pub(crate) fn check_scheme_head<'r, H: RequestHead>(
        &self,
        head: &'r H,
        content_length: Option<u64>,
        unsigned: UnsignedHeaders<'_>,
    ) -> Result<CheckedHead<'r>, Reply> {
        if self.scheme.is_signature_header_only() {
            return self.check_head(
                head.header_values(self.scheme.signature_header()),
                content_length,
                unsigned,
            );
        }
        self.check_content_length(content_length, unsigned)?;
        let parsed = match self.scheme.parse_head(head) {
            Ok(parsed) => parsed,
            Err(error) => return Err(self.refuse(error, unsigned)),
        };
        if let Some(timestamp) = parsed.timestamp()
            && let Err(error) = self.verifier.check_timestamp(timestamp)
        {
            return Err(self.refuse(error, unsigned));
        }
        Ok(CheckedHead {
            signed: Signed::Scheme(parsed),
            tenant: None,
        })
    }

    /// The refusal of a request without the signature header.
    fn missing_header(&self) -> VerifyError {
        match self.scheme {
            Scheme::Mapping => VerifyError::MissingHeader,
            scheme => VerifyError::MissingSchemeHeader {
                header: scheme.signature_header(),
            },
        }
    }

    /// The refusal of a request with more than one signature header.
    fn repeated_header(&self) -> VerifyError {
        match self.scheme {
            Scheme::Mapping => VerifyError::RepeatedHeader,
            scheme => VerifyError::RepeatedSchemeHeader {
                header: scheme.signature_header(),
            },
        }
    }
}

/// A request whose head passed [`Gate::check_head`] (and, with tenants,
/// [`Gate::check_tenant`]): its signatures are not checked yet, which needs the body.
/// `Debug` shows the timestamp and the number of signatures, never a signature.
#[derive(Debug)]
pub(crate) struct CheckedHead<'r> {
    pub(crate) signed: Signed<'r>,
    /// The tenant [`Gate::check_tenant`] found for the request.
    pub(super) tenant: Option<Tenant>,
}

impl CheckedHead<'_> {
    /// The signed timestamp, for a scheme that has one.
    #[cfg(test)]
    pub(crate) fn timestamp(&self) -> Option<u64> {
        match &self.signed {
            Signed::Header(header) => Some(header.timestamp()),
            Signed::Scheme(head) => head.timestamp(),
        }
    }
}

/// A checked head as its scheme reads it.
#[derive(Debug)]
pub(crate) enum Signed<'r> {
    /// Mapping.Travel's and Stripe's one header, parsed (owned: no borrow of the request).
    Header(SignatureHeader),
    /// Another scheme's headers, borrowed from the request.
    Scheme(SchemeHead<'r>),
}
