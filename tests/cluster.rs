//! Several real nodes against the real Redis (127.0.0.1:6379) and NATS (127.0.0.1:4222), each
//! case run on both. Nodes are in-process servers (each with its own hub, as separate
//! processes would have) except where a node must die by `kill -9`; broker outages use private
//! Redis and NATS servers started by the test, so the shared ones are never disturbed.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{TestServer, parse_data};
use pushi::cluster::{ClusterConfig, ClusterView};
use serde_json::{Value, json};

const REDIS: &str = "redis://127.0.0.1:6379";
const NATS: &str = "nats://127.0.0.1:4222";

fn namespace(test: &str) -> String {
    format!("{test}-{}-{}", std::process::id(), uuid_suffix())
}

fn uuid_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{nanos:x}")
}

fn cluster_config(url: &str, ns: &str, node: &str) -> ClusterConfig {
    let mut c = ClusterConfig::new(url.to_owned());
    c.namespace = ns.to_owned();
    c.node_id = node.to_owned();
    c.heartbeat = Duration::from_millis(200);
    c.node_timeout = Duration::from_secs(3);
    c
}

/// `n` nodes of one cluster, waiting until every node sees all the others.
async fn nodes(url: &str, ns: &str, n: usize) -> Vec<TestServer> {
    nodes_with(url, ns, n, |_| {}).await
}

/// [`nodes`], each node's configuration adjusted by `adjust` first.
async fn nodes_with(
    url: &str,
    ns: &str,
    n: usize,
    adjust: fn(&mut pushi::config::Config),
) -> Vec<TestServer> {
    let mut out = Vec::new();
    for i in 0..n {
        let config = cluster_config(url, ns, &format!("node-{i}"));
        out.push(
            TestServer::start_with(move |c| {
                adjust(c);
                c.cluster = Some(config);
            })
            .await,
        );
    }
    for _ in 0..100 {
        if out.iter().all(|s| {
            s.running()
                .cluster
                .as_ref()
                .is_some_and(|c| c.peers().len() == n - 1)
        }) {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nodes did not see each other");
}

/// Polls `check` until it holds (replication is asynchronous).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

macro_rules! both_brokers {
    ($($case:ident),* $(,)?) => {
        mod redis {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::REDIS, &super::namespace(stringify!($case))).await;
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::NATS, &super::namespace(stringify!($case))).await;
                }
            )*
        }
    };
}

both_brokers!(
    publishes_reach_every_node_once_with_exclusion,
    client_events_cross_nodes_without_echo,
    presence_is_one_member_per_user_cluster_wide,
    queries_answer_for_the_whole_cluster,
    terminate_and_server_to_user_reach_every_node,
    cache_channels_share_their_last_event,
    subscription_counts_are_cluster_wide,
    watchlists_see_users_on_every_node,
    a_killed_node_is_forgotten_within_the_bound,
    the_node_recovers_when_the_broker_returns,
);

async fn publishes_reach_every_node_once_with_exclusion(url: &str, ns: &str) {
    let n = nodes(url, ns, 3).await;
    let mut b = n[1].connect().await;
    let mut c = n[2].connect().await;
    let mut c2 = n[2].connect().await;
    b.subscribe("news").await;
    c.subscribe("news").await;
    c2.subscribe("news").await;
    eventually("subscriptions replicated", || async {
        n[0].running()
            .hub
            .state(&n[0].app.clone().into())
            .channel_stats("news")
            .map(|s| s.subscription_count)
            == Some(3)
    })
    .await;
    let path = format!("/apps/{}/events", n[0].app.id);
    let (status, _) = n[0]
        .api("POST", &path, &[], Some(&json!({"name": "e", "channel": "news", "data": "hello", "socket_id": c2.socket_id})))
        .await;
    assert_eq!(status, 200);
    assert_eq!(b.recv_event("e").await["data"], "hello");
    assert_eq!(c.recv_event("e").await["data"], "hello");
    b.expect_silence(300).await;
    c.expect_silence(100).await;
    c2.expect_silence(100).await;
}

