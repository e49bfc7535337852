//! What a WebSocket client holding only the public app key can try: forging the server's
//! events, flooding client events, storing what it likes, never reading, subscribing to
//! everything, breaking the framing, and filling the log. Each test names the attack and
//! asserts the behaviour the server must keep, in both dialects (Pusher at `/app/{key}`,
//! Pushi at `/{key}`) and, where it matters, across a cluster.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pushi::app::{App, AppSettings};
use pushi::auth;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Client, Ended, TestServer, parse_data, test_app};

/// A second app on the same server, its settings adjusted.
fn second_app(adjust: impl FnOnce(&mut AppSettings)) -> App {
    let mut app = test_app("2");
    adjust(&mut app.settings);
    app
}

fn sign(app: &App, socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    auth::auth_string(
        &app.key,
        &app.secret,
        &auth::channel_auth_message(socket_id, channel, channel_data),
    )
}

/// Opens `url` and reads `connection_established`.
async fn established(url: &str) -> Client {
    let mut client = Client::open(url).await;
    let frame = client.recv_event("pusher:connection_established").await;
    client.socket_id = parse_data(&frame)["socket_id"]
        .as_str()
        .expect("socket_id")
        .to_owned();
    client
}

async fn pusher_client(server: &TestServer, app: &App) -> Client {
    established(&server.ws_url(&app.key)).await
}

async fn pushi_client(server: &TestServer, app: &App) -> Client {
    established(&format!("ws://{}/{}", server.running().ws_addr, app.key)).await
}

/// Joins a presence channel as `user` in Pushi's dialect (channel_data as an object).
async fn pushi_join_presence(client: &mut Client, app: &App, channel: &str, user: &str) {
    let channel_data = json!({"user_id": user});
    let auth = sign(
        app,
        &client.socket_id,
        channel,
        Some(&channel_data.to_string()),
    );
    let reply = client
        .pushi_subscribe(channel, Some(auth), Some(channel_data))
        .await;
    assert_eq!(
        reply["event"], "pusher_internal:subscription_succeeded",
        "{reply}"
    );
}

/// Joins a presence channel as `user` in Pusher's dialect.
async fn pusher_join_presence(client: &mut Client, app: &App, channel: &str, user: &str) {
    let channel_data = json!({"user_id": user}).to_string();
    let auth = sign(app, &client.socket_id, channel, Some(&channel_data));
    client
        .send(json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth, "channel_data": channel_data}}))
        .await;
    client
        .recv_event("pusher_internal:subscription_succeeded")
        .await;
}

/// The next frame that is not a subscription count or a ping.
async fn next_event(client: &mut Client) -> Value {
    loop {
        let frame = client.recv().await;
        let event = frame["event"].as_str().unwrap_or_default();
        if event != "pusher_internal:subscription_count" && event != "pusher:ping" {
            return frame;
        }
    }
}

/// Collects every frame that arrives within `ms`.
async fn drain(client: &mut Client, ms: u64) -> Vec<Value> {
    let mut frames = Vec::new();
    while let Ok(frame) = client.next(Duration::from_millis(ms)).await {
        frames.push(frame);
    }
    frames
}

const FORGED: [&str; 6] = [
    "pusher_internal:subscription_succeeded",
    "pusher:error",
    "pusher_internal:subscription_count",
    "pusher_internal:member_added",
    "pusher_internal:member_removed",
    "pusher:member_added",
];

