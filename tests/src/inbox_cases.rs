//! The cases that apply to an adapter's inbox endpoint (signature, window, limits,
//! duplicates, store down), each written once.
//!
//! The suite builds the [`Gate`] and the [`Inbox`] itself, the inbox on a temporary
//! SQLite file, from an [`InboxSpec`]; the adapter's spawner only mounts the gate's inbox
//! endpoint at [`ROUTE_INBOX`] and at `ROUTE_INBOX/{tenant}` the way its docs say, and
//! serves it on `127.0.0.1:0`. [`inbox_suite!`](crate::inbox_suite) turns the cases into
//! tests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mapping_webhooks::scheme::Scheme;
use mapping_webhooks::{Gate, ManualClock, Secret, Secrets, Tenant, TenantFrom, Tenants};
use mapping_webhooks_inbox::{Inbox, State};

use crate::{
    App, Client, PREVIOUS_SECRET, SECRET, deliver_at_once, envelope, event_id, now, raw_exchange,
    sign,
};

/// Where the spawners mount the inbox endpoint.
pub const ROUTE_INBOX: &str = "/inbox";

/// How the inbox is configured for one case.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct InboxSpec {
    /// A previous secret, accepted during rotation.
    pub previous_secret: Option<&'static str>,
    /// The body limit, if not the default.
    pub body_limit: Option<usize>,
    /// The body read timeout, if not the default.
    pub read_timeout: Option<Duration>,
    /// The clock, if not the system's.
    pub clock: Option<ManualClock>,
    /// Tenants: the key is the path's second segment (`/inbox/{tenant}`).
    pub tenants: Option<Tenants>,
    /// Another signature scheme than Mapping.Travel's, with
    /// [`SCHEME_SECRET`](crate::schemes::SCHEME_SECRET) as its secret.
    pub scheme: Option<Scheme>,
}

/// An inbox on a temporary SQLite file, and the app serving it; the file is removed when
/// dropped.
#[derive(Debug)]
pub struct InboxApp {
    /// The inbox the endpoint stores into.
    pub inbox: Inbox,
    /// The running app.
    pub app: App,
    path: PathBuf,
}

impl Drop for InboxApp {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
    }
}

impl InboxSpec {
    /// Builds the inbox and has `spawn` serve it.
    ///
    /// # Panics
    ///
    /// When the inbox cannot be created.
    pub async fn start(self, spawn: impl AsyncFn(Gate, Inbox) -> App) -> InboxApp {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "mapping-webhooks-inbox-conformance-{}-{}.db",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        // The inbox deduplicates durably on its own: no store in front of it, so
        // concurrent copies are each answered from the database (202 once, 200 after).
        let mut gate = match self.scheme {
            None => Gate::builder().secret(SECRET),
            Some(scheme) => Gate::builder()
                .scheme(scheme)
                .secret(crate::schemes::SCHEME_SECRET),
        }
        .without_dedup();
        if let Some(previous) = self.previous_secret {
            gate = gate.previous_secret(previous);
        }
        if let Some(limit) = self.body_limit {
            gate = gate.body_limit(limit);
        }
        if let Some(timeout) = self.read_timeout {
            gate = gate.read_timeout(timeout);
        }
        let mut builder = Inbox::builder();
        if let Some(clock) = self.clock {
            gate = gate.clock(clock.clone());
            builder = builder.clock(clock);
        }
        if let Some(tenants) = self.tenants {
            gate = gate.tenants(tenants, TenantFrom::PathSegment(1));
        }
        let gate = gate.build().expect("a valid gate");
        let inbox = builder
            .acquire_timeout(Duration::from_secs(2))
            .connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("create the inbox");
        let app = spawn(gate, inbox.clone()).await;
        InboxApp { inbox, app, path }
    }
}

impl InboxApp {
    async fn stored(&self) -> u64 {
        self.inbox
            .counts()
            .await
            .expect("counts")
            .values()
            .sum::<u64>()
    }

    async fn refused(&self, status: u16, headers: &[(&str, &str)], body: Vec<u8>) {
        let answer = Client::new(&self.app)
            .post(ROUTE_INBOX, headers, body)
            .await;
        assert_eq!(answer.status, status, "{answer:?}");
        assert!(!answer.body.is_empty(), "a refusal says why");
        assert_eq!(self.stored().await, 0, "nothing stored");
    }
}