async fn client_events_cross_nodes_without_echo(url: &str, ns: &str) {
    let n = nodes(url, ns, 2).await;
    let mut a = n[0].connect().await;
    let mut b = n[1].connect().await;
    a.subscribe_signed(&n[0], "private-chat").await;
    b.subscribe_signed(&n[1], "private-chat").await;
    eventually("both subscribed", || async {
        n[0].running()
            .hub
            .state(&n[0].app.clone().into())
            .channel_stats("private-chat")
            .map(|s| s.subscription_count)
            == Some(2)
    })
    .await;
    a.send(json!({"event": "client-typing", "channel": "private-chat", "data": {"who": "a"}}))
        .await;
    assert_eq!(
        b.recv_event("client-typing").await["data"],
        json!({"who": "a"})
    );
    a.expect_silence(300).await;
}

async fn presence_is_one_member_per_user_cluster_wide(url: &str, ns: &str) {
    let n = nodes(url, ns, 2).await;
    let mut alice = n[0].connect().await;
    alice
        .join_presence(&n[0], "presence-room", "alice", json!({"name": "A"}))
        .await;
    eventually("alice replicated", || async {
        users(&n[1], "presence-room").await == json!([{"id": "alice"}])
    })
    .await;

    // Bob joins on the other node: he sees alice, alice sees him once.
    let mut bob = n[1].connect().await;
    let joined = bob
        .join_presence(&n[1], "presence-room", "bob", json!({"name": "B"}))
        .await;
    let data = parse_data(&joined);
    assert_eq!(data["presence"]["count"], 2, "{data}");
    assert_eq!(data["presence"]["hash"]["alice"]["name"], "A");
    let added = alice.recv_event("pusher_internal:member_added").await;
    assert_eq!(parse_data(&added)["user_id"], "bob");

    // Alice's second socket, on node 1: still one member, nobody is told.
    let mut alice2 = n[1].connect().await;
    alice2
        .join_presence(&n[1], "presence-room", "alice", json!({"name": "A"}))
        .await;
    bob.expect_silence(400).await;
    for node in &n {
        eventually("two users from every node", || async {
            users(node, "presence-room").await.as_array().map(Vec::len) == Some(2)
        })
        .await;
        let path = format!("/apps/{}/channels/presence-room", node.app.id);
        let (_, info) = node
            .api(
                "GET",
                &path,
                &[("info", "user_count,subscription_count")],
                None,
            )
            .await;
        assert_eq!(
            info,
            json!({"occupied": true, "user_count": 2, "subscription_count": 3})
        );
    }

    // Alice's first socket leaves: she is still there (node 1). Her last leaves: removed once.
    drop(alice);
    bob.expect_silence(400).await;
    drop(alice2);
    let removed = bob.recv_event("pusher_internal:member_removed").await;
    assert_eq!(parse_data(&removed)["user_id"], "alice");
    bob.expect_silence(300).await;
}

async fn users(node: &TestServer, channel: &str) -> Value {
    let path = format!("/apps/{}/channels/{channel}/users", node.app.id);
    node.api("GET", &path, &[], None).await.1["users"].clone()
}

async fn queries_answer_for_the_whole_cluster(url: &str, ns: &str) {
    let n = nodes(url, ns, 3).await;
    let mut a = n[0].connect().await;
    let mut b = n[1].connect().await;
    a.subscribe("only-on-0").await;
    b.subscribe("only-on-1").await;
    b.subscribe("shared").await;
    a.subscribe("shared").await;
    let path = format!("/apps/{}/channels", n[2].app.id);
    eventually("channel list from a third node", || async {
        let (_, list) = n[2]
            .api("GET", &path, &[("info", "subscription_count")], None)
            .await;
        list == json!({"channels": {
            "only-on-0": {"subscription_count": 1},
            "only-on-1": {"subscription_count": 1},
            "shared": {"subscription_count": 2},
        }})
    })
    .await;
    drop(a);
    eventually("a leaver's channels disappear everywhere", || async {
        let (_, list) = n[2].api("GET", &path, &[], None).await;
        list == json!({"channels": {"only-on-1": {}, "shared": {}}})
    })
    .await;
}

