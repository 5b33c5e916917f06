//! One endpoint, many tenants: `POST /t/{tenant}` behind an adapter built with
//! `Gate::for_tenants`, each tenant with its own secrets from a resolver, cached.
//!
//! [`tenant_suite!`](crate::tenant_suite) instantiates the cases for one adapter;
//! [`conformance_suite!`](crate::conformance_suite) already includes it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::Duration;

use mapping_webhooks::{ResolveError, Secret, Secrets, Tenant, Tenants};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::{
    AppSpec, Client, ROUTE_TENANT_KEY, ROUTE_TENANTS, envelope, event_id, now, raw_exchange, sign,
    wait_for,
};

/// Tenant `acme`'s secret.
pub const ACME_SECRET: &str = "whsec_conformance_tenant_acme_0123456789";
/// Tenant `globex`'s secret.
pub const GLOBEX_SECRET: &str = "whsec_conformance_tenant_globex_012345678";

/// A resolver that knows `acme` and `globex`, fails for `down`, and counts its calls.
/// `acme`'s handle is returned as is, so a case can rotate it. Like a hostname, a key
/// names its tenant whatever its case: `ACME` is `acme`.
fn tenants(acme: Secrets) -> (Tenants, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let tenants = Tenants::new(move |tenant: String| {
        let (counter, acme) = (counter.clone(), acme.clone());
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let id = tenant.to_ascii_lowercase();
            match id.as_str() {
                "acme" => Ok(Some(Tenant::new(id, acme))),
                "globex" => Ok(Some(Tenant::new(
                    id,
                    Secrets::new(Secret::new(GLOBEX_SECRET).unwrap()),
                ))),
                "down" => Err(ResolveError::new("conformance: the database is down")),
                _ => Ok(None),
            }
        }
    });
    (tenants, calls)
}

fn route(tenant: &str) -> String {
    format!("{ROUTE_TENANTS}/{tenant}")
}

/// Each tenant's deliveries verify with its own secret only; the handler is told the
/// tenant; dedup is per tenant (the same `eventId` for two tenants runs twice, a retry
/// once); answers are cached (one lookup per tenant).
pub async fn tenants_have_their_own_secrets_and_dedup(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let (tenants, lookups) = tenants(Secrets::new(Secret::new(ACME_SECRET).unwrap()));
    let spec = AppSpec::new().tenants(tenants);
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let shared = envelope(&event_id("tenant"), "d");
    for (tenant, secret) in [("acme", ACME_SECRET), ("globex", GLOBEX_SECRET)] {
        let answer = client
            .deliver_signed(&route(tenant), secret, shared.clone(), now())
            .await;
        assert_eq!(answer.status, 200, "{tenant}: {answer:?}");
        let seen = probe.seen();
        let verified = seen.last().unwrap().verified.clone().unwrap();
        assert_eq!(verified.tenant.as_deref(), Some(tenant));
    }
    assert_eq!(
        probe.calls(),
        2,
        "the same eventId, two tenants: two events"
    );
    // The retry is acknowledged without running the handler.
    let again = client
        .deliver_signed(&route("acme"), ACME_SECRET, shared, now())
        .await;
    assert!(again.is_duplicate(), "{again:?}");
    assert_eq!(probe.calls(), 2);
    // A tenant's secret does not sign for another.
    let crossed = client
        .deliver_signed(
            &route("globex"),
            ACME_SECRET,
            envelope(&event_id("x"), "d"),
            now(),
        )
        .await;
    assert_eq!(crossed.status, 401, "{crossed:?}");
    assert_eq!(probe.calls(), 2);
    assert_eq!(lookups.load(Ordering::SeqCst), 2, "one lookup per tenant");
}

/// An unknown tenant is answered 404 `not found` before its body is read (the request
/// below never sends one), without naming the tenant; a failed lookup is 503.
pub async fn unknown_tenant_is_404_before_the_body(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let (tenants, lookups) = tenants(Secrets::new(Secret::new(ACME_SECRET).unwrap()));
    let spec = AppSpec::new().tenants(tenants);
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let body = envelope(&event_id("unknown"), "d");
    let signature = sign(ACME_SECRET, &body, now());
    // The head only: a receiver that waited for the body would answer 408 much later.
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         x-webhook-signature: {signature}\r\ncontent-length: {}\r\n\r\n",
        route("nobody_here"),
        app.addr(),
        body.len()
    );
    assert_eq!(raw_exchange(&app, head.as_bytes(), None).await, Some(404));
    let answer = client
        .deliver_signed(&route("nobody_here"), ACME_SECRET, body.clone(), now())
        .await;
    assert_eq!(answer.status, 404);
    assert!(!answer.body.contains("nobody_here"), "{answer:?}");
    let down = client
        .deliver_signed(&route("down"), ACME_SECRET, body, now())
        .await;
    assert_eq!(down.status, 503, "{down:?}");
    assert_eq!(probe.calls(), 0);
    // The unknown tenant was looked up once and cached; the failure was not cached.
    assert_eq!(lookups.load(Ordering::SeqCst), 2);
}

