//! Secrets changed while the server runs, through the shared [`Secrets`] handle the app
//! built the adapter with: no restart, no rebuilt router, no lost dedup record.
//!
//! [`rotation_suite!`](crate::rotation_suite) instantiates the cases for one adapter;
//! [`conformance_suite!`](crate::conformance_suite) already includes it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use mapping_webhooks::{MatchedSecret, Secret, Secrets};

use crate::{AppSpec, Client, ROUTE_HOOKS, SECRET, envelope, event_id, now, sign, wait_for};

/// The secret the rotation cases rotate to.
pub const NEXT_SECRET: &str = "whsec_conformance_next_0123456789abcdef";

fn secret(s: &str) -> Secret {
    Secret::new(s).expect("test secret")
}

/// The header the sender sends during its rotation window: one `v1` per secret.
fn signed_with_both(body: &[u8], timestamp: u64) -> String {
    let old = sign(SECRET, body, timestamp);
    let new = sign(NEXT_SECRET, body, timestamp);
    let new_v1 = new.split_once(",v1=").expect("a v1 value").1;
    format!("{old},v1={new_v1}")
}

/// The secret is rotated while deliveries flow concurrently (signed with both secrets,
/// as the sender does during its window, and with the old one only, as a retry signed
/// before it): none is refused, each event runs the handler once, a delivery signed
/// with only the new secret is accepted by the very next request, an event processed
/// before the rotation stays processed, and removing the old secret refuses it.
pub async fn secrets_rotate_while_requests_flow(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let secrets = Secrets::new(secret(SECRET));
    let spec = AppSpec::new().secrets(secrets.clone());
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);

    let early = envelope(&event_id("early"), "del_early");
    let answer = client.deliver(ROUTE_HOOKS, early.clone()).await;
    assert_eq!(answer.status, 200, "{answer:?}");

    // Two streams of distinct events across the change: one signed with both secrets,
    // one with the old secret only.
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let flows: Vec<_> = [true, false]
        .into_iter()
        .map(|both| {
            let (client, sent, stop) = (client.clone(), sent.clone(), stop.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::SeqCst) && statuses.len() < 10_000 {
                    let body = envelope(&event_id("flow"), "del_flow");
                    let t = now();
                    let header = if both {
                        signed_with_both(&body, t)
                    } else {
                        sign(SECRET, &body, t)
                    };
                    let headers = [("x-webhook-signature", header.as_str())];
                    statuses.push(client.post(ROUTE_HOOKS, &headers, body).await.status);
                    sent.fetch_add(1, Ordering::SeqCst);
                }
                statuses
            })
        })
        .collect();

    wait_for("deliveries before the rotation", || {
        sent.load(Ordering::SeqCst) >= 20
    })
    .await;
    let old_only = |tag| envelope(&event_id(tag), "del_old");
    assert_eq!(
        client
            .deliver_signed(ROUTE_HOOKS, NEXT_SECRET, old_only("too_soon"), now())
            .await
            .status,
        401,
        "the new secret is not accepted before the rotation"
    );

    secrets.rotate(secret(NEXT_SECRET));
    let mark = sent.load(Ordering::SeqCst);

    // The very next request sees the new secret.
    let answer = client
        .deliver_signed(ROUTE_HOOKS, NEXT_SECRET, old_only("new_only"), now())
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    wait_for("deliveries after the rotation", || {
        sent.load(Ordering::SeqCst) >= mark + 20
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut flowed = 0;
    for flow in flows {
        let statuses = flow.await.expect("the flow does not panic");
        assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
        flowed += statuses.len();
    }

    // Every event ran the handler exactly once: early, the flows, new_only.
    let seen = probe.seen();
    assert_eq!(seen.len(), flowed + 2);
    let mut ids: Vec<&str> = seen
        .iter()
        .map(|s| s.verified.as_ref().unwrap().event_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), seen.len(), "an event ran twice");
    // Both secrets matched during the flow: old-only requests as the previous secret.
    assert!(
        seen.iter()
            .any(|s| s.verified.as_ref().unwrap().secret == MatchedSecret::Previous(0))
    );

    // The sender's retry of the early event, now signed with the new secret: still a
    // duplicate, the rotation did not touch the dedup store.
    let again = client
        .deliver_signed(ROUTE_HOOKS, NEXT_SECRET, early, now())
        .await;
    assert!(again.is_duplicate(), "{again:?}");
    assert_eq!(probe.calls(), flowed + 2);

    // The rotation ends: the old secret is refused from the next request on.
    assert!(secrets.remove_previous(&secret(SECRET)));
    let answer = client
        .deliver_signed(ROUTE_HOOKS, SECRET, old_only("removed"), now())
        .await;
    assert_eq!(answer.status, 401, "{answer:?}");
}

/// `set` replaces the secrets in one step, as a reloaded secrets file does, and the
/// handler is told which one matched.
pub async fn secrets_set_replaces_them_at_once(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let secrets = Secrets::new(secret(SECRET));
    let spec = AppSpec::new().secrets(secrets.clone());
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    secrets.set(secret(NEXT_SECRET), [secret(SECRET)]);
    for (key, matched) in [
        (NEXT_SECRET, MatchedSecret::Current),
        (SECRET, MatchedSecret::Previous(0)),
    ] {
        let answer = client
            .deliver_signed(ROUTE_HOOKS, key, envelope(&event_id("set"), "d"), now())
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let seen = probe.seen();
        assert_eq!(
            seen.last().unwrap().verified.as_ref().unwrap().secret,
            matched
        );
    }
    secrets.set(secret(NEXT_SECRET), []);
    let answer = client
        .deliver_signed(ROUTE_HOOKS, SECRET, envelope(&event_id("set"), "d"), now())
        .await;
    assert_eq!(answer.status, 401, "{answer:?}");
}

/// Instantiates the rotation cases for one adapter (included in
/// [`conformance_suite!`](crate::conformance_suite)).
#[macro_export]
macro_rules! rotation_suite {
    ($spawn:path) => {
        $crate::rotation_suite!(@cases $spawn;
            secrets_rotate_while_requests_flow,
            secrets_set_replaces_them_at_once,
        );
    };
    (@cases $spawn:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::rotation::$case($spawn).await;
            }
        )*
    };
}