async fn terminate_and_server_to_user_reach_every_node(url: &str, ns: &str) {
    let n = nodes(url, ns, 2).await;
    let mut u = n[1].connect().await;
    u.signin(&n[1], &json!({"id": "user-9"})).await;
    u.subscribe("#server-to-user-user-9").await;
    eventually("subscription replicated", || async {
        n[0].running()
            .hub
            .state(&n[0].app.clone().into())
            .channel_stats("#server-to-user-user-9")
            .is_some()
    })
    .await;
    n[0].trigger("#server-to-user-user-9", "note", "from node 0")
        .await;
    assert_eq!(u.recv_event("note").await["data"], "from node 0");
    let path = format!("/apps/{}/users/user-9/terminate_connections", n[0].app.id);
    let (status, _) = n[0].api("POST", &path, &[], Some(&json!({}))).await;
    assert_eq!(status, 200);
    assert_eq!(u.expect_close().await, Some(4009));
}

async fn cache_channels_share_their_last_event(url: &str, ns: &str) {
    let n = nodes(url, ns, 2).await;
    // A node with a subscriber to the app keeps the app's state; the cache lives there.
    let mut keeper = n[1].connect().await;
    keeper.subscribe("cache-other").await;
    n[0].trigger("cache-price", "price", "42").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut late = n[1].connect().await;
    late.subscribe("cache-price").await;
    let replay = late.recv().await;
    assert_eq!(
        (replay["event"].clone(), replay["data"].clone()),
        (json!("price"), json!("42"))
    );
}

/// A pushi process, killed with SIGKILL on drop if still running.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_node(url: &str, ns: &str, node: &str, port: u16, app: &pushi::app::App) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_pushi"))
        .args([
            "serve",
            "--port",
            &port.to_string(),
            "--database-url",
            "sqlite::memory:",
            "--cluster",
            url,
            "--node-id",
            node,
        ])
        .env("PUSHI_APP_ID", &app.id)
        .env("PUSHI_APP_KEY", &app.key)
        .env("PUSHI_APP_SECRET", &app.secret)
        .env("PUSHI_CLUSTER_NAMESPACE", ns)
        .env("PUSHI_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("pushi starts");
    Process(child)
}

/// Reads `pusher_internal:subscription_count` events until one carries `expected`.
async fn count_reaches(client: &mut common::Client, expected: u64) {
    loop {
        let frame = client
            .recv_event("pusher_internal:subscription_count")
            .await;
        if parse_data(&frame)["subscription_count"] == expected {
            return;
        }
    }
}

async fn subscription_counts_are_cluster_wide(url: &str, ns: &str) {
    let n = nodes_with(url, ns, 2, |c| {
        c.static_apps[0].settings.subscription_count = true
    })
    .await;
    let mut a = n[0].connect().await;
    a.subscribe("counted").await;
    count_reaches(&mut a, 1).await;
    let mut b = n[1].connect().await;
    b.subscribe("counted").await;
    // Each node tells its own subscribers the cluster-wide count.
    count_reaches(&mut b, 2).await;
    count_reaches(&mut a, 2).await;
    drop(b);
    count_reaches(&mut a, 1).await;
}

/// The next watchlist event: its name and user ids.
async fn watchlist_event(client: &mut common::Client) -> (String, Value) {
    let frame = client.recv_event("pusher_internal:watchlist_events").await;
    let event = parse_data(&frame)["events"][0].clone();
    (
        event["name"].as_str().unwrap_or_default().to_owned(),
        event["user_ids"].clone(),
    )
}