/// A tenant's `Secrets` handle rotated while the app runs applies at once; invalidating
/// a tenant makes the next request look it up again.
pub async fn tenant_secrets_rotate_and_invalidate(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let acme = Secrets::new(Secret::new(ACME_SECRET).unwrap());
    let (tenants, lookups) = tenants(acme.clone());
    let spec = AppSpec::new().tenants(tenants.clone());
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let deliver = async |secret: &str| {
        client
            .deliver_signed(&route("acme"), secret, envelope(&event_id("r"), "d"), now())
            .await
            .status
    };
    assert_eq!(deliver(ACME_SECRET).await, 200);
    let next = "whsec_conformance_tenant_acme_next_01234";
    assert_eq!(deliver(next).await, 401);
    acme.rotate(Secret::new(next).unwrap());
    assert_eq!(deliver(next).await, 200);
    assert_eq!(deliver(ACME_SECRET).await, 200, "the old one, as previous");
    assert_eq!(lookups.load(Ordering::SeqCst), 1);
    tenants.invalidate("acme");
    assert_eq!(deliver(next).await, 200);
    wait_for("a second lookup", || lookups.load(Ordering::SeqCst) == 2).await;
}

/// The adapter's own tenant-key function (`tenant_key`) replaces the path rule.
pub async fn tenant_key_function_is_used(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let (tenants, _) = tenants(Secrets::new(Secret::new(ACME_SECRET).unwrap()));
    let spec = AppSpec::new().tenants(tenants);
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let acme = format!("{ROUTE_TENANT_KEY}/acme");
    let answer = client
        .deliver_signed(&acme, ACME_SECRET, envelope(&event_id("key"), "d"), now())
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = probe.seen();
    let verified = seen.last().unwrap().verified.clone().unwrap();
    assert_eq!(verified.tenant.as_deref(), Some("acme"));
    let nobody = format!("{ROUTE_TENANT_KEY}/nobody");
    let answer = client
        .deliver_signed(&nobody, ACME_SECRET, envelope(&event_id("key"), "d"), now())
        .await;
    assert_eq!(answer.status, 404, "{answer:?}");
}

/// One delivery sent under three spellings of its tenant's key (as a captured delivery
/// replayed to another URL would be) is processed once: dedup is on the id the resolver
/// returns, not on the key as spelled.
pub async fn tenant_spellings_share_one_dedup_namespace(
    spawn: impl AsyncFn(AppSpec) -> crate::App,
) {
    let (tenants, lookups) = tenants(Secrets::new(Secret::new(ACME_SECRET).unwrap()));
    let spec = AppSpec::new().tenants(tenants);
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let delivery = envelope(&event_id("spelling"), "d");
    let mut answers = Vec::new();
    for spelling in ["acme", "ACME", "Acme"] {
        let answer = client
            .deliver_signed(&route(spelling), ACME_SECRET, delivery.clone(), now())
            .await;
        answers.push(answer);
    }
    assert_eq!(
        probe.calls(),
        1,
        "processed {} times under 3 spellings ({answers:?})",
        probe.calls()
    );
    for answer in &answers[1..] {
        assert!(answer.is_duplicate(), "{answer:?}");
    }
    let verified = probe.seen()[0].verified.clone().unwrap();
    assert_eq!(verified.tenant.as_deref(), Some("acme"), "the canonical id");
    assert_eq!(lookups.load(Ordering::SeqCst), 3, "one lookup per spelling");
}

/// A resolver that hangs for `hang*` keys (until `release`, if any), panics for `boom`,
/// and counts its calls.
fn unruly(release: Option<Arc<Notify>>) -> (Tenants, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let tenants = Tenants::new(move |key: String| {
        let (counter, release) = (counter.clone(), release.clone());
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            match key.as_str() {
                "boom" => panic!("conformance: a resolver bug"),
                "acme" => Ok(Some(Tenant::new(
                    "acme",
                    Secrets::new(Secret::new(ACME_SECRET).unwrap()),
                ))),
                _ => match release {
                    Some(release) => {
                        release.notified().await;
                        Ok(None)
                    }
                    None => std::future::pending().await,
                },
            }
        }
    });
    (tenants, calls)
}