#[tokio::test]
async fn forged_server_events_are_refused_in_both_dialects_and_never_reach_a_subscriber() {
    // Public client events on, so the only thing refused is the name.
    let server = TestServer::start_with(|c| {
        let s = &mut c.static_apps[0].settings;
        s.public_client_events = true;
        s.subscription_count = true;
        s.client_event_rate = 1000;
    })
    .await;
    let app = server.app.clone();
    let mut watcher = server.connect().await;
    watcher.subscribe("news").await;
    pusher_join_presence(&mut watcher, &app, "presence-room", "watcher").await;
    let mut pushi_watcher = pushi_client(&server, &app).await;
    pushi_watcher.pushi_subscribe("news", None, None).await;

    let mut forger = pushi_client(&server, &app).await;
    forger.pushi_subscribe("news", None, None).await;
    pushi_join_presence(&mut forger, &app, "presence-room", "forger").await;
    let mut pusher_forger = server.connect().await;
    let private = "private-room";
    pusher_forger.subscribe_signed(&server, private).await;
    watcher.subscribe_signed(&server, private).await;
    // Let the joins' member and count frames arrive before the forgeries.
    drain(&mut watcher, 300).await;
    drain(&mut pushi_watcher, 100).await;
    drain(&mut pusher_forger, 100).await;

    for name in FORGED {
        for channel in ["news", "presence-room"] {
            forger
                .send(json!({"event": name, "channel": channel, "data": {"user_id": "ghost", "subscription_count": 99999}, "echo": true}))
                .await;
            let reply = forger.recv().await;
            assert_eq!(reply["event"], "pusher:error", "{name} on {channel}");
            assert!(reply["data"]["code"].is_null(), "{reply}");
        }
        pusher_forger
            .send(json!({"event": name, "channel": private, "data": {"user_id": "ghost"}}))
            .await;
        assert_eq!(
            pusher_forger.recv().await["event"],
            "pusher:error",
            "{name}"
        );
    }
    // A legitimate event after the forgeries: it is the first thing the subscribers see.
    forger
        .send(json!({"event": "after", "channel": "news", "data": "real"}))
        .await;
    let first = next_event(&mut watcher).await;
    assert_eq!(
        (&first["event"], &first["channel"]),
        (&json!("after"), &json!("news")),
        "{first}"
    );
    let first = pushi_watcher.recv().await;
    assert_eq!(first["event"], "after", "{first}");
    // Nothing else ever came: no forged member, count or error frame.
    for frame in drain(&mut watcher, 300).await {
        assert_eq!(
            frame["event"], "pusher_internal:subscription_count",
            "{frame}"
        );
        assert_ne!(parse_data(&frame)["subscription_count"], 99999, "{frame}");
    }
    // The forger is still a member and the only other one; its connections stayed open.
    forger.assert_alive().await;
    pusher_forger.assert_alive().await;
}

#[tokio::test]
async fn pushi_client_events_on_public_channels_need_the_app_setting() {
    let open = second_app(|s| s.public_client_events = true);
    let server = TestServer::start_with({
        let open = open.clone();
        move |c| c.static_apps.push(open)
    })
    .await;
    for (app, allowed) in [(server.app.clone(), false), (open, true)] {
        let mut listener = pusher_client(&server, &app).await;
        listener.subscribe("lobby").await;
        let mut sender = pushi_client(&server, &app).await;
        sender.pushi_subscribe("lobby", None, None).await;
        sender
            .send(json!({"event": "shout", "channel": "lobby", "data": "hello"}))
            .await;
        if allowed {
            assert_eq!(listener.recv_event("shout").await["data"], "hello");
            sender.expect_silence(200).await;
        } else {
            assert_eq!(sender.recv().await["event"], "pusher:error");
            listener.expect_silence(300).await;
        }
        // Private channels take client events either way.
        let auth = sign(&app, &sender.socket_id, "private-lobby", None);
        sender
            .pushi_subscribe("private-lobby", Some(auth), None)
            .await;
        let auth = sign(&app, &listener.socket_id, "private-lobby", None);
        listener
            .send(json!({"event": "pusher:subscribe", "data": {"channel": "private-lobby", "auth": auth}}))
            .await;
        listener
            .recv_event("pusher_internal:subscription_succeeded")
            .await;
        sender
            .send(json!({"event": "whisper", "channel": "private-lobby", "data": "psst"}))
            .await;
        assert_eq!(listener.recv_event("whisper").await["data"], "psst");
    }
}

#[tokio::test]
async fn pushi_client_events_obey_the_apps_client_event_rate() {
    let server = TestServer::start_with(|c| {
        let s = &mut c.static_apps[0].settings;
        s.public_client_events = true;
        s.client_event_rate = 3;
    })
    .await;
    let app = server.app.clone();
    let mut listener = server.connect().await;
    listener.subscribe("chat").await;
    let mut sender = pushi_client(&server, &app).await;
    sender.pushi_subscribe("chat", None, None).await;
    for i in 0..30 {
        sender
            .send(json!({"event": "line", "channel": "chat", "data": i.to_string()}))
            .await;
    }
    let replies = drain(&mut sender, 300).await;
    let limited = replies
        .iter()
        .filter(|f| f["event"] == "pusher:error" && f["data"]["code"] == 4301)
        .count();
    let delivered = drain(&mut listener, 300)
        .await
        .iter()
        .filter(|f| f["event"] == "line")
        .count();
    // A fixed one-second window: a burst straddling two windows gets at most two windows'
    // worth through.
    assert!((1..=6).contains(&delivered), "{delivered} delivered");
    assert_eq!(limited + delivered, 30, "{replies:?}");
    sender.assert_alive().await;
}

