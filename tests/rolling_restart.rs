//! A rolling restart of a two-node cluster (Redis broker, one PostgreSQL store) under a steady
//! stream of persisted publishes: each node in turn gets SIGTERM, must exit 0, and comes back.
//! Every event a publisher saw acknowledged (HTTP 200) must be in the store afterwards; a
//! publish that failed may be missing (the publisher knows it failed and would retry).
//!
//! Real processes, real signals: the binary under test, not an in-process server.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const REDIS: &str = "redis://127.0.0.1:6379";

struct Node {
    child: Child,
    base: String,
    port: u16,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Cluster {
    database_url: String,
    namespace: String,
    app_id: String,
}

impl Cluster {
    async fn start_node(&self, name: &str, port: u16) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pushi"))
            .args([
                "serve",
                "--port",
                &port.to_string(),
                "--database-url",
                &self.database_url,
                "--cluster",
                REDIS,
                "--node-id",
                name,
            ])
            .env("PUSHI_APP_ID", &self.app_id)
            .env("PUSHI_APP_KEY", format!("key-{}", self.app_id))
            .env("PUSHI_APP_SECRET", format!("secret-{}", self.app_id))
            .env("PUSHI_CLUSTER_NAMESPACE", &self.namespace)
            .env("PUSHI_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("pushi starts");
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..300 {
            if let Ok(r) = reqwest::get(format!("{base}/health/ready")).await
                && r.status().is_success()
            {
                return Node { child, base, port };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("node {name} did not become ready");
    }
}

/// SIGTERM, then the exit status (within the shutdown deadline).
async fn terminate(mut node: Node) -> (std::process::ExitStatus, u16) {
    let pid = node.child.id() as libc::pid_t;
    // SAFETY: sending a signal to a child process this test spawned and still owns.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    for _ in 0..300 {
        if let Ok(Some(status)) = node.child.try_wait() {
            return (status, node.port);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("node did not exit within 15 s of SIGTERM");
}

async fn login(http: &reqwest::Client, base: &str, app_id: &str) -> String {
    let reply: Value = http
        .get(format!("{base}/login"))
        .query(&[
            ("app_id", app_id.to_owned()),
            ("app_key", format!("key-{app_id}")),
            ("app_secret", format!("secret-{app_id}")),
        ])
        .send()
        .await
        .expect("login answers")
        .json()
        .await
        .expect("JSON");
    reply["token"].as_str().expect("a token").to_owned()
}

/// Publishes `seq` (persisted, the Pushi default) to whichever node answers first; true if a
/// node acknowledged it.
async fn publish(http: &reqwest::Client, bases: &[String], sid: &str, seq: u32) -> bool {
    for base in bases {
        let sent = http
            .post(format!("{base}/events"))
            .query(&[("sid", sid)])
            .json(&json!({"channel": "orders", "event": "placed", "data": {"seq": seq}}))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if let Ok(response) = sent
            && response.status().is_success()
        {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn a_rolling_restart_loses_no_acknowledged_event() {
    use sqlx::Connection;
    pushi::install_crypto_provider();
    let base = std::env::var("PUSHI_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let unique = format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    let schema = format!("rolling_{unique}");
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .expect("PostgreSQL reachable");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .expect("schema created");
    let cluster = Cluster {
        database_url: format!("{base}?options=-c%20search_path%3D{schema}"),
        namespace: format!("rolling-{unique}"),
        app_id: "77".into(),
    };

    let (pa, pb) = (free_port(), free_port());
    let a = cluster.start_node("rolling-a", pa).await;
    let b = cluster.start_node("rolling-b", pb).await;
    let bases = vec![a.base.clone(), b.base.clone()];
    let http = reqwest::Client::new();
    let sid = login(&http, &a.base, &cluster.app_id).await;

    // A publisher that never stops during the restarts, alternating its first choice of node.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let publisher = {
        let http = http.clone();
        let sid = sid.clone();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut seq = 0u32;
            while !*stop_rx.borrow() && seq < 900 {
                let mut order = bases.clone();
                order.rotate_left((seq % 2) as usize);
                if publish(&http, &order, &sid, seq).await {
                    acknowledged.push(seq);
                }
                seq += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (seq, acknowledged)
        })
    };

    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, port) = terminate(a).await;
    assert_eq!(status.code(), Some(0), "node a exits 0 on SIGTERM");
    let a = cluster.start_node("rolling-a", port).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, port) = terminate(b).await;
    assert_eq!(status.code(), Some(0), "node b exits 0 on SIGTERM");
    let b = cluster.start_node("rolling-b", port).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop_tx.send(true);
    let (sent, acknowledged) = publisher.await.expect("publisher finished");
    assert!(
        acknowledged.len() > 10,
        "the publisher kept publishing ({} of {sent} acknowledged)",
        acknowledged.len()
    );

    // Every acknowledged event is in the store, whichever node took it.
    let listing: Value = http
        .get(format!("{}/events", b.base))
        .query(&[("sid", sid.as_str()), ("count", "1000")])
        .send()
        .await
        .expect("listing answers")
        .json()
        .await
        .expect("JSON");
    let stored: std::collections::HashSet<u64> = listing["events"]
        .as_array()
        .expect("events")
        .iter()
        // Pushi's record: `data` holds the message, whose own `data` is the event's text.
        .filter_map(|e| match &e["data"]["data"] {
            Value::String(text) => serde_json::from_str::<Value>(text).ok()?["seq"].as_u64(),
            data => data["seq"].as_u64(),
        })
        .collect();
    let lost: Vec<u32> = acknowledged
        .iter()
        .copied()
        .filter(|seq| !stored.contains(&u64::from(*seq)))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    drop((a, b));
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut admin)
        .await;
}
