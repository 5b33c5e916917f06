//! Secrets and computed signatures never leave the process: not in logs at any level,
//! not in `Debug` or `Display` of any value a user can print.
//!
//! A hand-written `tracing` subscriber records every event and span field at TRACE
//! level while a gate is driven through every outcome; then the captured text, and the
//! `Debug`/`Display` of every error, reply, verifier, gate and signer met on the way, is
//! searched for the secrets, for every piece of them longer than four characters, and
//! for every signature the verifier computed.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mapping_webhooks::adapter::RequestHead;
use mapping_webhooks::{
    Admission, Begin, Claim, ConfigError, DedupStore, Gate, HeaderError, ManualClock,
    MatchedSecret, OnStoreError, Reply, Secret, SignatureHeader, SignedDelivery, Signer,
    StoreError, UnsignedHeaders,
};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber, span};

// Random-looking, so no five-character piece of them occurs in a log line by chance.
const CURRENT: &str = "whsec_Qz7pK2mVx9LrT4nW8bYc3HfJ6dGsE1uA";
const PREVIOUS: &str = "whsec_oL5eNq8XwR2tZj4HbM7cV1kYpD9fGu3S";
/// The secret a running gate's `Secrets` handle is rotated to.
const ROTATED: &str = "whsec_Bm3TxW9qLc6VzR1nHe8KpY4jDa7FgS2u";
/// The part of every secret that is public: the dashboard shows it, and so does `Debug`.
const PUBLIC_PREFIX: &str = "whsec_";
const NOW: u64 = 1_717_250_400;
const TOLERANCE: u64 = 300;

/// Records every event and span field, as text.
#[derive(Clone, Default)]
struct Capture {
    text: Arc<Mutex<String>>,
    next_span: Arc<AtomicU64>,
}

impl Capture {
    fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    fn write(&self, header: fmt::Arguments<'_>, fields: impl FnOnce(&mut dyn Visit)) {
        let mut text = self.text.lock().unwrap();
        text.write_fmt(header).unwrap();
        fields(&mut Fields(&mut text));
        text.push('\n');
    }
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        write!(self.0, " {}={value:?}", field.name()).unwrap();
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        write!(self.0, " {}={value}", field.name()).unwrap();
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        write!(self.0, " {}={value} ({value:?})", field.name()).unwrap();
        let mut source = value.source();
        while let Some(cause) = source {
            write!(self.0, " caused by {cause} ({cause:?})").unwrap();
            source = cause.source();
        }
    }
}

impl Subscriber for Capture {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::always()
    }

    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }

    fn new_span(&self, span: &span::Attributes<'_>) -> span::Id {
        let meta = span.metadata();
        self.write(
            format_args!("SPAN {} {} {}", meta.level(), meta.target(), meta.name()),
            |v| span.record(v),
        );
        span::Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _: &span::Id, values: &span::Record<'_>) {
        self.write(format_args!("RECORD"), |v| values.record(v));
    }

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        self.write(format_args!("{} {}", meta.level(), meta.target()), |v| {
            event.record(v);
        });
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

/// A store that can be told to fail at each step, around a real in-memory protocol.
#[derive(Debug, Default)]
struct Flaky {
    inner: mapping_webhooks::MemoryStore,
    fail_begin: bool,
    fail_complete: bool,
    fail_abandon: bool,
}

impl DedupStore for Flaky {
    async fn begin(&self, key: &str) -> Result<Begin, StoreError> {
        if self.fail_begin {
            return Err(StoreError::backend("connection refused"));
        }
        self.inner.begin(key).await
    }

    async fn complete(&self, key: &str, claim: Claim) -> Result<(), StoreError> {
        if self.fail_complete {
            return Err(StoreError::backend("connection reset"));
        }
        self.inner.complete(key, claim).await
    }

    async fn abandon(&self, key: &str, claim: Claim) -> Result<(), StoreError> {
        if self.fail_abandon {
            return Err(StoreError::Timeout(std::time::Duration::from_millis(250)));
        }
        self.inner.abandon(key, claim).await
    }
}

/// Everything printed along the way, and every signature the verifier computed.
#[derive(Default)]
struct Seen {
    printed: Vec<String>,
    signatures: BTreeSet<String>,
}

impl Seen {
    fn print(&mut self, value: &(impl fmt::Debug + ?Sized)) {
        self.printed.push(format!("{value:?}"));
        self.printed.push(format!("{value:#?}"));
    }

