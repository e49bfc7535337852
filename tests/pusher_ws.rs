//! Pusher protocol 7 over a real WebSocket against a real server.

mod common;

use std::time::Duration;

use common::{Client, Ended, TestServer, parse_data};
use serde_json::json;

#[tokio::test]
async fn connection_established_carries_socket_id_and_activity_timeout() {
    let server = TestServer::start().await;
    let mut client = Client::open(&server.ws_url(&server.app.key)).await;
    let frame = client.recv().await;
    assert_eq!(frame["event"], "pusher:connection_established");
    let data = parse_data(&frame);
    let socket_id = data["socket_id"].as_str().unwrap();
    let (a, b) = socket_id.split_once('.').unwrap();
    assert!(
        a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok(),
        "{socket_id}"
    );
    assert_eq!(data["activity_timeout"], 120);
}

#[tokio::test]
async fn refusals_carry_the_protocol_close_codes() {
    let server = TestServer::start_with(|c| {
        let mut disabled = common::test_app("2");
        disabled.enabled = false;
        c.static_apps.push(disabled);
    })
    .await;
    let addr = server.running().ws_addr;
    for (url, code) in [
        (server.ws_url("nope"), 4001),
        (server.ws_url("key-2"), 4003),
        (format!("ws://{addr}/"), 4005),
        (format!("ws://{addr}/app/"), 4005),
        (
            format!("ws://{addr}/app/{}?protocol=x", server.app.key),
            4006,
        ),
        (
            format!("ws://{addr}/app/{}?protocol=99", server.app.key),
            4007,
        ),
        (format!("ws://{addr}/app/{}", server.app.key), 4008),
    ] {
        let mut client = Client::open(&url).await;
        let error = client.recv().await;
        assert_eq!(error["event"], "pusher:error", "{url}");
        assert_eq!(error["data"]["code"], code, "{url}");
        assert_eq!(client.expect_close().await, Some(code), "{url}");
    }
}

#[tokio::test]
async fn connection_quota_refuses_with_4004() {
    let server =
        TestServer::start_with(|c| c.static_apps[0].settings.max_connections = Some(1)).await;
    let _first = server.connect().await;
    let mut second = Client::open(&server.ws_url(&server.app.key)).await;
    assert_eq!(second.recv().await["data"]["code"], 4004);
    assert_eq!(second.expect_close().await, Some(4004));
}

#[tokio::test]
async fn ping_pong() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    client.assert_alive().await;
}

#[tokio::test]
async fn public_channel_receives_triggers() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    let reply = client.subscribe("news").await;
    assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(reply["channel"], "news");
    let (status, body) = server
        .trigger("news", "headline", r#"{"title":"hi"}"#)
        .await;
    assert_eq!((status, body), (200, json!({})));
    let event = client.recv_event("headline").await;
    assert_eq!(event["channel"], "news");
    assert_eq!(event["data"], r#"{"title":"hi"}"#);
}

#[tokio::test]
async fn private_channel_needs_a_valid_signature() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    let ok = client.subscribe_signed(&server, "private-a").await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");

    client
        .send(json!({"event": "pusher:subscribe", "data": {"channel": "private-b", "auth": format!("{}:deadbeef", server.app.key)}}))
        .await;
    let err = client.recv().await;
    assert_eq!(err["event"], "pusher:subscription_error");
    assert_eq!(err["channel"], "private-b");
    assert_eq!(err["data"]["status"], 401);
    assert_eq!(err["data"]["type"], "AuthError");

    client
        .send(json!({"event": "pusher:subscribe", "data": {"channel": "private-c"}}))
        .await;
    assert_eq!(client.recv().await["event"], "pusher:subscription_error");
    // A signature for another socket is refused too.
    let stolen = server.sign_channel("1.1", "private-d", None);
    client
        .send(
            json!({"event": "pusher:subscribe", "data": {"channel": "private-d", "auth": stolen}}),
        )
        .await;
    assert_eq!(client.recv().await["event"], "pusher:subscription_error");
    client.assert_alive().await;
    // Still subscribed where it succeeded.
    server.trigger("private-a", "e", "x").await;
    client.recv_event("e").await;
}