async fn watchlists_see_users_on_every_node(url: &str, ns: &str) {
    let n = nodes(url, ns, 2).await;
    let mut watcher = n[0].connect().await;
    watcher
        .signin(&n[0], &json!({"id": "w", "watchlist": ["friend"]}))
        .await;

    // The friend comes online on the other node.
    let mut friend_b = n[1].connect().await;
    friend_b.signin(&n[1], &json!({"id": "friend"})).await;
    assert_eq!(
        watchlist_event(&mut watcher).await,
        ("online".into(), json!(["friend"]))
    );

    // A second socket of the friend, on the watcher's node, changes nothing; nor does the
    // first one leaving while the second stays.
    let mut friend_a = n[0].connect().await;
    friend_a.signin(&n[0], &json!({"id": "friend"})).await;
    drop(friend_b);
    watcher.expect_silence(600).await;

    // Someone signing in on the other node learns the friend is online (on this node).
    let mut late = n[1].connect().await;
    eventually("the friend's sign-in replicated", || async {
        n[1].running()
            .cluster
            .as_ref()
            .is_some_and(|c| c.remote_user_signed_in(&n[1].app.id, "friend"))
    })
    .await;
    late.signin(&n[1], &json!({"id": "late", "watchlist": ["friend"]}))
        .await;
    assert_eq!(
        watchlist_event(&mut late).await,
        ("online".into(), json!(["friend"]))
    );

    // The friend's last socket leaves: offline, on both nodes.
    drop(friend_a);
    assert_eq!(
        watchlist_event(&mut watcher).await,
        ("offline".into(), json!(["friend"]))
    );
    assert_eq!(
        watchlist_event(&mut late).await,
        ("offline".into(), json!(["friend"]))
    );
}

async fn a_killed_node_is_forgotten_within_the_bound(url: &str, ns: &str) {
    let survivor = TestServer::start_with({
        let config = cluster_config(url, ns, "survivor");
        move |c| c.cluster = Some(config)
    })
    .await;
    let port = free_port();
    let mut victim = spawn_node(url, ns, "victim", port, &survivor.app);
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Connect to the victim process as alice.
    let mut alice = common::Client::open(&format!(
        "ws://127.0.0.1:{port}/app/{}?protocol=7",
        survivor.app.key
    ))
    .await;
    let established = alice.recv_event("pusher:connection_established").await;
    alice.socket_id = parse_data(&established)["socket_id"]
        .as_str()
        .unwrap()
        .to_owned();
    alice
        .join_presence(&survivor, "presence-room", "alice", json!({}))
        .await;
    alice.signin(&survivor, &json!({"id": "alice"})).await;
    let mut bob = survivor.connect().await;
    bob.signin(&survivor, &json!({"id": "bob", "watchlist": ["alice"]}))
        .await;
    let joined = bob
        .join_presence(&survivor, "presence-room", "bob", json!({}))
        .await;
    if parse_data(&joined)["presence"]["count"] != 2 {
        eventually("alice replicated", || async {
            users(&survivor, "presence-room")
                .await
                .as_array()
                .map(Vec::len)
                == Some(2)
        })
        .await;
    }
    let killed_at = std::time::Instant::now();
    victim.0.kill().unwrap();
    victim.0.wait().unwrap();
    // The test's node timeout is 3 s (production default 10 s); allow a heartbeat or two more.
    // Bob is told alice left the channel and, as her watcher, that she went offline.
    let (mut removed, mut offline) = (None, None);
    while removed.is_none() || offline.is_none() {
        let frame = bob
            .next(Duration::from_secs(6))
            .await
            .expect("member_removed and watchlist offline after the node died");
        if frame["event"] == "pusher_internal:member_removed" {
            removed = Some(parse_data(&frame));
        } else if frame["event"] == "pusher_internal:watchlist_events"
            && parse_data(&frame)["events"][0]["name"] == "offline"
        {
            offline = Some(parse_data(&frame));
        }
    }
    assert_eq!(removed.unwrap_or_default()["user_id"], "alice");
    assert_eq!(
        offline.unwrap_or_default()["events"][0]["user_ids"],
        json!(["alice"])
    );
    assert!(
        killed_at.elapsed() < Duration::from_secs(6),
        "{:?}",
        killed_at.elapsed()
    );
    assert_eq!(
        users(&survivor, "presence-room").await,
        json!([{"id": "bob"}])
    );
}

/// A private broker the test may stop and start.
struct PrivateBroker {
    kind: &'static str,
    port: u16,
    child: Option<Child>,
}