    fn show(&mut self, value: &(impl fmt::Debug + fmt::Display + ?Sized)) {
        self.print(value);
        self.printed.push(value.to_string());
    }

    fn reply(&mut self, reply: &Reply) {
        self.print(reply);
        self.printed.push(reply.to_json());
        self.printed.push(reply.reason().to_owned());
        if let Some(error) = reply.error() {
            self.show(error);
        }
    }

    /// Signs like the sender, and remembers what the verifier will compute for this
    /// body and timestamp with each configured secret.
    fn sign(&mut self, secret: &str, body: &[u8], t: u64) -> String {
        for configured in [CURRENT, PREVIOUS] {
            let expected = Signer::new(Secret::new(configured).unwrap()).signature(body, t);
            self.signatures.insert(hex(&expected));
        }
        let signer = Signer::new(Secret::new(secret).unwrap());
        self.print(&signer);
        signer.sign(body, t)
    }

    async fn admit<D: DedupStore + fmt::Debug>(
        &mut self,
        gate: &Gate<D>,
        headers: &[&str],
        body: &[u8],
    ) -> Admission<D> {
        let unsigned = UnsignedHeaders {
            delivery_id: Some("del_hygiene"),
            event_type: Some("mapping.completed"),
        };
        let admission = gate
            .admit(headers.iter().map(|h| h.as_bytes()), unsigned, body)
            .await;
        self.print(&admission);
        if let Admission::Reply(reply) = &admission {
            self.reply(reply);
        }
        admission
    }

    /// Admits a request that must be refused, and checks it was, with `status`.
    async fn refused<D: DedupStore + fmt::Debug>(
        &mut self,
        gate: &Gate<D>,
        headers: &[&str],
        body: &[u8],
        status: u16,
    ) {
        match self.admit(gate, headers, body).await {
            Admission::Reply(reply) => assert_eq!(reply.status(), status, "{reply:?}"),
            Admission::Process { verified, .. } => panic!("processed {verified:?}"),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn body(event_id: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"del_hygiene","eventId":"{event_id}","type":"mapping.completed","data":{{}}}}"#
    )
    .into_bytes()
}

fn builder<D: DedupStore>(store: D) -> mapping_webhooks::GateBuilder<D> {
    Gate::builder()
        .secret(CURRENT)
        .previous_secret(PREVIOUS)
        .clock(ManualClock::at_secs(NOW))
        .dedup(store)
}

fn gate<D: DedupStore>(store: D) -> Gate<D> {
    builder(store).build().unwrap()
}

/// A request head as an adapter would pass it: a signature header, a declared length,
/// a path.
struct Head<'a> {
    signature: &'a str,
    content_length: Option<u64>,
    path: &'a str,
}

impl RequestHead for Head<'_> {
    fn header_values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        (name == mapping_webhooks::SIGNATURE_HEADER)
            .then_some(self.signature.as_bytes())
            .into_iter()
    }
    fn path(&self) -> &str {
        self.path
    }
    fn host(&self) -> Option<&str> {
        None
    }
    fn content_length(&self) -> Option<u64> {
        self.content_length
    }
}