/// A resolver that panics, or hangs past the lookup timeout, is answered 503 with a
/// reason and `Retry-After` (not a dropped connection, not a wait forever); the app
/// goes on serving.
pub async fn panicking_and_hanging_lookups_are_503(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let (tenants, _) = unruly(None);
    let tenants = tenants.lookup_timeout(Duration::from_millis(300));
    let spec = AppSpec::new().tenants(tenants.clone());
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let body = envelope(&event_id("unruly"), "d");
    for (key, reason) in [
        ("boom", "secrets lookup unavailable; retry later"),
        ("boom", "secrets lookup unavailable; retry later"),
        ("hang", "secrets lookup timed out; retry later"),
    ] {
        let answer = client
            .deliver_signed(&route(key), ACME_SECRET, body.clone(), now())
            .await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (503, reason),
            "{key}: {answer:?}"
        );
        assert!(answer.retry_after.is_some(), "{key}: {answer:?}");
    }
    let acme = client
        .deliver_signed(&route("acme"), ACME_SECRET, body, now())
        .await;
    assert_eq!(acme.status, 200, "{acme:?}");
    assert_eq!(probe.calls(), 1);
    assert_eq!(tenants.lookups_in_flight(), 0);
}

/// Over the cap on concurrent lookups, a request for another tenant is answered 503
/// with `Retry-After` at once, and a cached tenant is still served.
pub async fn lookups_over_the_cap_are_503_at_once(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let release = Arc::new(Notify::new());
    let (tenants, calls) = unruly(Some(release.clone()));
    let tenants = tenants.max_concurrent_lookups(2);
    let spec = AppSpec::new().tenants(tenants.clone());
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let body = envelope(&event_id("cap"), "d");
    let warm = client
        .deliver_signed(&route("acme"), ACME_SECRET, body.clone(), now())
        .await;
    assert_eq!(warm.status, 200, "{warm:?}");
    let held: Vec<_> = ["hang1", "hang2"]
        .into_iter()
        .map(|key| {
            let (client, body) = (client.clone(), body.clone());
            tokio::spawn(async move {
                client
                    .deliver_signed(&route(key), ACME_SECRET, body, now())
                    .await
            })
        })
        .collect();
    wait_for("two lookups running", || calls.load(Ordering::SeqCst) == 3).await;
    let busy = client
        .deliver_signed(&route("hang3"), ACME_SECRET, body.clone(), now())
        .await;
    assert_eq!(
        (busy.status, busy.body.as_str()),
        (503, "too many secrets lookups at once; retry later"),
        "{busy:?}"
    );
    assert!(busy.retry_after.is_some(), "{busy:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "refused without a lookup");
    let cached = client
        .deliver_signed(
            &route("acme"),
            ACME_SECRET,
            envelope(&event_id("cap"), "d"),
            now(),
        )
        .await;
    assert_eq!(cached.status, 200, "{cached:?}");
    release.notify_waiters();
    for task in held {
        assert_eq!(task.await.unwrap().status, 404);
    }
}

/// Clients that hang up while their tenant is being looked up leave no lookup behind
/// (each one's key is new: nothing else would ever remove it). actix-web drops the
/// request's future when its client goes; hyper keeps it until it ends, which the lookup
/// timeout (1 s here) bounds.
pub async fn hang_ups_during_a_lookup_leave_nothing(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    const CLIENTS: usize = 20;
    let (tenants, calls) = unruly(None);
    let tenants = tenants.lookup_timeout(Duration::from_secs(1));
    let spec = AppSpec::new().tenants(tenants.clone());
    let app = spawn(spec).await;
    let body = envelope(&event_id("gone"), "d");
    for i in 0..CLIENTS {
        let head = format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
             x-webhook-signature: {}\r\ncontent-length: {}\r\n\r\n",
            route(&format!("hang_{i}")),
            app.addr(),
            sign(ACME_SECRET, &body, now()),
            body.len()
        );
        let started = calls.load(Ordering::SeqCst) + 1;
        let mut stream = TcpStream::connect(app.addr()).await.expect("connect");
        stream
            .write_all(head.as_bytes())
            .await
            .expect("send the head");
        wait_for("the lookup", || calls.load(Ordering::SeqCst) >= started).await;
        drop(stream);
    }
    assert_eq!(calls.load(Ordering::SeqCst), CLIENTS);
    let mut left = tenants.lookups_in_flight();
    for _ in 0..1000 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        left = tenants.lookups_in_flight();
    }
    assert_eq!(left, 0, "lookups left after {CLIENTS} clients hung up");
}

/// Instantiates the tenant cases for one adapter (included in
/// [`conformance_suite!`](crate::conformance_suite)).
#[macro_export]
macro_rules! tenant_suite {
    ($spawn:path) => {
        $crate::tenant_suite!(@cases $spawn;
            tenants_have_their_own_secrets_and_dedup,
            unknown_tenant_is_404_before_the_body,
            tenant_secrets_rotate_and_invalidate,
            tenant_key_function_is_used,
            tenant_spellings_share_one_dedup_namespace,
            panicking_and_hanging_lookups_are_503,
            lookups_over_the_cap_are_503_at_once,
            hang_ups_during_a_lookup_leave_nothing,
        );
    };
    (@cases $spawn:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::tenants::$case($spawn).await;
            }
        )*
    };
}