#[tokio::test]
async fn client_events_are_stored_and_forwarded_only_where_the_app_allows_it() {
    let durable = second_app(|s| {
        s.public_client_events = true;
        s.persist_client_events = true;
    });
    let server = TestServer::start_with({
        let durable = durable.clone();
        move |c| {
            c.static_apps[0].settings.public_client_events = true;
            c.static_apps.push(durable);
            crate::common::allow_loopback(c);
        }
    })
    .await;
    for (app, allowed) in [(server.app.clone(), false), (durable, true)] {
        let token = server.pushi_login_as(&app).await;
        // An offline target of the channel: a delivery is recorded for each forwarded event
        // (the receiver need not exist for the outbox to list it).
        let (status, body) = server
            .rest(
                "POST",
                "/webs",
                &[],
                Some(&json!({"url": "http://127.0.0.1:9/hook", "event": "notes"})),
                Some(&token),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let mut listener = pushi_client(&server, &app).await;
        listener.pushi_subscribe("notes", None, None).await;
        let mut sender = pushi_client(&server, &app).await;
        sender.pushi_subscribe("notes", None, None).await;
        // `persist` defaults to true in Pushi's dialect.
        sender
            .send(json!({"event": "note", "channel": "notes", "data": "remember me"}))
            .await;
        let got = listener.recv_event("note").await;
        assert_eq!(got["data"], "remember me", "delivered live either way");
        assert_eq!(got["mid"].is_string(), allowed, "{got}");

        let (_, events) = server.rest("GET", "/events", &[], None, Some(&token)).await;
        let stored = events["events"].as_array().map_or(0, Vec::len);
        assert_eq!(stored, usize::from(allowed), "{events}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_, deliveries) = server
            .rest("GET", "/deliveries", &[], None, Some(&token))
            .await;
        let forwarded = deliveries["deliveries"].as_array().map_or(0, Vec::len);
        assert_eq!(forwarded, usize::from(allowed), "{deliveries}");
    }
}

/// A WebSocket client over a socket with a tiny receive buffer, so that a client that stops
/// reading stops the server's writes quickly.
async fn deaf_pushi_client(
    server: &TestServer,
    app: &App,
) -> (tokio_tungstenite::WebSocketStream<TcpStream>, String) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = socket
        .connect(server.running().ws_addr)
        .await
        .expect("connect");
    let url = format!("ws://{}/{}", server.running().ws_addr, app.key);
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("handshake");
    let socket_id = loop {
        let Some(Ok(Message::Text(text))) = ws.next().await else {
            panic!("no connection_established");
        };
        let frame: Value = serde_json::from_str(text.as_str()).expect("json");
        if frame["event"] == "pusher:connection_established" {
            break parse_data(&frame)["socket_id"]
                .as_str()
                .expect("socket_id")
                .to_owned();
        }
    };
    let channel_data = json!({"user_id": "deaf"});
    let auth = sign(
        app,
        &socket_id,
        "presence-room",
        Some(&channel_data.to_string()),
    );
    for data in [
        json!({"channel": "firehose"}),
        json!({"channel": "presence-room", "auth": auth, "channel_data": channel_data}),
    ] {
        ws.send(Message::text(
            json!({"event": "pusher:subscribe", "data": data}).to_string(),
        ))
        .await
        .expect("send");
    }
    let mut replies = 0;
    while replies < 2 {
        let Some(Ok(Message::Text(text))) = ws.next().await else {
            panic!("no subscription reply");
        };
        let frame: Value = serde_json::from_str(text.as_str()).expect("json");
        if frame["event"] == "pusher_internal:subscription_succeeded" {
            replies += 1;
        }
    }
    // From here on it never reads again.
    (ws, socket_id)
}

/// Publishes 100 KB events to the deaf socket's channel until the watcher hears that the
/// deaf member left; returns how long that took from the first publish.
async fn publish_until_member_removed(server: &TestServer, watcher: &mut Client) -> Duration {
    let started = tokio::time::Instant::now();
    let payload = "x".repeat(100 * 1024);
    let deadline = started + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        let (status, body) = server.trigger("firehose", "flood", &payload).await;
        assert_eq!(status, 200, "{body}");
        match watcher.next(Duration::from_millis(20)).await {
            Ok(frame) if frame["event"] == "pusher_internal:member_removed" => {
                assert_eq!(parse_data(&frame)["user_id"], "deaf");
                return started.elapsed();
            }
            Ok(_) | Err(Ended::Timeout) => {}
            Err(Ended::Closed(code)) => panic!("watcher closed: {code:?}"),
        }
    }
    panic!("the deaf member was never removed");
}

