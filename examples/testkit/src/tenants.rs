//! The tenants receiver (`tenants-receiver`) as a real process: each tenant's
//! deliveries verify with its own secret and are deduplicated per tenant; an unknown
//! tenant is 404 and a tenant added to the file is served after `SIGHUP`, without a
//! restart.

use std::net::TcpListener;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mapping_webhooks::{Secret, Signer};
use mapping_webhooks_examples::WEBHOOK_PATH;

use crate::support::{Logged as Receiver, TempDir};

const ACME: &str = "whsec_Tn4xQ8vLm2Rk7Wc1Yp5Hd9Fs3Gj6Bz0Ea";
const GLOBEX: &str = "whsec_Vh6nK1pZr8Xe3Ld7Qm2Wc5Tb9Gy4Sf0Ju";
const INITECH: &str = "whsec_Pq3Wz8Lk1Nv6Rx2Hc7Ym4Bt9Ds5Gf0Ae";
const HOOLI: &str = "whsec_Hk2Lm7Qp4Rs9Tv1Wx6Yz3Ab8Cd5Ef0Gh";
const WAIT: Duration = Duration::from_secs(30);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Two tenants from the file, each with its own secret and its own dedup; an unknown
/// tenant is 404 until it is added to the file and the receiver gets `SIGHUP`; each
/// event line names its tenant.
pub fn one_endpoint_serves_many_tenants(binary: &str) {
    let dir = TempDir::new("tenants");
    let file = dir.path().join("tenants.txt");
    std::fs::write(
        &file,
        format!("# tenant secret previous...\nacme {ACME}\n\nglobex   {GLOBEX}\nhooli {HOOLI}\n"),
    )
    .unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let receiver = Receiver::start(
        Command::new(binary).env("MAPPING_WEBHOOK_TENANTS_FILE", &file),
        addr,
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let deliver = |tenant: &str, secret: &str, event_id: &str| {
        let body = format!(
            r#"{{"id":"del_1","eventId":"{event_id}","type":"mapping.completed","apiVersion":"2026-06-01","data":{{}}}}"#
        );
        let header = Signer::new(Secret::new(secret).unwrap()).sign(body.as_bytes(), now());
        let url = format!("http://{}{WEBHOOK_PATH}/{tenant}", receiver.addr);
        runtime.block_on(async {
            let response = client
                .post(url)
                .header("x-webhook-signature", header)
                .body(body)
                .send()
                .await
                .expect("an answer");
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };

    // Each tenant with its own secret; the same eventId is one event per tenant.
    assert_eq!(deliver("acme", ACME, "evt_same").0, 204);
    assert_eq!(deliver("globex", GLOBEX, "evt_same").0, 204);
    assert_eq!(deliver("acme", ACME, "evt_same").0, 200, "a retry");
    assert_eq!(
        deliver("globex", ACME, "evt_other").0,
        401,
        "acme's secret for globex"
    );
    let (status, text) = deliver("initech", INITECH, "evt_new");
    assert_eq!((status, text.as_str()), (404, "not found"));

    // The file is read once at start (and on SIGHUP), not on each lookup: with the file
    // gone, a tenant never asked for yet is still served, and a made-up one is 404.
    let moved = dir.path().join("tenants.moved");
    std::fs::rename(&file, &moved).unwrap();
    let (status, text) = deliver("hooli", HOOLI, "evt_hooli");
    assert_eq!(status, 204, "hooli, with the file gone: {text}");
    for i in 0..50 {
        let (status, text) = deliver(&format!("made_up_{i}"), HOOLI, "evt_x");
        assert_eq!((status, text.as_str()), (404, "not found"), "made_up_{i}");
    }
    std::fs::rename(&moved, &file).unwrap();

    // A tenant added to the file is served once the cache is told (SIGHUP).
    let mut tenants = std::fs::read_to_string(&file).unwrap();
    tenants.push_str(&format!("initech {INITECH}\n"));
    std::fs::write(&file, tenants).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &receiver.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = Instant::now() + WAIT;
    while !receiver
        .stderr
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("forgot the cached tenants"))
    {
        assert!(Instant::now() < deadline, "SIGHUP not seen");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(deliver("initech", INITECH, "evt_new").0, 204);

    // One line per processed event, naming its tenant.
    let deadline = Instant::now() + WAIT;
    while receiver.stdout.lock().unwrap().len() < 4 {
        assert!(Instant::now() < deadline, "missing event lines");
        thread::sleep(Duration::from_millis(10));
    }
    let lines: Vec<serde_json::Value> = receiver
        .stdout
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let tenants: Vec<&str> = lines
        .iter()
        .map(|l| l["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, ["acme", "globex", "hooli", "initech"]);
    drop(receiver);
    drop(dir);
}
