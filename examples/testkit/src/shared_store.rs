//! Two replicas of a receiver, as real processes on two ports, sharing one dedup store
//! in Redis through `REDIS_URL` (one `redis-server`) or `REDIS_CLUSTER_URLS` (a 3-master
//! Redis Cluster), both started by the test: copies of one event sent to both at once
//! run the handler once in all, and every copy ends acknowledged.
//!
//! Without `redis-server` (and `redis-cli` for the cluster) the scenario says it was
//! skipped, unless `MAPPING_WEBHOOKS_REQUIRE_REDIS=1`.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mapping_webhooks::{SIGNATURE_HEADER, Secret, Signer};
use mapping_webhooks_examples::{DEV_SECRET, WEBHOOK_PATH};

use crate::support::{Logged, TempDir, free_port};

#[path = "../../../core/tests/redis_store/server.rs"]
mod redis_server;

#[path = "../../../core/tests/redis_store/cluster_server.rs"]
mod cluster_server;

/// Which shared store the replicas are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shared {
    /// `REDIS_URL`: one `redis-server`.
    Redis,
    /// `REDIS_CLUSTER_URLS`: a Redis Cluster of 3 masters.
    RedisCluster,
}

const COPIES: usize = 20;

/// What differs between receivers: where they take deliveries, and with which secret.
struct Endpoint<'a> {
    /// The path deliveries are posted to.
    path: &'a str,
    /// The secret they are signed with.
    secret: &'a str,
    /// More environment for the receiver.
    env: &'a [(&'a str, &'a str)],
}

/// Starts `binary` on a free port with `var=value` and `endpoint`'s environment (the
/// development secret unless it sets one), and waits (bounded) until it listens.
fn start(binary: &str, var: &str, value: &str, endpoint: &Endpoint<'_>) -> Logged {
    let addr = format!("127.0.0.1:{}", free_port());
    Logged::start(
        Command::new(binary)
            .env_remove("MAPPING_WEBHOOK_SECRET")
            .env_remove("MAPPING_WEBHOOK_SECRET_PREVIOUS")
            .env_remove("MAPPING_WEBHOOK_SECRET_FILE")
            .env_remove("PORT")
            .env_remove("REDIS_URL")
            .env_remove("REDIS_CLUSTER_URLS")
            .env(var, value)
            .envs(endpoint.env.iter().copied()),
        addr,
    )
}

/// Two replicas of `binary` on one shared store: `COPIES` copies of one event, sent to
/// both at once, run the handler once in all (one `204` and one event line); the other
/// copies are acknowledged as duplicates (`200`) or, while the first runs, asked to
/// retry (`409`) and acknowledged on their retry.
pub fn two_replicas_on_one_redis_process_an_event_once(name: &str, binary: &str, shared: Shared) {
    let endpoint = Endpoint {
        path: WEBHOOK_PATH,
        secret: DEV_SECRET,
        env: &[],
    };
    two_replicas(name, binary, shared, &endpoint);
}

/// The same for `tenants-receiver`: two replicas serving one tenant from one tenants
/// file, on `POST /hooks/mapping/acme`.
pub fn two_tenants_replicas_on_one_redis_process_an_event_once(binary: &str, shared: Shared) {
    const ACME: &str = "whsec_Rd7Kq2Vn9Lx4Hc1Zp6Tb3Wm8Fs5Gj0Ya";
    let dir = TempDir::new("tenants-shared");
    let file = dir.path().join("tenants.txt");
    std::fs::write(&file, format!("acme {ACME}\n")).unwrap();
    let file = file.to_string_lossy().into_owned();
    let endpoint = Endpoint {
        path: "/hooks/mapping/acme",
        secret: ACME,
        env: &[("MAPPING_WEBHOOK_TENANTS_FILE", &file)],
    };
    two_replicas("tenants-receiver", binary, shared, &endpoint);
}