/// Drives a gate through every outcome, printing everything it returns.
async fn every_outcome(seen: &mut Seen) {
    let memory = gate(mapping_webhooks::MemoryStore::new());
    seen.print(&memory);
    seen.print(memory.verifier());

    // Processed, then acknowledged as a duplicate.
    let b = body("evt_ok");
    let h = seen.sign(CURRENT, &b, NOW);
    let Admission::Process { verified, ticket } = seen.admit(&memory, &[&h], &b).await else {
        panic!("a valid request was refused");
    };
    assert_eq!(verified.secret, MatchedSecret::Current);
    seen.print(&verified);
    seen.show(&verified.secret);
    seen.print(&ticket);
    ticket.finish(200).await;
    seen.refused(&memory, &[&h], &b, 200).await;

    // Signed with the previous secret.
    let b = body("evt_previous");
    let h = seen.sign(PREVIOUS, &b, NOW);
    let Admission::Process { verified, ticket } = seen.admit(&memory, &[&h], &b).await else {
        panic!("the previous secret was refused");
    };
    seen.show(&verified.secret);
    ticket.finish(204).await;

    // In flight, then the handler fails, then a dropped ticket.
    let b = body("evt_inflight");
    let h = seen.sign(CURRENT, &b, NOW);
    let Admission::Process { ticket, .. } = seen.admit(&memory, &[&h], &b).await else {
        panic!("a valid request was refused");
    };
    seen.refused(&memory, &[&h], &b, 409).await;
    ticket.finish(500).await;
    let Admission::Process { ticket, .. } = seen.admit(&memory, &[&h], &b).await else {
        panic!("a failed event was not retryable");
    };
    drop(ticket);
    // The drop frees the claim from a spawned task: poll until the retry is processed.
    let mut freed = false;
    for _ in 0..100 {
        tokio::task::yield_now().await;
        if let Admission::Process { ticket, .. } = seen.admit(&memory, &[&h], &b).await {
            ticket.finish(200).await;
            freed = true;
            break;
        }
    }
    assert!(freed, "a dropped ticket did not free its claim");

    // Header refusals: none, two, malformed (including a confused sender that puts the
    // secret itself in the header).
    let b = body("evt_refused");
    let h = seen.sign(CURRENT, &b, NOW);
    seen.refused(&memory, &[], &b, 400).await;
    seen.refused(&memory, &[&h, &h], &b, 400).await;
    let secret_as_signature = format!("t={NOW},v1={CURRENT}");
    let secret_as_hex = format!("t={NOW},v1={}", hex(CURRENT.as_bytes()));
    for malformed in [
        "",
        "garbage",
        CURRENT,
        &secret_as_signature,
        &secret_as_hex,
        &format!(
            "t=1,{}",
            vec![format!("v1={}", "ab".repeat(32)); 9].join(",")
        ),
        &format!("{h},x={}", "a".repeat(2000)),
    ] {
        seen.refused(&memory, &[malformed], &b, 400).await;
    }

    // Outside the window either way, with otherwise correct signatures.
    let h = seen.sign(CURRENT, &b, NOW - TOLERANCE - 1);
    seen.refused(&memory, &[&h], &b, 401).await;
    let h = seen.sign(CURRENT, &b, NOW + TOLERANCE + 1);
    seen.refused(&memory, &[&h], &b, 401).await;

    // Mismatches: another secret, and the right secret over another body.
    let h = seen.sign("whsec_someone_else_entirely_0000", &b, NOW);
    seen.refused(&memory, &[&h], &b, 401).await;
    let other = body("evt_other");
    let h = seen.sign(CURRENT, &other, NOW);
    seen.refused(&memory, &[&h], &b, 401).await;
    // The expected signature, one digit off.
    let mut h = seen.sign(CURRENT, &b, NOW).into_bytes();
    let last = h.len() - 1;
    h[last] = if h[last] == b'0' { b'1' } else { b'0' };
    let h = String::from_utf8(h).unwrap();
    seen.refused(&memory, &[&h], &b, 401).await;

    // Correctly signed bodies that are not envelopes.
    for not_envelope in [
        &b"not json"[..],
        br#"{"eventId":42,"type":"x"}"#,
        b"\xff\xfe",
    ] {
        let h = seen.sign(CURRENT, not_envelope, NOW);
        seen.refused(&memory, &[&h], not_envelope, 400).await;
    }

    // The pipeline's refusals: oversize (declared or read) and unreadable bodies.
    let limit = memory.body_limit();
    let b = body("evt_pipeline");
    let h = seen.sign(CURRENT, &b, NOW);
    let oversize = Head {
        signature: &h,
        content_length: Some(limit as u64 + 1),
        path: "/",
    };
    let Err(reply) = memory.intake(&oversize).await else {
        panic!("an oversize body was let through");
    };
    assert_eq!(reply.status(), 413);
    seen.reply(&reply);
    let head = Head {
        signature: &h,
        content_length: None,
        path: "/",
    };
    let mut intake = memory.intake(&head).await.expect("the head passes");
    seen.print(&intake);
    let Err(reply) = intake.push(bytes::Bytes::from(vec![b'x'; limit + 1])) else {
        panic!("an oversize body was let through");
    };
    assert_eq!(reply.status(), 413);
    seen.reply(&reply);
    for timed_out in [true, false] {
        let intake = memory.intake(&head).await.expect("the head passes");
        seen.reply(&intake.body_failed(timed_out));
    }

    // A broken store, under both policies, and failures to complete or abandon.
    let b = body("evt_store");
    let h = seen.sign(CURRENT, &b, NOW);
    let down = gate(Flaky {
        fail_begin: true,
        ..Flaky::default()
    });
    seen.print(&down);
    seen.refused(&down, &[&h], &b, 503).await;
    let through = builder(Flaky {
        fail_begin: true,
        ..Flaky::default()
    })
    .on_store_error(OnStoreError::PassThrough)
    .build()
    .unwrap();
    let Admission::Process { ticket, .. } = seen.admit(&through, &[&h], &b).await else {
        panic!("pass-through did not process");
    };
    assert!(!ticket.is_claimed());
    ticket.finish(200).await;
    let half = gate(Flaky {
        fail_complete: true,
        fail_abandon: true,
        ..Flaky::default()
    });
    for status in [200, 500] {
        let b = body(&format!("evt_half_{status}"));
        let h = seen.sign(CURRENT, &b, NOW);
        let Admission::Process { ticket, .. } = seen.admit(&half, &[&h], &b).await else {
            panic!("a valid request was refused");
        };
        ticket.finish(status).await;
    }
    let b = body("evt_half_dropped");
    let h = seen.sign(CURRENT, &b, NOW);
    let Admission::Process { ticket, .. } = seen.admit(&half, &[&h], &b).await else {
        panic!("a valid request was refused");
    };
    drop(ticket);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }

    // The configuration and parse errors a user may print.
    seen.show(&Secret::new("  ").unwrap_err());
    seen.show(
        &Gate::builder()
            .secret(CURRENT)
            .body_limit(0)
            .build()
            .unwrap_err(),
    );
    seen.show(&Gate::builder().build().unwrap_err());
    seen.print(&Gate::builder().secret(CURRENT).previous_secret(PREVIOUS));
    seen.show(&ConfigError::EmptySecret);
    seen.show(&StoreError::backend("connection refused"));
    seen.show(&HeaderError::TooManySignatures);
    let h = seen.sign(CURRENT, &b, NOW);
    seen.print(&SignatureHeader::parse(&h).unwrap());
    seen.print(&Secret::new(CURRENT).unwrap());
    seen.print(&Secret::try_from(PREVIOUS.to_owned()).unwrap());
    // A test delivery, before and after it is signed.
    let delivery = SignedDelivery::from_body("{}", CURRENT).signed_at(NOW);
    seen.print(&delivery);
    seen.print(&delivery.headers().collect::<Vec<_>>());

    // Changing the secrets of the running gate logs, and shows, masked secrets only.
    let secrets = memory.secrets().clone();
    secrets.rotate(Secret::new(ROTATED).unwrap());
    seen.print(&secrets);
    let b = body("evt_rotated");
    let h = seen.sign(ROTATED, &b, NOW);
    let Admission::Process { ticket, .. } = seen.admit(&memory, &[&h], &b).await else {
        panic!("the rotated secret was refused");
    };
    ticket.finish(204).await;
    secrets.set(
        Secret::new(CURRENT).unwrap(),
        [
            Secret::new(ROTATED).unwrap(),
            Secret::new(PREVIOUS).unwrap(),
        ],
    );
    seen.print(&secrets);
    seen.print(&secrets.masked());
    seen.print(&memory);
    assert!(secrets.remove_previous(&Secret::new(ROTATED).unwrap()));
    // Replaced with deadlines, as a reloaded secrets file does.
    secrets.replace(
        Secret::new(CURRENT).unwrap(),
        [(
            Secret::new(PREVIOUS).unwrap(),
            mapping_webhooks::Expiry::At(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW + 60),
            ),
        )],
    );
    seen.print(&secrets);

    // Many tenants: a known one, an unknown one, a failed lookup.
    let tenants = mapping_webhooks::Tenants::new(|tenant: String| async move {
        match tenant.as_str() {
            "acme" => Ok(Some(mapping_webhooks::Tenant::new(
                "acme",
                mapping_webhooks::Secrets::new(Secret::new(ROTATED)?),
            ))),
            "down" => Err(mapping_webhooks::ResolveError::new("connection refused")),
            _ => Ok(None),
        }
    });
    let gate = Gate::builder()
        .tenants(tenants, mapping_webhooks::TenantFrom::PathSegment(0))
        .clock(ManualClock::at_secs(NOW))
        .build()
        .unwrap();
    seen.print(&gate);
    for (tenant, secret) in [("acme", ROTATED), ("nobody", ROTATED), ("down", CURRENT)] {
        let b = body(&format!("evt_tenant_{tenant}"));
        let h = seen.sign(secret, &b, NOW);
        let path = format!("/{tenant}");
        let head = Head {
            signature: &h,
            content_length: None,
            path: &path,
        };
        match gate.intake(&head).await {
            Ok(mut intake) => {
                seen.print(&intake);
                intake.push(bytes::Bytes::from(b.clone())).unwrap();
                match intake.admit().await {
                    Ok(admitted) => {
                        seen.print(&admitted);
                        admitted.ticket.finish(204).await;
                    }
                    Err(reply) => panic!("acme refused: {}", reply.reason()),
                }
            }
            Err(reply) => seen.reply(&reply),
        }
    }
}