/// Valid → 202 once committed; the stored row holds the exact bytes and header.
pub async fn inbox_valid_delivery_is_stored(spawn: impl AsyncFn(Gate, Inbox) -> App) {
    let app = InboxSpec::default().start(spawn).await;
    let id = event_id("inbox_valid");
    let body = envelope(&id, "del_1");
    let answer = Client::new(&app.app)
        .deliver(ROUTE_INBOX, body.clone())
        .await;
    assert_eq!((answer.status, answer.body.as_str()), (202, "accepted"));
    let stored = app.inbox.find(&id).await.unwrap().expect("stored");
    assert_eq!(stored.body, body, "the very bytes that were sent");
    assert_eq!(stored.info.state, State::Pending);
    assert_eq!(stored.info.delivery_id, "del_1");
    assert!(stored.signature.starts_with("t="));
    let secrets = Secrets::new(Secret::new(SECRET).unwrap());
    app.inbox
        .reverify(stored.info.id, &secrets)
        .await
        .expect("re-verifies");
}

/// The sender's retry of a stored event → 200, stored once.
pub async fn inbox_duplicate_is_200(spawn: impl AsyncFn(Gate, Inbox) -> App) {
    let app = InboxSpec::default().start(spawn).await;
    let client = Client::new(&app.app);
    let id = event_id("inbox_dup");
    assert_eq!(
        client
            .deliver(ROUTE_INBOX, envelope(&id, "d1"))
            .await
            .status,
        202
    );
    let again = client.deliver(ROUTE_INBOX, envelope(&id, "d2")).await;
    assert!(again.is_duplicate(), "{again:?}");
    assert_eq!(app.stored().await, 1);
}

/// Ten copies at once → exactly one 202, the rest 200; one row.
pub async fn inbox_concurrent_copies_are_stored_once(spawn: impl AsyncFn(Gate, Inbox) -> App) {
    let app = InboxSpec::default().start(spawn).await;
    let id = event_id("inbox_concurrent");
    let statuses = deliver_at_once(&[Client::new(&app.app)], ROUTE_INBOX, 10, |i| {
        envelope(&id, &format!("del_{i}"))
    })
    .await;
    assert_eq!(
        statuses.iter().filter(|&&s| s == 202).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        9,
        "{statuses:?}"
    );
    assert_eq!(app.stored().await, 1);
}

/// A changed body, a wrong secret, a stale or future timestamp → 401, nothing stored.
pub async fn inbox_bad_signatures_are_401(spawn: impl AsyncFn(Gate, Inbox) -> App) {
    let app = InboxSpec::default().start(spawn).await;
    let body = envelope(&event_id("inbox_401"), "d");
    let tampered = envelope(&event_id("inbox_401_other"), "d");
    let good = sign(SECRET, &body, now());
    app.refused(401, &[("x-webhook-signature", &good)], tampered)
        .await;
    for header in [
        sign("whsec_wrong_0123456789abcdef0123456789", &body, now()),
        // Far outside the window: on the system clock, a second can pass between
        // signing and checking (the exact edges are tested on a manual clock below).
        sign(SECRET, &body, now() - 3600),
        sign(SECRET, &body, now() + 3600),
    ] {
        app.refused(401, &[("x-webhook-signature", &header)], body.clone())
            .await;
    }
}

/// A missing, malformed or repeated header, or a signed body that is no envelope → 400.
pub async fn inbox_bad_requests_are_400(spawn: impl AsyncFn(Gate, Inbox) -> App) {
    let app = InboxSpec::default().start(spawn).await;
    let body = envelope(&event_id("inbox_400"), "d");
    let good = sign(SECRET, &body, now());
    app.refused(400, &[], body.clone()).await;
    let malformed = format!("t={},v1=not-hex", now());
    app.refused(400, &[("x-webhook-signature", &malformed)], body.clone())
        .await;
    app.refused(
        400,
        &[
            ("x-webhook-signature", &good),
            ("x-webhook-signature", &good),
        ],
        body,
    )
    .await;
    let not_envelope = br#"{"hello":"world"}"#.to_vec();
    let header = sign(SECRET, &not_envelope, now());
    app.refused(400, &[("x-webhook-signature", &header)], not_envelope)
        .await;
}

