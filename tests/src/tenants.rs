//! One endpoint, many tenants: `POST /t/{tenant}` behind an adapter built with
//! `for_tenants`, each tenant with its own secrets from a resolver, cached.
//!
//! [`tenant_suite!`](crate::tenant_suite) instantiates the cases for one adapter;
//! [`conformance_suite!`](crate::conformance_suite) already includes it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mapping_webhooks::{ResolveError, Secret, Secrets, Tenants};

use crate::{
    AppSpec, Client, ROUTE_TENANT_KEY, ROUTE_TENANTS, envelope, event_id, now, raw_exchange, sign,
    wait_for,
};

/// Tenant `acme`'s secret.
pub const ACME_SECRET: &str = "whsec_conformance_tenant_acme_0123456789";
/// Tenant `globex`'s secret.
pub const GLOBEX_SECRET: &str = "whsec_conformance_tenant_globex_012345678";

/// A resolver that knows `acme` and `globex`, fails for `down`, and counts its calls.
/// `acme`'s handle is returned as is, so a case can rotate it.
fn tenants(acme: Secrets) -> (Tenants, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let tenants = Tenants::new(move |tenant: String| {
        let (counter, acme) = (counter.clone(), acme.clone());
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            match tenant.as_str() {
                "acme" => Ok(Some(acme)),
                "globex" => Ok(Some(Secrets::new(Secret::new(GLOBEX_SECRET).unwrap()))),
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