/// Every piece of `secret` longer than four characters that is not only its public
/// prefix.
fn secret_pieces(secret: &str) -> Vec<&str> {
    (0..=secret.len() - 5)
        .map(|start| &secret[start..start + 5])
        .filter(|piece| !PUBLIC_PREFIX.contains(piece))
        .collect()
}

#[test]
fn no_secret_or_signature_in_logs_debug_or_display() {
    let capture = Capture::default();
    let mut seen = Seen::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(capture.clone(), || {
        runtime.block_on(every_outcome(&mut seen));
    });
    let logs = capture.text();

    // The capture saw every kind of outcome, so the search below means something.
    for expected in [
        "webhook refused",
        "missing X-Webhook-Signature header",
        "more than one X-Webhook-Signature header",
        "signature header",
        "signature timestamp is too old",
        "signature timestamp is in the future",
        "signature does not match",
        "not a webhook envelope",
        "body is larger than the limit",
        "body was not received in time",
        "already processed",
        "signed with a previous secret",
        "being processed",
        "handler failed",
        "did not finish",
        "dedup store failed; answered 503",
        "running the handler without deduplication",
        "could not mark a processed webhook as done",
        "could not free a dedup claim",
        "del_hygiene",
        "webhook secret rotated",
        "webhook secrets set",
        "webhook secrets replaced",
        "unknown tenant",
        "tenant lookup failed",
    ] {
        assert!(
            logs.contains(expected),
            "no log line with {expected:?} in:\n{logs}"
        );
    }
    assert!(seen.printed.len() > 100, "{}", seen.printed.len());
    assert!(seen.signatures.len() > 20, "{}", seen.signatures.len());

    let mut forbidden: Vec<String> = Vec::new();
    for secret in [CURRENT, PREVIOUS, ROTATED] {
        forbidden.push(secret.to_owned());
        forbidden.push(hex(secret.as_bytes()));
        forbidden.extend(secret_pieces(secret).into_iter().map(str::to_owned));
    }
    for signature in &seen.signatures {
        forbidden.push(signature.clone());
        forbidden.push(signature.to_uppercase());
        // Half a signature is as bad as all of it.
        forbidden.push(signature[..32].to_owned());
        forbidden.push(signature[32..].to_owned());
    }
    for (place, text) in
        std::iter::once(("logs", &logs)).chain(seen.printed.iter().map(|p| ("Debug/Display", p)))
    {
        for needle in &forbidden {
            assert!(
                !text.contains(needle.as_str()),
                "{place} leak {needle:?}:\n{text}"
            );
        }
    }
}