/// During a rotation the previous secret is accepted, and recorded.
pub async fn inbox_previous_secret_is_accepted(spawn: impl AsyncFn(Gate, Inbox) -> App) {
    let spec = InboxSpec {
        previous_secret: Some(PREVIOUS_SECRET),
        ..InboxSpec::default()
    };
    let app = spec.start(spawn).await;
    let id = event_id("inbox_old");
    let answer = Client::new(&app.app)
        .deliver_signed(ROUTE_INBOX, PREVIOUS_SECRET, envelope(&id, "d"), now())
        .await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let stored = app.inbox.find(&id).await.unwrap().unwrap();
    assert_eq!(stored.info.secret, "previous[0]");
}

/// The window's edges are accepted, one second past them is not.
pub async fn inbox_tolerance_edges_are_inclusive(spawn: impl AsyncFn(Gate, Inbox) -> App) {
    const T: u64 = 1_800_000_000;
    let spec = InboxSpec {
        clock: Some(ManualClock::at_secs(T)),
        ..InboxSpec::default()
    };
    let app = spec.start(spawn).await;
    let client = Client::new(&app.app);
    for (ts, status) in [
        (T - 300, 202),
        (T + 300, 202),
        (T - 301, 401),
        (T + 301, 401),
    ] {
        let answer = client
            .deliver_signed(ROUTE_INBOX, SECRET, envelope(&event_id("edge"), "d"), ts)
            .await;
        assert_eq!(
            answer.status, status,
            "timestamp {ts} vs now {T}: {answer:?}"
        );
    }
    assert_eq!(app.stored().await, 2);
}

/// The body limit: one byte over → 413, at it → 202; a declared length over it → 413
/// before reading; a chunked body passing it → 413.
pub async fn inbox_limits_are_enforced(spawn: impl AsyncFn(Gate, Inbox) -> App) {
    let at = envelope(&event_id("inbox_limit"), "d");
    let spec = InboxSpec {
        body_limit: Some(at.len()),
        ..InboxSpec::default()
    };
    let app = spec.start(spawn).await;
    let client = Client::new(&app.app);
    let mut over = at.clone();
    over.push(b' ');
    assert_eq!(client.deliver(ROUTE_INBOX, over).await.status, 413);
    assert_eq!(app.stored().await, 0);

    let head = format!(
        "POST {ROUTE_INBOX} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         x-webhook-signature: t={},v1={}\r\ncontent-length: 1073741824\r\n\r\n",
        app.app.addr(),
        now(),
        "0".repeat(64)
    );
    assert_eq!(
        raw_exchange(&app.app, head.as_bytes(), None).await,
        Some(413)
    );

    let head = format!(
        "POST {ROUTE_INBOX} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         x-webhook-signature: t={},v1={}\r\ntransfer-encoding: chunked\r\n\r\n",
        app.app.addr(),
        now(),
        "0".repeat(64)
    );
    let chunk = format!("1000\r\n{}\r\n", "x".repeat(4096));
    let more = chunk.repeat(128);
    assert_eq!(
        raw_exchange(&app.app, head.as_bytes(), Some(more.as_bytes())).await,
        Some(413)
    );
    assert_eq!(app.stored().await, 0);
    assert_eq!(client.deliver(ROUTE_INBOX, at).await.status, 202);
}

/// A body that does not arrive within the read timeout → 408.
pub async fn inbox_slow_body_is_408(spawn: impl AsyncFn(Gate, Inbox) -> App) {
    let spec = InboxSpec {
        read_timeout: Some(Duration::from_millis(300)),
        ..InboxSpec::default()
    };
    let app = spec.start(spawn).await;
    let head = format!(
        "POST {ROUTE_INBOX} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         x-webhook-signature: t={},v1={}\r\ncontent-length: 100\r\n\r\n{{\"eventId\"",
        app.app.addr(),
        now(),
        "0".repeat(64)
    );
    let status = tokio::time::timeout(
        Duration::from_secs(30),
        raw_exchange(&app.app, head.as_bytes(), None),
    )
    .await
    .expect("answered after the read timeout");
    assert_eq!(status, Some(408));
    assert_eq!(app.stored().await, 0);
}

/// A bad signature header is refused on the head, before the body is read: answered at
/// once although the body never comes (with a 30 s read timeout).
pub async fn inbox_bad_head_is_refused_before_the_body(spawn: impl AsyncFn(Gate, Inbox) -> App) {
    let spec = InboxSpec {
        read_timeout: Some(Duration::from_secs(30)),
        ..InboxSpec::default()
    };
    let app = spec.start(spawn).await;
    for (signature, status) in [
        (format!("t={},v1=not-hex", now()), 400),
        (format!("t={},v1={}", now() - 3600, "0".repeat(64)), 401),
    ] {
        let head = format!(
            "POST {ROUTE_INBOX} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
             x-webhook-signature: {signature}\r\ncontent-length: 100\r\n\r\n",
            app.app.addr(),
        );
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            raw_exchange(&app.app, head.as_bytes(), None),
        )
        .await
        .expect("answered without waiting for the body");
        assert_eq!(answer, Some(status), "{signature}");
    }
    assert_eq!(app.stored().await, 0);
}

