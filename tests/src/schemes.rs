//! The conformance cases for every other sender's [`Scheme`], over real HTTP: each case
//! runs once per scheme against the adapter's app, built from a spec whose gate has
//! the scheme (`AppSpec::scheme`); and the inbox endpoints' case, whose inbox is built
//! with the scheme (`InboxSpec::scheme`).

use mapping_webhooks::scheme::Scheme;
use mapping_webhooks::{MatchedSecret, Secret, Secrets};

use crate::{AppSpec, Client, ROUTE_HOOKS, now};

/// `whsec_` and base64: usable by every scheme (decoded by Standard Webhooks and Svix).
pub const SCHEME_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The previous secret of the rotation case.
pub const SCHEME_PREVIOUS: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// Nobody's secret.
const STRANGER: &str = "whsec_c3RyYW5nZXJfc3RyYW5nZXJfc3RyYW5nZXI=";

/// Every scheme but Mapping.Travel's (which the rest of the suite covers).
const SCHEMES: [Scheme; 6] = [
    Scheme::Standard,
    Scheme::Svix,
    Scheme::Stripe,
    Scheme::GitHub,
    Scheme::Shopify,
    Scheme::Slack,
];

/// A body the scheme's sender could send, with `id` where the scheme reads it.
fn body(scheme: Scheme, id: &str) -> Vec<u8> {
    match scheme {
        Scheme::Stripe => {
            format!(r#"{{"id":"{id}","object":"event","type":"invoice.paid","data":{{"n":4}}}}"#)
        }
        Scheme::Slack => {
            format!(r#"{{"token":"t","event_id":"{id}","type":"event_callback","n":4}}"#)
        }
        _ => format!(r#"{{"type":"invoice.paid","data":{{"ref":"{id}","n":4}}}}"#),
    }
    .into_bytes()
}

fn headers(scheme: Scheme, secret: &str, id: &str, t: u64, body: &[u8]) -> Vec<(String, String)> {
    scheme
        .sign(&Secret::new(secret).unwrap(), id, t, body)
        .unwrap()
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

fn unique(scheme: Scheme, what: &str) -> String {
    format!("{}_{what}_{}", scheme.name(), crate::event_id("s"))
}

async fn post(client: &Client, headers: &[(String, String)], body: Vec<u8>) -> crate::Answer {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    client.post(ROUTE_HOOKS, &headers, body).await
}

fn spec(scheme: Scheme) -> AppSpec {
    AppSpec::new()
        .scheme(scheme)
        .secrets(Secrets::new(Secret::new(SCHEME_SECRET).unwrap()))
}

/// Valid → 2xx once, with the raw bytes and the scheme's id; the same event again → 200
/// as a duplicate; a changed body or another secret → 401; none ran the handler twice.
pub async fn each_scheme_processes_once_and_refuses_forgeries(
    spawn: impl AsyncFn(AppSpec) -> crate::App,
) {
    for scheme in SCHEMES {
        let spec = spec(scheme);
        let probe = spec.probe.clone();
        let app = spawn(spec).await;
        let client = Client::new(&app);
        let id = unique(scheme, "valid");
        let b = body(scheme, &id);
        let answer = post(
            &client,
            &headers(scheme, SCHEME_SECRET, &id, now(), &b),
            b.clone(),
        )
        .await;
        assert_eq!(answer.status, 200, "{scheme}: {answer:?}");
        let seen = probe.seen();
        assert_eq!(seen.len(), 1, "{scheme}");
        assert_eq!(seen[0].body, b, "{scheme}: the handler gets the raw bytes");
        let verified = seen[0].verified.clone().expect("the verified metadata");
        assert_eq!(
            (verified.scheme, verified.event_id.as_str()),
            (scheme, id.as_str())
        );

        let again = post(
            &client,
            &headers(scheme, SCHEME_SECRET, &id, now(), &b),
            b.clone(),
        )
        .await;
        assert_eq!(
            (again.status, again.duplicate),
            (200, true),
            "{scheme}: {again:?}"
        );

        let id = unique(scheme, "tampered");
        let b = body(scheme, &id);
        let signed = headers(scheme, SCHEME_SECRET, &id, now(), &b);
        let tampered = String::from_utf8(b.clone())
            .unwrap()
            .replace(":4", ":5")
            .into_bytes();
        let answer = post(&client, &signed, tampered).await;
        assert_eq!(answer.status, 401, "{scheme}: {answer:?}");
        let forged = headers(scheme, STRANGER, &id, now(), &b);
        let answer = post(&client, &forged, b.clone()).await;
        assert_eq!(answer.status, 401, "{scheme}: {answer:?}");
        assert!(
            !answer.body.contains(SCHEME_SECRET),
            "{scheme}: leaked the secret"
        );
        assert_eq!(probe.calls(), 1, "{scheme}: refusals never run the handler");
        // Still new: the refusals claimed nothing.
        let answer = post(&client, &signed, b).await;
        assert_eq!(answer.status, 200, "{scheme}: {answer:?}");
    }
}

/// A timestamp an hour old or ahead → 401 for the schemes that sign one; GitHub and
/// Shopify sign none, so there is nothing to be stale (documented: dedup is their only
/// replay guard).
pub async fn each_scheme_s_window_is_enforced(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    for scheme in SCHEMES {
        let spec = spec(scheme);
        let probe = spec.probe.clone();
        let app = spawn(spec).await;
        let client = Client::new(&app);
        for (what, t) in [("stale", now() - 3600), ("future", now() + 3600)] {
            let id = unique(scheme, what);
            let b = body(scheme, &id);
            let answer = post(&client, &headers(scheme, SCHEME_SECRET, &id, t, &b), b).await;
            let expected = if scheme.has_timestamp() { 401 } else { 200 };
            assert_eq!(answer.status, expected, "{scheme} {what}: {answer:?}");
        }
        let expected = if scheme.has_timestamp() { 0 } else { 2 };
        assert_eq!(probe.calls(), expected, "{scheme}");
    }
}

/// Each of the scheme's headers missing, the signature header malformed or sent
/// twice → 400 before the handler, naming what is wrong.
pub async fn each_scheme_s_bad_headers_are_400(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    for scheme in SCHEMES {
        let spec = spec(scheme);
        let probe = spec.probe.clone();
        let app = spawn(spec).await;
        let client = Client::new(&app);
        let id = unique(scheme, "headers");
        let b = body(scheme, &id);
        let signed = headers(scheme, SCHEME_SECRET, &id, now(), &b);
        for (name, _) in &signed {
            let without: Vec<_> = signed.iter().filter(|(n, _)| n != name).cloned().collect();
            let answer = post(&client, &without, b.clone()).await;
            assert_eq!(answer.status, 400, "{scheme} without {name}: {answer:?}");
            assert!(answer.body.contains("missing"), "{scheme}: {answer:?}");
        }
        let signature = scheme.signature_header();
        let malformed: Vec<_> = signed
            .iter()
            .map(|(n, v)| {
                (
                    n.clone(),
                    if n == signature {
                        "garbage".into()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect();
        let answer = post(&client, &malformed, b.clone()).await;
        assert_eq!(answer.status, 400, "{scheme} malformed: {answer:?}");
        let mut twice = signed.clone();
        twice.push(signed.iter().find(|(n, _)| n == signature).unwrap().clone());
        let answer = post(&client, &twice, b.clone()).await;
        assert_eq!(answer.status, 400, "{scheme} repeated: {answer:?}");
        assert_eq!(probe.calls(), 0, "{scheme}");
    }
}

/// During a rotation: a delivery signed with the previous secret is processed (and says
/// so), and where the scheme carries several signatures (Standard Webhooks, Svix,
/// Stripe), one valid among strangers' is enough.
pub async fn each_scheme_accepts_several_signatures_during_a_rotation(
    spawn: impl AsyncFn(AppSpec) -> crate::App,
) {
    for scheme in SCHEMES {
        let spec = AppSpec::new()
            .scheme(scheme)
            .secrets(Secrets::with_previous(
                Secret::new(SCHEME_SECRET).unwrap(),
                [Secret::new(SCHEME_PREVIOUS).unwrap()],
            ));
        let probe = spec.probe.clone();
        let app = spawn(spec).await;
        let client = Client::new(&app);
        let id = unique(scheme, "previous");
        let b = body(scheme, &id);
        let answer = post(
            &client,
            &headers(scheme, SCHEME_PREVIOUS, &id, now(), &b),
            b,
        )
        .await;
        assert_eq!(answer.status, 200, "{scheme}: {answer:?}");
        let verified = probe.seen()[0].verified.clone().unwrap();
        assert_eq!(verified.secret, MatchedSecret::Previous(0), "{scheme}");

        let id = unique(scheme, "several");
        let b = body(scheme, &id);
        let t = now();
        let ours = headers(scheme, SCHEME_SECRET, &id, t, &b);
        let theirs = headers(scheme, STRANGER, &id, t, &b);
        let signature = scheme.signature_header();
        let value =
            |h: &[(String, String)]| h.iter().find(|(n, _)| n == signature).unwrap().1.clone();
        let combined = match scheme {
            Scheme::Standard | Scheme::Svix => format!("{} {}", value(&theirs), value(&ours)),
            Scheme::Stripe => {
                let v1 = |s: String| s.split("v1=").nth(1).unwrap().to_owned();
                format!("t={t},v1={},v1={}", v1(value(&theirs)), v1(value(&ours)))
            }
            _ => continue,
        };
        let several: Vec<_> = ours
            .iter()
            .map(|(n, v)| {
                (
                    n.clone(),
                    if n == signature {
                        combined.clone()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect();
        let answer = post(&client, &several, b).await;
        assert_eq!(answer.status, 200, "{scheme}: {answer:?}");
        assert_eq!(probe.calls(), 2, "{scheme}");
    }
}

/// The inbox endpoint, for every scheme (Mapping.Travel's included): valid → 202 and
/// stored with the scheme, its id and the exact bytes, and the stored row verifies again
/// ([`Inbox::reverify`](mapping_webhooks_inbox::Inbox::reverify)) as that scheme's event;
/// the same event again → 200, still one row; a changed body → 401, no signature
/// header → 400, neither stored.
pub async fn inbox_each_scheme_is_stored_once_and_refuses_forgeries(
    spawn: impl AsyncFn(mapping_webhooks::Gate, mapping_webhooks_inbox::Inbox) -> crate::App,
) {
    use crate::inbox_cases::{InboxSpec, ROUTE_INBOX};
    for scheme in Scheme::ALL {
        let spec = InboxSpec {
            scheme: Some(scheme),
            ..InboxSpec::default()
        };
        let app = spec.start(&spawn).await;
        let client = Client::new(&app.app);
        let id = unique(scheme, "inbox");
        let b = match scheme {
            Scheme::Mapping => crate::envelope(&id, "del_1"),
            _ => body(scheme, &id),
        };
        let h = headers(scheme, SCHEME_SECRET, &id, now(), &b);
        let send = async |headers: &[(String, String)], body: Vec<u8>| {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            client.post(ROUTE_INBOX, &headers, body).await
        };
        let answer = send(&h, b.clone()).await;
        assert_eq!(answer.status, 202, "{scheme}: {answer:?}");
        let stored = app.inbox.find(&id).await.unwrap().expect("stored");
        assert_eq!(stored.body, b, "{scheme}: the very bytes that were sent");
        assert_eq!(stored.info.scheme, scheme);
        let secrets = Secrets::new(Secret::new(SCHEME_SECRET).unwrap());
        let verified = app
            .inbox
            .reverify(stored.info.id, &secrets)
            .await
            .unwrap_or_else(|e| panic!("{scheme}: {e}"));
        assert_eq!(
            (verified.scheme, verified.event_id.as_str()),
            (scheme, id.as_str())
        );
        let stranger = Secrets::new(Secret::new(STRANGER).unwrap());
        assert!(
            app.inbox.reverify(stored.info.id, &stranger).await.is_err(),
            "{scheme}: another secret does not verify the stored row"
        );

        let again = send(&h, b.clone()).await;
        assert_eq!(again.status, 200, "{scheme}: {again:?}");

        let mut tampered = b.clone();
        tampered.push(b' ');
        let forged = send(&h, tampered).await;
        assert_eq!(forged.status, 401, "{scheme}: {forged:?}");

        let unsigned: Vec<(String, String)> = h
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case(scheme.signature_header()))
            .cloned()
            .collect();
        let missing = send(&unsigned, b.clone()).await;
        assert_eq!(missing.status, 400, "{scheme}: {missing:?}");
        assert!(!missing.body.is_empty(), "{scheme}: a refusal says why");

        let counts = app.inbox.counts().await.unwrap();
        assert_eq!(
            counts.values().sum::<u64>(),
            1,
            "{scheme}: one row, {counts:?}"
        );
    }
}

/// Runs the scheme cases against one adapter: see [`crate::conformance_suite!`].
#[macro_export]
macro_rules! scheme_suite {
    ($spawn:path) => {
        $crate::scheme_suite!(@cases $spawn;
            each_scheme_processes_once_and_refuses_forgeries,
            each_scheme_s_window_is_enforced,
            each_scheme_s_bad_headers_are_400,
            each_scheme_accepts_several_signatures_during_a_rotation,
        );
    };
    (@cases $spawn:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::schemes::$case($spawn).await;
            }
        )*
    };
}