impl PrivateBroker {
    fn start(kind: &'static str, port: u16) -> Self {
        let mut b = Self {
            kind,
            port,
            child: None,
        };
        b.resume();
        b
    }

    fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.kind, self.port)
    }

    fn resume(&mut self) {
        let child = match self.kind {
            "redis" => Command::new("redis-server")
                .args([
                    "--port",
                    &self.port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .spawn(),
            _ => Command::new(nats_server())
                .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn(),
        };
        self.child = Some(child.expect("broker binary (redis-server / nats-server) runs"));
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("private {} did not start", self.kind);
    }

    fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.pause();
    }
}

fn nats_server() -> String {
    [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .iter()
    .find(|p| std::path::Path::new(p).exists())
    .map(|p| p.to_string())
    .unwrap_or_else(|| "nats-server".into())
}

async fn ready(node: &TestServer) -> u16 {
    node.raw("GET", "/health/ready", &[], String::new()).await.0
}

async fn the_node_recovers_when_the_broker_returns(url: &str, ns: &str) {
    let kind = if url.starts_with("redis") {
        "redis"
    } else {
        "nats"
    };
    let mut broker = PrivateBroker::start(kind, free_port());
    let n = nodes(&broker.url(), ns, 2).await;
    let mut b = n[1].connect().await;
    b.subscribe("after").await;
    assert_eq!(ready(&n[0]).await, 200);

    broker.pause();
    eventually("ready turns 503 during the outage", || async {
        ready(&n[0]).await == 503
    })
    .await;
    let path = format!("/apps/{}/channels", n[0].app.id);
    let (status, body) = n[0].operator_get("/health/detailed").await;
    assert_eq!(status, 200);
    assert_eq!(body["checks"]["cluster"]["status"], "error");
    let _ = path;

    broker.resume();
    eventually("ready again after the broker returns", || async {
        ready(&n[0]).await == 200 && ready(&n[1]).await == 200
    })
    .await;
    // State is re-announced and publishes flow again, without restarting the nodes.
    eventually("node 0 sees node 1's subscriber again", || async {
        n[0].running()
            .hub
            .state(&n[0].app.clone().into())
            .channel_stats("after")
            .is_some()
    })
    .await;
    n[0].trigger("after", "back", "again").await;
    assert_eq!(b.recv_event("back").await["data"], "again");
}

/// Two nodes sharing one PostgreSQL store: an offline delivery is sent by exactly one of them.
#[tokio::test]
async fn shared_postgres_store_sends_each_delivery_once() {
    use sqlx::Connection;
    let base = std::env::var("PUSHI_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("cluster_{}_{}", std::process::id(), uuid_suffix());
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .expect("PostgreSQL reachable");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = format!("{base}?options=-c%20search_path%3D{schema}");

    // A receiver counting requests.
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let receiver = axum::Router::new().fallback(axum::routing::post(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            "ok"
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let ns = namespace("shared_pg");
    let mut n = Vec::new();
    for i in 0..2 {
        let config = cluster_config(REDIS, &ns, &format!("pg-node-{i}"));
        let url = url.clone();
        n.push(
            TestServer::start_with(move |c| {
                c.cluster = Some(config);
                c.database_url = url;
                common::allow_loopback(c);
            })
            .await,
        );
    }
    let token = n[0].pushi_login().await;
    let (status, _) = n[0]
        .rest(
            "POST",
            "/webs",
            &[],
            Some(&json!({"url": hook, "event": "orders"})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200);
    // The session and the target are in the shared store: node 1 sees both.
    for i in 0..10 {
        n[1].rest(
            "POST",
            "/events",
            &[],
            Some(&json!({"data": format!("order {i}"), "channel": "orders"})),
            Some(&token),
        )
        .await;
    }
    eventually("ten deliveries", || async {
        hits.load(std::sync::atomic::Ordering::SeqCst) >= 10
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        10,
        "each delivery sent once"
    );
    drop(n);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut admin)
        .await
        .unwrap();
}