#[tokio::test]
async fn encrypted_channels_relay_ciphertext_untouched() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    let ok = client
        .subscribe_signed(&server, "private-encrypted-x")
        .await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    let payload = r#"{"nonce":"bm9uY2U=","ciphertext":"Y2lwaGVy"}"#;
    server
        .trigger("private-encrypted-x", "secret", payload)
        .await;
    assert_eq!(client.recv_event("secret").await["data"], payload);
}

#[tokio::test]
async fn presence_counts_users_not_sockets() {
    let server = TestServer::start().await;
    let mut alice = server.connect().await;
    let joined = alice
        .join_presence(&server, "presence-room", "alice", json!({"name": "Alice"}))
        .await;
    let data = parse_data(&joined);
    assert_eq!(data["presence"]["count"], 1);
    assert_eq!(data["presence"]["ids"], json!(["alice"]));
    assert_eq!(data["presence"]["hash"]["alice"]["name"], "Alice");

    let mut bob = server.connect().await;
    let joined = bob
        .join_presence(&server, "presence-room", "bob", json!({"name": "Bob"}))
        .await;
    assert_eq!(parse_data(&joined)["presence"]["count"], 2);
    let added = alice.recv_event("pusher_internal:member_added").await;
    assert_eq!(
        parse_data(&added),
        json!({"user_id": "bob", "user_info": {"name": "Bob"}})
    );

    // Bob's second tab: no member_added, still two users.
    let mut bob2 = server.connect().await;
    let joined = bob2
        .join_presence(&server, "presence-room", "bob", json!({"name": "Bob"}))
        .await;
    assert_eq!(parse_data(&joined)["presence"]["count"], 2);
    alice.expect_silence(200).await;

    let path = format!("/apps/{}/channels/presence-room", server.app.id);
    let (_, info) = server
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
    let (_, users) = server.api("GET", &format!("{path}/users"), &[], None).await;
    assert_eq!(users, json!({"users": [{"id": "alice"}, {"id": "bob"}]}));

    // One of Bob's sockets leaves: nothing; the last one leaves: member_removed.
    bob2.send(json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-room"}}))
        .await;
    alice.expect_silence(200).await;
    drop(bob);
    let removed = alice.recv_event("pusher_internal:member_removed").await;
    assert_eq!(parse_data(&removed), json!({"user_id": "bob"}));
    let (_, info) = server
        .api("GET", &path, &[("info", "user_count")], None)
        .await;
    assert_eq!(info["user_count"], 1);
}

#[tokio::test]
async fn presence_enforces_limits_and_needs_channel_data() {
    let server =
        TestServer::start_with(|c| c.static_apps[0].settings.max_presence_members = 1).await;
    let mut a = server.connect().await;
    a.join_presence(&server, "presence-small", "a", json!({}))
        .await;
    let mut b = server.connect().await;
    let channel_data = json!({"user_id": "b"}).to_string();
    let auth = server.sign_channel(&b.socket_id, "presence-small", Some(&channel_data));
    b.send(json!({"event": "pusher:subscribe", "data": {"channel": "presence-small", "auth": auth, "channel_data": channel_data}}))
        .await;
    let err = b.recv().await;
    assert_eq!(err["event"], "pusher:subscription_error");
    assert_eq!(err["data"]["type"], "LimitReached");

    // Missing channel_data on presence: refused with a reason, connection lives.
    let auth = server.sign_channel(&b.socket_id, "presence-other", None);
    b.send(
        json!({"event": "pusher:subscribe", "data": {"channel": "presence-other", "auth": auth}}),
    )
    .await;
    let err = b.recv().await;
    assert_eq!(err["event"], "pusher:subscription_error");
    b.assert_alive().await;
}

#[tokio::test]
async fn client_events_follow_the_rules() {
    let server = TestServer::start().await;
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    a.join_presence(&server, "presence-chat", "ua", json!({}))
        .await;
    b.join_presence(&server, "presence-chat", "ub", json!({}))
        .await;
    a.recv_event("pusher_internal:member_added").await;

    a.send(json!({"event": "client-typing", "channel": "presence-chat", "data": {"who": "a"}}))
        .await;
    let got = b.recv_event("client-typing").await;
    assert_eq!(got["data"], json!({"who": "a"}));
    assert_eq!(got["user_id"], "ua");
    assert_eq!(got["channel"], "presence-chat");
    a.expect_silence(200).await; // not echoed

    // Public channel: refused.
    a.subscribe("public").await;
    a.send(json!({"event": "client-x", "channel": "public", "data": {}}))
        .await;
    assert_eq!(a.recv().await["event"], "pusher:error");
    // Not subscribed: refused.
    a.send(json!({"event": "client-x", "channel": "private-elsewhere", "data": {}}))
        .await;
    assert_eq!(a.recv().await["event"], "pusher:error");
    a.assert_alive().await;
}

#[tokio::test]
async fn client_events_are_rate_limited_with_4301() {
    let server = TestServer::start().await;
    let mut a = server.connect().await;
    a.subscribe_signed(&server, "private-r").await;
    for _ in 0..11 {
        a.send(json!({"event": "client-x", "channel": "private-r", "data": {}}))
            .await;
    }
    let err = a.recv_event("pusher:error").await;
    assert_eq!(err["data"]["code"], 4301);
    a.assert_alive().await;
}

#[tokio::test]
async fn client_events_can_be_disabled_per_app() {
    let server = TestServer::start_with(|c| c.static_apps[0].settings.client_events = false).await;
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    a.subscribe_signed(&server, "private-q").await;
    b.subscribe_signed(&server, "private-q").await;
    a.send(json!({"event": "client-x", "channel": "private-q", "data": {}}))
        .await;
    let err = a.recv().await;
    assert_eq!(err["event"], "pusher:error");
    assert!(
        err["data"]["message"]
            .as_str()
            .unwrap()
            .contains("disabled")
    );
    b.expect_silence(200).await;
}

#[tokio::test]
async fn trigger_excludes_socket_id_and_reaches_many_channels() {
    let server = TestServer::start().await;
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    a.subscribe("c1").await;
    b.subscribe("c1").await;
    b.subscribe("c2").await;
    let path = format!("/apps/{}/events", server.app.id);
    let (status, _) = server
        .api("POST", &path, &[], Some(&json!({"name": "e", "channels": ["c1", "c2"], "data": "d", "socket_id": a.socket_id})))
        .await;
    assert_eq!(status, 200);
    let first = b.recv_event("e").await;
    let second = b.recv_event("e").await;
    let mut channels = [first["channel"].clone(), second["channel"].clone()];
    channels.sort_by_key(|c| c.to_string());
    assert_eq!(channels, [json!("c1"), json!("c2")]);
    a.expect_silence(200).await;
}

#[tokio::test]
async fn sign_in_server_to_user_and_terminate() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    let reply = client
        .signin(&server, &json!({"id": "u1", "name": "U"}))
        .await;
    assert_eq!(reply["event"], "pusher:signin_success");
    assert_eq!(
        parse_data(&reply)["user_data"],
        json!({"id": "u1", "name": "U"}).to_string()
    );

    let ok = client.subscribe("#server-to-user-u1").await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    let other = client.subscribe("#server-to-user-u2").await;
    assert_eq!(other["event"], "pusher:subscription_error");

    server
        .trigger("#server-to-user-u1", "note", "for you")
        .await;
    assert_eq!(client.recv_event("note").await["data"], "for you");

    // Bad signature: refused, connection lives.
    let mut other = server.connect().await;
    other
        .send(json!({"event": "pusher:signin", "data": {"auth": format!("{}:00", server.app.key), "user_data": "{\"id\":\"x\"}"}}))
        .await;
    assert_eq!(other.recv().await["event"], "pusher:error");
    other.assert_alive().await;

    let path = format!("/apps/{}/users/u1/terminate_connections", server.app.id);
    let (status, body) = server.api("POST", &path, &[], Some(&json!({}))).await;
    assert_eq!((status, body), (200, json!({})));
    assert_eq!(client.expect_close().await, Some(4009));
    other.assert_alive().await;
}

