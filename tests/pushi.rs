//! Pushi's dialect and REST API against a real server, side by side with Pusher clients.

mod common;

use common::{TestServer, parse_data};
use serde_json::{Value, json};

fn legacy_server_config(c: &mut pushi::config::Config) {
    c.static_apps[0].settings.legacy_auth = true;
}

#[tokio::test]
async fn pushi_connects_at_the_key_path_and_subscribes() {
    let server = TestServer::start().await;
    let mut c = server.connect_pushi().await;
    assert!(c.socket_id.contains('.'));
    let reply = c.pushi_subscribe("global", None, None).await;
    assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(reply["channel"], "global");
    assert_eq!(
        parse_data(&reply),
        json!({"name": "global", "members": {}, "alias": [], "events": []})
    );
    c.send(json!({"event": "pusher:unsubscribe", "data": {"channel": "global"}}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["event"], "pusher_internal:unsubscription_succeeded");
    // Unsubscribing again: an error reply, and the connection lives.
    c.send(json!({"event": "pusher:unsubscribe", "data": {"channel": "global"}}))
        .await;
    assert_eq!(c.recv().await["event"], "pusher:error");
    c.assert_alive().await;
}

#[tokio::test]
async fn rest_events_reach_both_dialects_and_are_stored() {
    let server = TestServer::start().await;
    let token = server.pushi_login().await;
    let mut pushi = server.connect_pushi().await;
    pushi.pushi_subscribe("news", None, None).await;
    let mut pusher = server.connect().await;
    pusher.subscribe("news").await;

    let body =
        json!({"data": {"title": "T"}, "event": "update", "channel": "news", "subject": "S"});
    let (status, reply) = server
        .rest("POST", "/events", &[], Some(&body), Some(&token))
        .await;
    assert_eq!((status, reply), (200, json!({"result": "success"})));

    let got = pushi.recv_event("update").await;
    assert_eq!(got["channel"], "news");
    assert_eq!(got["data"], r#"{"title":"T"}"#);
    assert_eq!(got["subject"], "S");
    let mid = got["mid"]
        .as_str()
        .expect("persisted events carry mid")
        .to_owned();
    assert!(got["timestamp"].as_f64().is_some());
    let got = pusher.recv_event("update").await;
    assert_eq!(got["data"], r#"{"title":"T"}"#);

    let (status, list) = server
        .rest("GET", "/events", &[("count", "5")], None, Some(&token))
        .await;
    assert_eq!(status, 200);
    let events = list["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["mid"], mid);
    assert_eq!(events[0]["channel"], "news");
    assert_eq!(events[0]["data"]["event"], "update");
    assert_eq!(events[0]["instance"], server.app.ident);

    // Not persisted: no mid, not listed.
    let body = json!({"data": "x", "event": "quick", "channel": "news", "persist": false});
    server
        .rest("POST", "/events", &[], Some(&body), Some(&token))
        .await;
    let got = pushi.recv_event("quick").await;
    assert!(got.get("mid").is_none());
    let (_, list) = server.rest("GET", "/events", &[], None, Some(&token)).await;
    assert_eq!(list["events"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn latest_returns_history_newest_first_with_paging() {
    let server = TestServer::start().await;
    let token = server.pushi_login().await;
    for i in 0..5 {
        let body = json!({"data": format!("m{i}"), "event": "e", "channel": "hist"});
        server
            .rest("POST", "/events", &[], Some(&body), Some(&token))
            .await;
    }
    let mut c = server.connect_pushi().await;
    c.pushi_subscribe("hist", None, None).await;
    c.send(json!({"event": "pusher:latest", "data": {"channel": "hist", "skip": 1, "count": 2}}))
        .await;
    let reply = c.recv_event("pusher_internal:latest").await;
    let events = parse_data(&reply)["events"].clone();
    let data: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["data"].as_str().unwrap())
        .collect();
    assert_eq!(data, ["m3", "m2"]);
    // Latest on a channel not joined is refused, connection lives.
    c.send(json!({"event": "pusher:latest", "data": {"channel": "other"}}))
        .await;
    assert_eq!(c.recv().await["event"], "pusher:error");
    c.assert_alive().await;
}

#[tokio::test]
async fn personal_channels_expand_and_keep_offline_history() {
    let server = TestServer::start().await;
    let token = server.pushi_login().await;
    for channel in ["news", "sports"] {
        let (status, record) = server
            .rest(
                "POST",
                "/subscriptions",
                &[],
                Some(&json!({"user_id": "u1", "event": channel})),
                Some(&token),
            )
            .await;
        assert_eq!(status, 200, "{record}");
        assert_eq!(record["user_id"], "u1");
    }
    // Creating the same subscription again returns the existing record.
    let (_, again) = server
        .rest(
            "POST",
            "/subscriptions",
            &[("user_id", "u1"), ("event", "news")],
            None,
            Some(&token),
        )
        .await;
    let (_, list) = server
        .rest(
            "GET",
            "/subscriptions",
            &[("user_id", "u1")],
            None,
            Some(&token),
        )
        .await;
    assert_eq!(list["subscriptions"].as_array().unwrap().len(), 2);
    assert_eq!(again["id"], list["subscriptions"][0]["id"]);

    // While u1 is offline, an event goes to news and sports (one publish, two channels).
    let body = json!({"data": "while away", "event": "e", "channel": ["news", "sports"]});
    server
        .rest("POST", "/events", &[], Some(&body), Some(&token))
        .await;

    let mut c = server.connect_pushi().await;
    let auth = server.sign_channel(&c.socket_id, "personal-u1", None);
    let reply = c.pushi_subscribe("personal-u1", Some(auth), None).await;
    assert_eq!(reply["channel"], "personal-u1");
    let data = parse_data(&reply);
    assert_eq!(data["alias"], json!(["news", "sports"]));
    // One association per user per publish: the first channel's event only.
    let events = data["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["channel"], "news");
    assert_eq!(events[0]["data"]["data"], "while away");

    // Events on the aliased channels arrive with their real channel name, once per publish.
    let body = json!({"data": "live", "event": "e2", "channel": ["news", "sports"]});
    server
        .rest("POST", "/events", &[], Some(&body), Some(&token))
        .await;
    let got = c.recv_event("e2").await;
    assert_eq!(got["channel"], "news");
    c.expect_silence(200).await;

    // Personal history through pusher:latest works too.
    c.send(json!({"event": "pusher:latest", "data": {"channel": "personal-u1", "count": 10}}))
        .await;
    let latest = c.recv_event("pusher_internal:latest").await;
    assert_eq!(parse_data(&latest)["events"].as_array().unwrap().len(), 2);

    // Unsubscribing the personal channel leaves its aliases.
    c.send(json!({"event": "pusher:unsubscribe", "data": {"channel": "personal-u1"}}))
        .await;
    let reply = c
        .recv_event("pusher_internal:unsubscription_succeeded")
        .await;
    assert_eq!(parse_data(&reply)["alias"], json!(["news", "sports"]));
    server
        .rest(
            "POST",
            "/events",
            &[],
            Some(&json!({"data": "gone", "channel": "news"})),
            Some(&token),
        )
        .await;
    c.expect_silence(200).await;

    // Deleting a subscription.
    let (status, deleted) = server
        .rest(
            "DELETE",
            "/subscriptions/u1/sports",
            &[],
            None,
            Some(&token),
        )
        .await;
    assert_eq!((status, deleted["event"].clone()), (200, json!("sports")));
    let (_, list) = server
        .rest("GET", "/subscriptions", &[], None, Some(&token))
        .await;
    assert_eq!(list["subscriptions"].as_array().unwrap().len(), 1);
    let (status, _) = server
        .rest(
            "DELETE",
            "/subscriptions/u1/sports",
            &[("force", "1")],
            None,
            Some(&token),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn pushi_client_events_echo_and_persist() {
    // What the original allowed on public channels, an app migrating from Pushi turns on.
    let server = TestServer::start_with(|c| {
        let settings = &mut c.static_apps[0].settings;
        settings.public_client_events = true;
        settings.persist_client_events = true;
    })
    .await;
    let mut a = server.connect_pushi().await;
    let mut b = server.connect_pushi().await;
    a.pushi_subscribe("room", None, None).await;
    b.pushi_subscribe("room", None, None).await;

    a.send(json!({"event": "chat", "channel": "room", "data": {"text": "hi"}}))
        .await;
    let got = b.recv_event("chat").await;
    assert_eq!(got["data"], r#"{"text":"hi"}"#);
    assert!(got["mid"].is_string(), "client events persist by default");
    a.expect_silence(200).await;

    a.send(json!({"event": "chat", "channel": "room", "data": "echoed", "echo": true, "persist": false})).await;
    let own = a.recv_event("chat").await;
    assert_eq!(own["data"], "echoed");
    assert!(own.get("mid").is_none());

    a.send(json!({"event": "chat", "channel": "elsewhere", "data": "x"}))
        .await;
    assert_eq!(a.recv().await["event"], "pusher:error");
    a.send(json!({"event": "chat", "channel": "room"})).await;
    assert_eq!(a.recv().await["event"], "pusher:error");
    a.assert_alive().await;

    let token = server.pushi_login().await;
    let (_, list) = server.rest("GET", "/events", &[], None, Some(&token)).await;
    let events = list["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["owner_id"], a.socket_id);
}

#[tokio::test]
async fn presence_with_legacy_auth_and_pushi_member_events() {
    let server = TestServer::start_with(legacy_server_config).await;
    let mut a = server.connect_pushi().await;
    let legacy = server.sign_channel(&a.socket_id, "presence-chat", None);
    let reply = a
        .pushi_subscribe(
            "presence-chat",
            Some(legacy),
            Some(json!({"user_id": "alice", "name": "A"})),
        )
        .await;
    assert_eq!(
        parse_data(&reply)["members"],
        json!({"alice": {"user_id": "alice", "name": "A"}})
    );

    let mut b = server.connect_pushi().await;
    let legacy = server.sign_channel(&b.socket_id, "presence-chat", None);
    b.pushi_subscribe(
        "presence-chat",
        Some(legacy),
        Some(json!({"user_id": "bob"})),
    )
    .await;
    let added = a.recv_event("pusher:member_added").await;
    assert_eq!(added["channel"], "presence-chat");
    let member: Value = serde_json::from_str(added["member"].as_str().unwrap()).unwrap();
    assert_eq!(member, json!({"user_id": "bob"}));
    drop(b);
    let removed = a.recv_event("pusher:member_removed").await;
    assert_eq!(removed["channel"], "presence-chat");
}

#[tokio::test]
async fn legacy_presence_signatures_need_the_app_flag() {
    let server = TestServer::start().await;
    let mut a = server.connect_pushi().await;
    let legacy = server.sign_channel(&a.socket_id, "presence-chat", None);
    let reply = a
        .pushi_subscribe(
            "presence-chat",
            Some(legacy),
            Some(json!({"user_id": "alice"})),
        )
        .await;
    assert_eq!(reply["event"], "pusher:subscription_error");
    // Pusher's formula, over the channel_data exactly as sent, works.
    let channel_data = json!({"user_id": "alice"});
    let auth = server.sign_channel(
        &a.socket_id,
        "presence-chat",
        Some(&channel_data.to_string()),
    );
    let reply = a
        .pushi_subscribe("presence-chat", Some(auth), Some(channel_data))
        .await;
    assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");
}

#[tokio::test]
async fn peer_channels_pair_presence_members() {
    let server = TestServer::start_with(legacy_server_config).await;
    let join = async |user: &str, peer: bool| {
        let mut c = server.connect_pushi().await;
        let auth = server.sign_channel(&c.socket_id, "presence-chat", None);
        c.pushi_subscribe(
            "presence-chat",
            Some(auth),
            Some(json!({"user_id": user, "peer": peer})),
        )
        .await;
        c
    };
    let mut alice = join("alice", true).await;
    let mut bob = join("bob", false).await;
    let mut carol = join("carol", false).await;

    alice
        .send(json!({"event": "whisper", "channel": "peer-chat:alice&bob", "data": "psst", "persist": false}))
        .await;
    let got = bob.recv_event("whisper").await;
    assert_eq!(got["channel"], "peer-chat:alice&bob");
    assert_eq!(got["data"], "psst");
    // Carol is in the room but not in the pair; bob without the flag and carol without it
    // have no peer channel at all.
    while let Ok(frame) = carol.next(std::time::Duration::from_millis(300)).await {
        assert_ne!(frame["event"], "whisper");
    }
    carol
        .send(json!({"event": "whisper", "channel": "peer-chat:bob&carol", "data": "x", "persist": false}))
        .await;
    while let Ok(frame) = bob.next(std::time::Duration::from_millis(300)).await {
        assert_ne!(frame["event"], "whisper");
    }
    // Bob may read the pair's history; carol may not.
    bob.send(json!({"event": "pusher:latest", "data": {"channel": "peer-chat:alice&bob"}}))
        .await;
    assert_eq!(
        bob.recv_event("pusher_internal:latest").await["channel"],
        "peer-chat:alice&bob"
    );
    carol
        .send(json!({"event": "pusher:latest", "data": {"channel": "peer-chat:alice&bob"}}))
        .await;
    assert_eq!(
        carol.recv_event("pusher:error").await["event"],
        "pusher:error"
    );
}

#[tokio::test]
async fn sessions_are_scoped_to_their_app() {
    let server = TestServer::start_with(|c| c.static_apps.push(common::test_app("2"))).await;
    let token1 = server.pushi_login().await;
    let other = common::test_app("2");
    let (_, body) = server
        .rest(
            "GET",
            "/login",
            &[
                ("app_id", &other.ident),
                ("app_key", &other.key),
                ("app_secret", &other.secret),
            ],
            None,
            None,
        )
        .await;
    let token2 = body["token"].as_str().unwrap().to_owned();

    server
        .rest(
            "POST",
            "/events",
            &[],
            Some(&json!({"data": "one", "channel": "c"})),
            Some(&token1),
        )
        .await;
    server
        .rest(
            "POST",
            "/subscriptions",
            &[],
            Some(&json!({"user_id": "u", "event": "c"})),
            Some(&token1),
        )
        .await;
    let (_, events) = server
        .rest("GET", "/events", &[], None, Some(&token2))
        .await;
    assert_eq!(events["events"], json!([]));
    let (_, subs) = server
        .rest("GET", "/subscriptions", &[], None, Some(&token2))
        .await;
    assert_eq!(subs["subscriptions"], json!([]));
    let (status, _) = server
        .rest(
            "GET",
            &format!("/apps/{}", server.app.ident),
            &[],
            None,
            Some(&token2),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = server
        .rest(
            "DELETE",
            "/subscriptions/u/c",
            &[("force", "1")],
            None,
            Some(&token2),
        )
        .await;
    assert_eq!(status, 404);
    let (_, subs) = server
        .rest("GET", "/subscriptions", &[], None, Some(&token1))
        .await;
    assert_eq!(subs["subscriptions"].as_array().unwrap().len(), 1);

    // Without a session, private routes are 403; wrong credentials are refused.
    let (status, _) = server.rest("GET", "/events", &[], None, None).await;
    assert_eq!(status, 403);
    let (status, _) = server
        .rest(
            "GET",
            "/login",
            &[
                ("app_id", &server.app.ident),
                ("app_key", &server.app.key),
                ("app_secret", "nope"),
            ],
            None,
            None,
        )
        .await;
    assert_eq!(status, 401);
    // After logout the token is dead.
    server
        .rest("GET", "/logout", &[], None, Some(&token1))
        .await;
    let (status, _) = server
        .rest("GET", "/events", &[], None, Some(&token1))
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn app_creation_needs_the_admin_token_unless_open() {
    let server = TestServer::start_with(|c| c.admin_token = Some("admin-secret".into())).await;
    let (status, _) = server
        .rest("POST", "/apps", &[], Some(&json!({"name": "x"})), None)
        .await;
    assert_eq!(status, 403);
    let response = server
        .http
        .post(format!("http://{}/apps", server.running().http_addr))
        .bearer_auth("admin-secret")
        .json(&json!({"name": "created"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let app: Value = response.json().await.unwrap();
    assert_eq!(app["ident"].as_str().unwrap().len(), 64);
    assert_eq!(app["key"].as_str().unwrap().len(), 64);
    assert_eq!(app["secret"].as_str().unwrap().len(), 64);
    assert!(
        app["id"].as_i64().is_some(),
        "numeric id for Pusher SDKs: {app}"
    );

    // The new app logs in and works; its listing hides the secret.
    let (status, body) = server
        .rest(
            "GET",
            "/login",
            &[
                ("app_id", app["ident"].as_str().unwrap()),
                ("app_key", app["key"].as_str().unwrap()),
                ("app_secret", app["secret"].as_str().unwrap()),
            ],
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let token = body["token"].as_str().unwrap();
    let (_, apps) = server.rest("GET", "/apps", &[], None, Some(token)).await;
    assert_eq!(apps["apps"].as_array().unwrap().len(), 1);
    assert!(apps["apps"][0].get("secret").is_none());
    // Duplicate names are refused.
    let response = server
        .http
        .post(format!("http://{}/apps", server.running().http_addr))
        .bearer_auth("admin-secret")
        .json(&json!({"name": "created"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    let open = TestServer::start_with(|c| c.open_apps = true).await;
    let (status, _) = open
        .rest("POST", "/apps", &[], Some(&json!({"name": "anyone"})), None)
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn rest_input_errors_are_400_with_a_reason() {
    let server = TestServer::start().await;
    let token = server.pushi_login().await;
    for body in [
        json!({"event": "e"}),
        json!({"data": ""}),
        json!({"data": 0}),
        json!({"data": "x", "mid": "m"}),
    ] {
        let (status, err) = server
            .rest("POST", "/events", &[], Some(&body), Some(&token))
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(!err["message"].as_str().unwrap().is_empty());
    }
    let (status, err) = server
        .rest(
            "POST",
            "/subscriptions",
            &[],
            Some(&json!({"user_id": "u"})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 400);
    assert!(err["message"].as_str().unwrap().contains("event"));
}

#[tokio::test]
async fn sockets_and_ping_routes() {
    let server = TestServer::start().await;
    let token = server.pushi_login().await;
    let mut c = server.connect_pushi().await;
    c.pushi_subscribe("global", None, None).await;
    let (status, body) = server
        .rest("GET", "/sockets", &[], None, Some(&token))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["sockets"][0]["socket_id"], c.socket_id);
    assert_eq!(body["sockets"][0]["channels"], json!(["global"]));
    let (_, body) = server
        .rest(
            "GET",
            &format!("/sockets/{}", c.socket_id),
            &[],
            None,
            Some(&token),
        )
        .await;
    assert_eq!(body["channels"], json!(["global"]));
    let (status, _) = server
        .rest("GET", "/apps/ping", &[], None, Some(&token))
        .await;
    assert_eq!(status, 200);
    assert_eq!(c.recv_event("ping").await["data"], "ping");
}

#[tokio::test]
async fn quiet_pushi_clients_get_websocket_pings_not_protocol_events() {
    let server = TestServer::start_with(|c| {
        c.hub.activity_timeout = std::time::Duration::from_secs(1);
        c.hub.pong_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let mut c = server.connect_pushi().await;
    c.pushi_subscribe("quiet", None, None).await;
    // Three activity periods of silence: Pushi sockets are neither pinged nor closed for it.
    match c.next(std::time::Duration::from_millis(3500)).await {
        Err(common::Ended::Timeout) => {}
        other => panic!("expected nothing but ping frames, got {other:?}"),
    }
    let token = server.pushi_login().await;
    server
        .rest(
            "POST",
            "/events",
            &[],
            Some(&json!({"data": "still here", "channel": "quiet"})),
            Some(&token),
        )
        .await;
    assert_eq!(c.recv_event("message").await["data"], "still here");
}

#[tokio::test]
async fn session_token_is_read_from_a_form_body() {
    let server = TestServer::start().await;
    let token = server.pushi_login().await;
    let response = server
        .http
        .post(format!("http://{}/sockets/1.1", server.running().http_addr))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("sid={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn pushi_errors_carry_a_channel_key() {
    let server = TestServer::start().await;
    let mut c = server.connect_pushi().await;
    c.send_text("{broken").await;
    let error = c.recv().await;
    assert_eq!(error["event"], "pusher:error");
    assert!(error.get("channel").is_some(), "{error}");
}