#[test]
fn masked_secrets_keep_only_the_public_prefix_and_four_characters() {
    for secret in [CURRENT, PREVIOUS] {
        let shown = format!("{:?}", Secret::new(secret).unwrap());
        assert_eq!(
            shown,
            format!("Secret(whsec_••••{})", &secret[secret.len() - 4..])
        );
        for piece in secret_pieces(secret) {
            assert!(!shown.contains(piece), "{shown} shows {piece}");
        }
    }
}

#[test]
fn key_material_is_zeroized_on_drop() {
    // A compile-time check, so dropping a feature that zeroizes fails the build of this
    // test. The secret's bytes live in a `Zeroizing<Vec<u8>>`; the keyed HMAC states
    // (which are as good as the key) live in SHA-256 cores, zeroized on drop only with
    // `sha2`'s `zeroize` feature; the MAC's block buffer and computed MACs with `hmac`'s.
    fn zeroized_on_drop<T: sha2::digest::zeroize::ZeroizeOnDrop>() {}
    zeroized_on_drop::<zeroize::Zeroizing<Vec<u8>>>();
    zeroized_on_drop::<sha2::block_api::Sha256VarCore>();
    zeroized_on_drop::<sha2::digest::block_api::Buffer<hmac::block_api::HmacCore<sha2::Sha256>>>();
    zeroized_on_drop::<sha2::digest::CtOutput<hmac::Hmac<sha2::Sha256>>>();
}