async fn wait_for_live_sockets(server: &TestServer, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.running().hub.live_sockets() != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} live sockets, expected {n}",
            server.running().hub.live_sockets()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_socket_that_stops_reading_is_closed_by_the_write_deadline_and_leaves_presence() {
    let server = TestServer::start_with(|c| {
        c.hub.write_timeout = Duration::from_secs(1);
        // Room for everything published: only the write deadline can close it.
        c.hub.queue_len = 1_000_000;
        c.static_apps[0].settings.max_payload_bytes = 200 * 1024;
    })
    .await;
    let app = server.app.clone();
    let mut watcher = server.connect().await;
    pusher_join_presence(&mut watcher, &app, "presence-room", "watcher").await;
    let (deaf, _) = deaf_pushi_client(&server, &app).await;
    watcher.recv_event("pusher_internal:member_added").await;

    let took = publish_until_member_removed(&server, &mut watcher).await;
    assert!(took < Duration::from_secs(20), "took {took:?}");
    // The socket is gone from the hub (its queue and buffers with it), and the watcher is
    // still served.
    wait_for_live_sockets(&server, 1).await;
    watcher.assert_alive().await;
    drop(deaf);
}

#[tokio::test]
async fn a_stalled_socket_whose_queue_overflows_is_closed_at_once() {
    let server = TestServer::start_with(|c| {
        // The deadline is far away: the overflow must end the stalled write by itself.
        c.hub.write_timeout = Duration::from_secs(300);
        c.hub.queue_len = 16;
        c.static_apps[0].settings.max_payload_bytes = 200 * 1024;
    })
    .await;
    let app = server.app.clone();
    let mut watcher = server.connect().await;
    pusher_join_presence(&mut watcher, &app, "presence-room", "watcher").await;
    let (deaf, _) = deaf_pushi_client(&server, &app).await;
    watcher.recv_event("pusher_internal:member_added").await;

    let took = publish_until_member_removed(&server, &mut watcher).await;
    assert!(took < Duration::from_secs(20), "took {took:?}");
    wait_for_live_sockets(&server, 1).await;
    drop(deaf);
}

#[tokio::test]
async fn subscriptions_per_socket_are_capped_and_the_connection_stays_open() {
    let server =
        TestServer::start_with(|c| c.static_apps[0].settings.max_subscriptions_per_socket = 3)
            .await;
    let app = server.app.clone();

    let mut pusher = server.connect().await;
    for i in 0..3 {
        let reply = pusher.subscribe(&format!("ch-{i}")).await;
        assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");
    }
    let refused = pusher.subscribe("ch-3").await;
    assert_eq!(refused["event"], "pusher:error", "{refused}");
    assert_eq!(refused["data"]["code"], 4303);
    // Signed channels are refused the same way, before any signature is looked at.
    let refused = pusher.subscribe_signed(&server, "private-x").await;
    assert_eq!(refused["data"]["code"], 4303);
    // Subscribing again to a joined channel is not a new subscription.
    let again = pusher.subscribe("ch-0").await;
    assert_eq!(again["event"], "pusher_internal:subscription_succeeded");
    pusher.assert_alive().await;
    pusher
        .send(json!({"event": "pusher:unsubscribe", "data": {"channel": "ch-0"}}))
        .await;
    let reply = pusher.subscribe("ch-3").await;
    assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");

    let mut pushi = pushi_client(&server, &app).await;
    for i in 0..3 {
        let reply = pushi.pushi_subscribe(&format!("ch-{i}"), None, None).await;
        assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");
    }
    let refused = pushi.pushi_subscribe("ch-3", None, None).await;
    assert_eq!(refused["event"], "pusher:error", "{refused}");
    assert_eq!(refused["data"]["code"], 4303);
    pushi.assert_alive().await;
    // The refused channel gets nothing.
    server.trigger("ch-3", "missed", "x").await;
    server.trigger("ch-2", "heard", "x").await;
    assert_eq!(pushi.recv().await["event"], "heard");
}