fn two_replicas(name: &str, binary: &str, shared: Shared, endpoint: &Endpoint<'_>) {
    let test = format!("{name}: two replicas on {shared:?}");
    // Kept alive until the end: dropping them stops the servers.
    let (_server, _cluster, var, value) = match shared {
        Shared::Redis => {
            let Some(server) = redis_server::RedisServer::start(&test) else {
                return;
            };
            let url = server.url();
            (Some(server), None, "REDIS_URL", url)
        }
        Shared::RedisCluster => {
            let Some(cluster) = cluster_server::RedisCluster::start(&test, 3, 0) else {
                return;
            };
            let urls = cluster.urls().join(",");
            (None, Some(cluster), "REDIS_CLUSTER_URLS", urls)
        }
    };
    let replicas = [
        start(binary, var, &value, endpoint),
        start(binary, var, &value, endpoint),
    ];
    let urls: Vec<String> = replicas
        .iter()
        .map(|r| format!("http://{}{}", r.addr, endpoint.path))
        .collect();
    let event_id = format!(
        "evt_shared_{}_{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let body = format!(
        r#"{{"id":"del_1","eventId":"{event_id}","type":"mapping.completed","apiVersion":"2026-06-01","data":{{"mappingJobId":"job_1","status":"COMPLETED","rowCount":1,"exportFileId":"ef_1"}}}}"#
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let statuses: Vec<Vec<u16>> = runtime.block_on(async {
        let client = reqwest::Client::new();
        let signer = Signer::new(Secret::new(endpoint.secret).unwrap());
        let tasks: Vec<_> = (0..COPIES)
            .map(|copy| {
                let (client, url, body) = (client.clone(), urls[copy % 2].clone(), body.clone());
                let signer = signer.clone();
                tokio::spawn(async move {
                    // A copy is sent again while it is answered 409, as the sender retries.
                    let mut answers = Vec::new();
                    for _ in 0..200 {
                        let status = client
                            .post(&url)
                            .header(SIGNATURE_HEADER, signer.sign_now(body.as_bytes()))
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send()
                            .await
                            .map_or(0, |response| response.status().as_u16());
                        answers.push(status);
                        if status != 409 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                    answers
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for task in tasks {
            statuses.push(task.await.unwrap());
        }
        statuses
    });

    let lines = |replica: &Logged| {
        let stdout = replica.stdout.lock().unwrap();
        stdout
            .iter()
            .filter(|line| line.contains(&event_id))
            .count()
    };
    // The event line is printed before the 204 is sent; give the pipes a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while lines(&replicas[0]) + lines(&replicas[1]) == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(25));
    }
    let finals: Vec<u16> = statuses
        .iter()
        .map(|answers| *answers.last().unwrap())
        .collect();
    let processed = finals.iter().filter(|&&status| status == 204).count();
    // Only what went wrong in their logs: the dedup messages are many.
    let problems = |replica: &Logged| -> Vec<String> {
        let stderr = replica.stderr.lock().unwrap();
        stderr
            .iter()
            .filter(|line| line.contains("WARN") || line.contains("ERROR"))
            .take(5)
            .cloned()
            .collect()
    };
    let report = format!(
        "{test}: answers per copy {statuses:?}; event lines {} + {}; warnings {:?} {:?}",
        lines(&replicas[0]),
        lines(&replicas[1]),
        problems(&replicas[0]),
        problems(&replicas[1]),
    );
    assert!(
        finals.iter().all(|&status| status == 200 || status == 204),
        "{report}"
    );
    assert_eq!(processed, 1, "{report}");
    assert_eq!(lines(&replicas[0]) + lines(&replicas[1]), 1, "{report}");
    // Both replicas answered (a replica left out would prove nothing).
    assert!(
        (0..2).all(|r| statuses
            .iter()
            .skip(r)
            .step_by(2)
            .any(|a| a.contains(&200) || a.contains(&204))),
        "{report}"
    );
}