#[tokio::test]
async fn watchlist_reports_online_and_offline() {
    let server = TestServer::start().await;
    let mut watcher = server.connect().await;
    watcher
        .signin(&server, &json!({"id": "w", "watchlist": ["friend"]}))
        .await;
    let mut friend = server.connect().await;
    friend.signin(&server, &json!({"id": "friend"})).await;
    let online = watcher.recv_event("pusher_internal:watchlist_events").await;
    assert_eq!(
        parse_data(&online),
        json!({"events": [{"name": "online", "user_ids": ["friend"]}]})
    );
    drop(friend);
    let offline = watcher.recv_event("pusher_internal:watchlist_events").await;
    assert_eq!(parse_data(&offline)["events"][0]["name"], "offline");

    // Signing in while the watched user is online reports them at once.
    let mut friend = server.connect().await;
    friend.signin(&server, &json!({"id": "friend"})).await;
    let mut late = server.connect().await;
    late.signin(&server, &json!({"id": "late", "watchlist": ["friend"]}))
        .await;
    let online = late.recv_event("pusher_internal:watchlist_events").await;
    assert_eq!(
        parse_data(&online)["events"][0]["user_ids"],
        json!(["friend"])
    );
}

#[tokio::test]
async fn cache_channels_replay_the_last_event_or_report_a_miss() {
    let server = TestServer::start().await;
    let mut early = server.connect().await;
    early.subscribe("cache-prices").await;
    assert_eq!(early.recv().await["event"], "pusher:cache_miss");

    server.trigger("cache-prices", "price", "1").await;
    server.trigger("cache-prices", "price", "2").await;
    let mut late = server.connect().await;
    assert_eq!(
        late.subscribe("cache-prices").await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let replay = late.recv().await;
    assert_eq!(
        (replay["event"].clone(), replay["data"].clone()),
        (json!("price"), json!("2"))
    );

    let path = format!("/apps/{}/channels/cache-prices", server.app.id);
    let (_, info) = server.api("GET", &path, &[("info", "cache")], None).await;
    assert_eq!(info["cache"]["data"], "2");
}

#[tokio::test]
async fn bad_input_gets_errors_and_the_connection_survives() {
    let server = TestServer::start().await;
    let mut c = server.connect().await;
    c.subscribe("kept").await;
    for bad in [
        "{not json",
        "[1,2,3]",
        r#"{"data":{}}"#,
        r#"{"event":"pusher:subscribe"}"#,
        r#"{"event":"pusher:subscribe","data":{"nochannel":1}}"#,
        r#"{"event":"unknown-event","data":{}}"#,
        r#"{"event":"pusher:unsubscribe","data":{"channel":"never-joined"}}"#,
        r#"{"event":"pusher:signin","data":{}}"#,
    ] {
        c.send_text(bad).await;
        let reply = c.recv().await;
        assert_eq!(reply["event"], "pusher:error", "for {bad}");
        assert!(
            reply["data"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // Invalid channel names get a subscription error naming the problem.
    for name in ["has space", "#reserved", &"x".repeat(201)] {
        let reply = c.subscribe(name).await;
        assert_eq!(reply["event"], "pusher:subscription_error", "{name}");
    }
    // Binary frames.
    use futures_util::SinkExt;
    c.ws.send(tokio_tungstenite::tungstenite::Message::binary(vec![
        1u8, 2, 3,
    ]))
    .await
    .unwrap();
    assert_eq!(c.recv().await["event"], "pusher:error");
    // Oversized client event (over the 10 KB app limit).
    c.subscribe_signed(&server, "private-big").await;
    let big = "x".repeat(20 * 1024);
    c.send(json!({"event": "client-big", "channel": "private-big", "data": big}))
        .await;
    let err = c.recv().await;
    assert_eq!(err["event"], "pusher:error");
    assert!(err["data"]["message"].as_str().unwrap().contains("bytes"));
    // Subscribing twice re-confirms without duplicating.
    assert_eq!(
        c.subscribe("kept").await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let path = format!("/apps/{}/channels/kept", server.app.id);
    let (_, info) = server
        .api("GET", &path, &[("info", "subscription_count")], None)
        .await;
    assert_eq!(info["subscription_count"], 1);
    // Everything still works.
    c.assert_alive().await;
    server.trigger("kept", "still", "here").await;
    c.recv_event("still").await;
}

#[tokio::test]
async fn disconnect_cleans_up_subscriptions_and_presence() {
    let server = TestServer::start().await;
    let mut a = server.connect().await;
    a.join_presence(&server, "presence-x", "a", json!({})).await;
    a.subscribe("plain").await;
    a.ws.close(None).await.unwrap();
    drop(a);
    let path = format!("/apps/{}/channels", server.app.id);
    for _ in 0..50 {
        let (_, list) = server.api("GET", &path, &[], None).await;
        if list == json!({"channels": {}}) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("channels still occupied after disconnect");
}

#[tokio::test]
async fn silent_clients_are_pinged_then_closed_with_4201() {
    let server = TestServer::start_with(|c| {
        c.hub.activity_timeout = Duration::from_secs(1);
        c.hub.pong_timeout = Duration::from_secs(1);
    })
    .await;
    let mut c = server.connect().await;
    let ping = c.next(Duration::from_secs(3)).await.unwrap();
    assert_eq!(ping["event"], "pusher:ping");
    assert_eq!(c.expect_close().await, Some(4201));

    // A client that answers stays.
    let mut d = server.connect().await;
    let ping = d.next(Duration::from_secs(3)).await.unwrap();
    assert_eq!(ping["event"], "pusher:ping");
    d.send(json!({"event": "pusher:pong", "data": {}})).await;
    match d.next(Duration::from_millis(1500)).await {
        Ok(frame) => assert_eq!(frame["event"], "pusher:ping"),
        Err(Ended::Timeout) => {}
        Err(e) => panic!("answering client was closed: {e:?}"),
    }
}

#[tokio::test]
async fn slow_consumers_are_closed_with_4100() {
    let server = TestServer::start_with(|c| c.hub.queue_len = 8).await;
    let mut slow = server.connect().await;
    slow.subscribe("firehose").await;
    let state = {
        let hub = &server.running().hub;
        let app = hub.apps.by_id("1").await.unwrap().unwrap();
        hub.state(&app)
    };
    let channel = pushi::protocol::ChannelName::parse(
        "firehose",
        pushi::protocol::channel::NameRules::Pusher,
    )
    .unwrap();
    let data = pushi::protocol::frames::json_string(&"y".repeat(8 * 1024));
    // Publish far more than socket buffers and the queue can hold, without reading.
    for _ in 0..4000 {
        let _ = server
            .running()
            .hub
            .publish(
                &state,
                &pushi::hub::Publish::new(std::slice::from_ref(&channel), "bulk", &data),
            )
            .await;
    }
    assert_eq!(slow.expect_close().await, Some(4100));
}

#[tokio::test]
async fn graceful_shutdown_closes_sockets_with_4200() {
    let mut server = TestServer::start().await;
    let mut c = server.connect().await;
    let closing = tokio::spawn(async move { c.expect_close().await });
    server.shutdown().await;
    assert_eq!(closing.await.unwrap(), Some(4200));
}

/// Pusher's subscription counting, for an app that turns it on.
#[tokio::test]
async fn subscription_counts_reach_subscribers_when_the_app_counts() {
    let server =
        TestServer::start_with(|c| c.static_apps[0].settings.subscription_count = true).await;
    let count = |frame: &serde_json::Value| parse_data(frame)["subscription_count"].clone();

    let mut a = server.connect().await;
    a.subscribe("counted").await;
    let first = a.recv_event("pusher_internal:subscription_count").await;
    assert_eq!(first["channel"], "counted");
    assert_eq!(count(&first), json!(1));

    let mut b = server.connect().await;
    b.subscribe("counted").await;
    assert_eq!(
        count(&a.recv_event("pusher_internal:subscription_count").await),
        json!(2)
    );
    assert_eq!(
        count(&b.recv_event("pusher_internal:subscription_count").await),
        json!(2)
    );

    // A disconnect counts as leaving.
    drop(b);
    assert_eq!(
        count(&a.recv_event("pusher_internal:subscription_count").await),
        json!(1)
    );

    // Presence channels have member events instead.
    let mut p = server.connect().await;
    p.join_presence(&server, "presence-room", "u1", json!({}))
        .await;
    p.expect_silence(1200).await;
}

#[tokio::test]
async fn subscription_counts_stay_off_by_default() {
    let server = TestServer::start().await;
    let mut a = server.connect().await;
    a.subscribe("uncounted").await;
    let mut b = server.connect().await;
    b.subscribe("uncounted").await;
    a.expect_silence(1200).await;
}