/// A raw TCP connection that completed a WebSocket handshake (Pusher dialect) and read the
/// `connection_established` frame.
async fn raw_websocket(server: &TestServer) -> TcpStream {
    let mut stream = TcpStream::connect(server.running().ws_addr)
        .await
        .expect("connect");
    let request = format!(
        "GET /app/{}?protocol=7 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.app.key
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.expect("response head");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let (opcode, payload) = read_frame(&mut stream).await.expect("first frame");
    assert_eq!(opcode, 1);
    assert!(String::from_utf8_lossy(&payload).contains("connection_established"));
    stream
}

/// One unmasked server frame: opcode and payload; `None` at end of stream.
async fn read_frame(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await.ok()?;
    let len = match head[1] & 0x7f {
        126 => u64::from(stream.read_u16().await.ok()?),
        127 => stream.read_u64().await.ok()?,
        n => u64::from(n),
    };
    let mut payload = vec![0u8; len as usize];
    stream.read_exact(&mut payload).await.ok()?;
    Some((head[0] & 0x0f, payload))
}

/// The close code the server sends after `frame`, or `None` if it closed without one.
async fn close_code_after(server: &TestServer, frame: &[u8]) -> Option<u16> {
    let mut stream = raw_websocket(server).await;
    stream.write_all(frame).await.expect("write");
    let read = async {
        while let Some((opcode, payload)) = read_frame(&mut stream).await {
            if opcode == 8 {
                return payload
                    .get(..2)
                    .map(|code| u16::from_be_bytes([code[0], code[1]]));
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the server answered")
}

/// A client frame (masked with a zero key, which leaves the payload as it is).
fn client_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut frame = vec![first_byte, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

#[tokio::test]
async fn protocol_violations_close_with_rfc_6455_codes() {
    let server = TestServer::start().await;
    // A text frame that is not UTF-8.
    let not_utf8 = client_frame(0x81, &[0xff, 0xfe, 0xfd]);
    assert_eq!(close_code_after(&server, &not_utf8).await, Some(1007));
    // Opcode 3 is reserved.
    let unknown_opcode = client_frame(0x83, b"{}");
    assert_eq!(close_code_after(&server, &unknown_opcode).await, Some(1002));
    // A frame announcing 2 MiB, over the 1 MiB limit: refused from its header.
    let mut too_big = vec![0x81, 0x80 | 127];
    too_big.extend_from_slice(&(2u64 * 1024 * 1024).to_be_bytes());
    too_big.extend_from_slice(&[0, 0, 0, 0]);
    too_big.extend_from_slice(b"{\"event\":");
    assert_eq!(close_code_after(&server, &too_big).await, Some(1009));
    // None of them took the server down.
    server.connect().await.assert_alive().await;
}

#[tokio::test]
async fn extra_keys_of_a_pushi_rest_event_count_against_the_payload_limit() {
    let server = TestServer::start().await;
    let token = server.pushi_login().await;
    let mut listener = pushi_client(&server, &server.app.clone()).await;
    listener.pushi_subscribe("news", None, None).await;
    let limit = server.app.settings.max_payload_bytes;
    let body = json!({"data": "small", "channel": "news", "padding": "p".repeat(limit * 90)});
    let (status, reply) = server
        .rest("POST", "/events", &[], Some(&body), Some(&token))
        .await;
    assert_eq!(status, 413, "{reply}");
    // Just under the limit, extra keys included, still goes through.
    let body = json!({"data": "small", "channel": "news", "padding": "p".repeat(limit - 100)});
    let (status, reply) = server
        .rest("POST", "/events", &[], Some(&body), Some(&token))
        .await;
    assert_eq!(status, 200, "{reply}");
    let got = listener.recv().await;
    assert_eq!(got["data"], "small", "only the second event arrives");
}

/// Two nodes of one cluster on the shared Redis.
async fn two_nodes(adjust: fn(&mut pushi::config::Config)) -> (TestServer, TestServer) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let namespace = format!("hostile-client-{}-{nanos:x}", std::process::id());
    let mut nodes = Vec::new();
    for node in ["a", "b"] {
        let mut cluster = pushi::cluster::ClusterConfig::new("redis://127.0.0.1:6379".into());
        cluster.namespace = namespace.clone();
        cluster.node_id = node.into();
        cluster.heartbeat = Duration::from_millis(200);
        nodes.push(
            TestServer::start_with(move |c| {
                adjust(c);
                c.cluster = Some(cluster);
            })
            .await,
        );
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !nodes.iter().all(|n| {
        n.running()
            .cluster
            .as_ref()
            .is_some_and(|c| c.peers().len() == 1)
    }) {
        assert!(tokio::time::Instant::now() < deadline, "nodes never met");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = nodes.pop().expect("node b");
    let a = nodes.pop().expect("node a");
    (a, b)
}

#[tokio::test]
async fn across_a_cluster_client_events_are_delivered_but_never_cached_and_never_forged() {
    let (a, b) = two_nodes(|c| c.static_apps[0].settings.public_client_events = true).await;
    let app = a.app.clone();
    let mut remote = b.connect().await;
    assert_eq!(
        remote.subscribe("cache-ticker").await["event"],
        "pusher_internal:subscription_succeeded"
    );
    remote.recv_event("pusher:cache_miss").await;
    let mut sender = pushi_client(&a, &app).await;
    sender.pushi_subscribe("cache-ticker", None, None).await;
    // Give node a the subscription of node b before publishing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sender
        .send(json!({"event": "pusher_internal:subscription_succeeded", "channel": "cache-ticker", "data": {}}))
        .await;
    assert_eq!(sender.recv().await["event"], "pusher:error");
    sender
        .send(json!({"event": "tick", "channel": "cache-ticker", "data": "42"}))
        .await;
    let first = next_event(&mut remote).await;
    assert_eq!(first["event"], "tick", "{first}");
    // A new subscriber on either node finds the cache empty: clients do not fill it.
    for node in [&a, &b] {
        let mut late = node.connect().await;
        late.subscribe("cache-ticker").await;
        let frame = next_event(&mut late).await;
        assert_eq!(frame["event"], "pusher:cache_miss", "{frame}");
    }
    // The server still fills it, and both nodes replay what it put there.
    a.trigger("cache-ticker", "price", "7").await;
    remote.recv_event("price").await;
    for node in [&a, &b] {
        let mut late = node.connect().await;
        late.subscribe("cache-ticker").await;
        assert_eq!(next_event(&mut late).await["event"], "price");
    }
}

/// Everything the server logs while the test binary runs, at trace level, through the
/// filter the binary installs.
fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    #[derive(Clone)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let writer = Capture(buffer.clone());
    let filter = pushi::logs::without_frame_contents(tracing_subscriber::EnvFilter::new("trace"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the only test that installs a subscriber");
    buffer
}

#[tokio::test]
async fn client_strings_in_the_log_are_clipped_throttled_and_never_carry_auth() {
    let logs = capture_logs();
    let server = TestServer::start().await;
    let addr = server.running().ws_addr;

    // 40 upgrades with a 60 KB unknown key (about the longest URI a client library sends),
    // in both dialects.
    let key = "K".repeat(60 * 1024);
    for i in 0..40 {
        let url = if i % 2 == 0 {
            server.ws_url(&key)
        } else {
            format!("ws://{addr}/{key}")
        };
        let mut refused = Client::open(&url).await;
        assert_eq!(refused.expect_close().await, Some(4001));
    }
    // A client error echoing a long client string (debug level).
    let mut client = server.connect().await;
    client
        .send(json!({"event": "E".repeat(200_000), "data": {}}))
        .await;
    assert_eq!(client.recv().await["event"], "pusher:error");
    // A signed subscription: its auth string must appear at no level.
    let reply = client.subscribe_signed(&server, "private-secret").await;
    assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");
    let auth = server.sign_channel(&client.socket_id, "private-secret", None);
    let signature = auth.split_once(':').expect("key:signature").1.to_owned();
    client.assert_alive().await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let text = String::from_utf8_lossy(&logs.lock().expect("log buffer")).into_owned();
    assert!(
        !text.contains(&"K".repeat(200)),
        "an app key was logged unclipped"
    );
    assert!(
        !text.contains(&"E".repeat(200)),
        "an event name was logged unclipped"
    );
    assert!(!text.contains(&signature), "an auth signature was logged");
    let refusals = text
        .lines()
        .filter(|l| l.contains("unknown app key"))
        .count();
    assert!(
        (1..=5).contains(&refusals),
        "{refusals} lines for 40 refusals in a few seconds"
    );
}