/// The database is gone → 503, so the sender retries.
pub async fn inbox_store_down_is_503(spawn: impl AsyncFn(Gate, Inbox) -> App) {
    let app = InboxSpec::default().start(spawn).await;
    app.inbox.close().await;
    let answer = Client::new(&app.app)
        .deliver(ROUTE_INBOX, envelope(&event_id("inbox_down"), "d"))
        .await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.body.contains("retry later"), "{answer:?}");
}

/// Tenants through the inbox endpoint: each tenant's delivery is verified with its own
/// secret and stored apart, so two tenants' events with one `eventId` are both stored and
/// a tenant's second copy is a duplicate; an unknown tenant is 404, another tenant's
/// secret 401, and neither is stored.
pub async fn inbox_tenants_are_stored_apart(spawn: impl AsyncFn(Gate, Inbox) -> App) {
    let tenants = Tenants::new(|key: String| async move {
        Ok::<_, mapping_webhooks::ResolveError>(match key.as_str() {
            "acme" | "globex" => Some(Tenant::new(
                key.as_str(),
                Secrets::new(Secret::new(format!("{SECRET}_{key}")).unwrap()),
            )),
            _ => None,
        })
    });
    let spec = InboxSpec {
        tenants: Some(tenants),
        ..InboxSpec::default()
    };
    let app = spec.start(spawn).await;
    let client = Client::new(&app.app);
    let id = event_id("inbox_tenants");
    let route = |tenant: &str| format!("{ROUTE_INBOX}/{tenant}");
    for tenant in ["acme", "globex"] {
        let answer = client
            .deliver_signed(
                &route(tenant),
                &format!("{SECRET}_{tenant}"),
                envelope(&id, tenant),
                now(),
            )
            .await;
        assert_eq!(answer.status, 202, "{tenant}: {answer:?}");
    }
    let again = client
        .deliver_signed(
            &route("acme"),
            &format!("{SECRET}_acme"),
            envelope(&id, "again"),
            now(),
        )
        .await;
    assert!(again.is_duplicate(), "{again:?}");
    let unknown = client
        .deliver_signed(&route("initech"), SECRET, envelope(&id, "x"), now())
        .await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    let crossed = client
        .deliver_signed(
            &route("acme"),
            &format!("{SECRET}_globex"),
            envelope(&event_id("inbox_crossed"), "x"),
            now(),
        )
        .await;
    assert_eq!(crossed.status, 401, "{crossed:?}");
    let mut tenants: Vec<String> = app
        .inbox
        .list(State::Pending, 0, 10)
        .await
        .expect("list")
        .into_iter()
        .map(|info| info.tenant.unwrap_or_default())
        .collect();
    tenants.sort();
    assert_eq!(tenants, ["acme", "globex"]);
}

/// Instantiates every case in this module as a `#[tokio::test]` for one adapter's inbox
/// endpoint.
///
/// ```ignore
/// mapping_webhooks_conformance::inbox_suite!(spawn_axum_inbox);
/// ```
#[macro_export]
macro_rules! inbox_suite {
    ($spawn:path) => {
        $crate::inbox_suite!(@cases $spawn;
            inbox_valid_delivery_is_stored,
            inbox_duplicate_is_200,
            inbox_concurrent_copies_are_stored_once,
            inbox_bad_signatures_are_401,
            inbox_bad_requests_are_400,
            inbox_previous_secret_is_accepted,
            inbox_tolerance_edges_are_inclusive,
            inbox_limits_are_enforced,
            inbox_slow_body_is_408,
            inbox_bad_head_is_refused_before_the_body,
            inbox_store_down_is_503,
            inbox_tenants_are_stored_apart,
        );
        $crate::inbox_suite!(@schemes $spawn;
            inbox_each_scheme_is_stored_once_and_refuses_forgeries,
        );
    };
    (@cases $spawn:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::inbox_cases::$case($spawn).await;
            }
        )*
    };
    (@schemes $spawn:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::schemes::$case($spawn).await;
            }
        )*
    };
}
