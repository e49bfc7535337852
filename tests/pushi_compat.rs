//! A Pushi deployment moved over unchanged: the original's channel names on the Pushi dialect
//! and REST API (and Pusher's rules kept on Pusher sockets and the Pusher HTTP API), the
//! "Pushi" limits profile of apps created with `POST /apps` next to the Pusher-like defaults
//! of configured apps, personal and peer channels for any user id, and the health details the
//! original's monitoring reads. Real servers, real WebSocket clients of both dialects.

mod common;

use common::{Client, TestServer, parse_data};
use pushi::app::{App, AppSettings};
use serde_json::{Value, json};

const ADMIN: &str = "compat-admin-token";

/// Names the original Pushi served that Pusher's rules refuse.
fn pushi_only_names() -> Vec<String> {
    vec![
        "news/eu".into(),
        "canal-ação".into(),
        "with space".into(),
        "hash#tag".into(),
        "a+b@example.com".into(),
        "c".repeat(250),
        "ç".repeat(500),
    ]
}

async fn start() -> TestServer {
    TestServer::start_with(|c| c.admin_token = Some(ADMIN.into())).await
}

/// An app made through Pushi's REST API, as an unmodified Pushi deployment makes them.
async fn create_pushi_app(server: &TestServer, name: &str) -> App {
    let response = server
        .http
        .post(format!("http://{}/apps", server.running().http_addr))
        .bearer_auth(ADMIN)
        .json(&json!({"name": name}))
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    let text = |k: &str| body[k].as_str().expect(k).to_owned();
    let settings = AppSettings::pushi_profile();
    assert_eq!(
        body["settings"],
        settings.public_view(),
        "POST /apps gives the Pushi profile"
    );
    App {
        id: text("app_id"),
        key: text("key"),
        secret: text("secret"),
        name: text("name"),
        ident: text("ident"),
        enabled: true,
        settings,
        description: None,
        created: 0,
        modified: 0,
    }
}

/// The same server, acting as `app` (its key for sockets, its secret for signatures).
async fn as_app(server: &mut TestServer, app: &App) -> String {
    server.app = app.clone();
    server.pushi_login().await
}

async fn post_event(server: &TestServer, sid: &str, body: Value) -> (u16, Value) {
    server
        .rest("POST", "/events", &[], Some(&body), Some(sid))
        .await
}

async fn pusher_trigger(server: &TestServer, body: Value) -> (u16, Value) {
    let path = format!("/apps/{}/events", server.app.id);
    server.api("POST", &path, &[], Some(&body)).await
}

/// Subscribes a Pushi socket to a signed channel (presence with `channel_data` as a string,
/// so the signature covers exactly what is sent).
async fn pushi_join(
    server: &TestServer,
    client: &mut Client,
    channel: &str,
    channel_data: Option<Value>,
) -> Value {
    let text = channel_data.map(|d| d.to_string());
    let auth = server.sign_channel(&client.socket_id, channel, text.as_deref());
    client
        .pushi_subscribe(channel, Some(auth), text.map(Value::String))
        .await
}

/// Joins a presence channel as a Pusher socket; returns the reply, success or refusal.
async fn pusher_join(server: &TestServer, client: &mut Client, channel: &str, user: &str) -> Value {
    let channel_data = json!({"user_id": user, "user_info": {}}).to_string();
    let auth = server.sign_channel(&client.socket_id, channel, Some(&channel_data));
    client
        .send(json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth, "channel_data": channel_data}}))
        .await;
    loop {
        let frame = client.recv().await;
        let event = frame["event"].as_str().unwrap_or_default();
        if event.contains("subscription_") {
            return frame;
        }
    }
}

#[tokio::test]
async fn the_pushi_dialect_and_rest_api_take_the_originals_channel_names() {
    let server = start().await;
    let sid = server.pushi_login().await;
    let mut pushi = server.connect_pushi().await;
    let mut pusher = server.connect().await;
    pusher.subscribe("plain").await;
    for name in pushi_only_names() {
        let reply = pushi.pushi_subscribe(&name, None, None).await;
        assert_eq!(
            reply["event"], "pusher_internal:subscription_succeeded",
            "{name}"
        );
        assert_eq!(reply["channel"], name.as_str());
        assert_eq!(parse_data(&reply)["name"], name.as_str());

        let (status, body) = post_event(
            &server,
            &sid,
            json!({"channel": name, "event": "update", "data": "hi"}),
        )
        .await;
        assert_eq!(status, 200, "{name}: {body}");
        let got = pushi.recv_event("update").await;
        assert_eq!(got["channel"], name.as_str());
        assert_eq!(got["data"], "hi");

        // A Pusher socket cannot subscribe to it, and the Pusher HTTP API refuses it: the
        // name only ever matches Pushi sockets.
        let refused = pusher.subscribe(&name).await;
        assert_eq!(refused["event"], "pusher:subscription_error", "{name}");
        assert_eq!(parse_data(&refused)["type"], "InvalidChannel");
        let (status, _) = server.trigger(&name, "update", "hi").await;
        assert_eq!(status, 400, "{name}");
        // History works under the name too.
        pushi
            .send(json!({"event": "pusher:latest", "data": {"channel": name}}))
            .await;
        let latest = pushi.recv_event("pusher_internal:latest").await;
        assert_eq!(parse_data(&latest)["events"][0]["channel"], name.as_str());
    }
    pusher.expect_silence(200).await;

    // One byte under and over the bound; what can break a frame, a log line or a statement.
    let longest = "x".repeat(1_000);
    assert_eq!(
        pushi.pushi_subscribe(&longest, None, None).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    for bad in [
        "x".repeat(1_001),
        "line\nbreak".into(),
        "nul\0byte".into(),
        "esc\u{1b}[2J".into(),
        "sep\u{2028}".into(),
    ] {
        let reply = pushi.pushi_subscribe(&bad, None, None).await;
        assert_eq!(reply["event"], "pusher:error", "{bad:?}");
        let (status, body) = post_event(
            &server,
            &sid,
            json!({"channel": bad, "event": "e", "data": "x"}),
        )
        .await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert!(body["message"].as_str().unwrap().contains("channel name"));
    }
    pushi.assert_alive().await;

    // The Pusher API lists only names a Pusher client could use.
    let path = format!("/apps/{}/channels", server.app.id);
    let (status, listed) = server.api("GET", &path, &[], None).await;
    assert_eq!(status, 200);
    let listed = listed["channels"].as_object().unwrap();
    assert!(listed.contains_key("plain"), "{listed:?}");
    assert!(!listed.contains_key("news/eu"), "{listed:?}");
    assert_eq!(listed.len(), 1, "{listed:?}");
}

#[tokio::test]
async fn personal_channels_work_for_any_user_id_the_rest_api_takes() {
    let server = start().await;
    let sid = server.pushi_login().await;
    for user in [
        "john+1@example.com",
        "ann lee",
        "personal-x",
        "usuário/ação",
    ] {
        for channel in ["news/eu", "with space"] {
            let (status, record) = server
                .rest(
                    "POST",
                    "/subscriptions",
                    &[],
                    Some(&json!({"user_id": user, "event": channel})),
                    Some(&sid),
                )
                .await;
            assert_eq!(status, 200, "{user}: {record}");
            assert_eq!(record["user_id"], user);
        }
        let personal = format!("personal-{user}");
        let mut c = server.connect_pushi().await;
        let reply = pushi_join(&server, &mut c, &personal, None).await;
        assert_eq!(
            reply["event"], "pusher_internal:subscription_succeeded",
            "{user}: {reply}"
        );
        assert_eq!(reply["channel"], personal.as_str());
        assert_eq!(
            parse_data(&reply)["alias"],
            json!(["news/eu", "with space"]),
            "{user}"
        );
        let body = json!({"channel": "news/eu", "event": "for-you", "data": user});
        assert_eq!(post_event(&server, &sid, body).await.0, 200);
        let got = c.recv_event("for-you").await;
        assert_eq!(got["channel"], "news/eu");
        assert_eq!(got["data"], user);
        c.send(json!({"event": "pusher:unsubscribe", "data": {"channel": personal}}))
            .await;
        let reply = c
            .recv_event("pusher_internal:unsubscription_succeeded")
            .await;
        assert_eq!(reply["channel"], personal.as_str());
    }
    // An id that cannot name a channel is refused when it is subscribed, with the reason.
    for user in ["two\nlines", &"u".repeat(992)] {
        let (status, body) = server
            .rest(
                "POST",
                "/subscriptions",
                &[],
                Some(&json!({"user_id": user, "event": "news"})),
                Some(&sid),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(body["message"].as_str().unwrap().contains("user_id"));
    }
}

#[tokio::test]
async fn peer_channels_pair_any_presence_user_ids() {
    let server = start().await;
    let join = async |user: &str, peer: bool| {
        let mut c = server.connect_pushi().await;
        let data = json!({"user_id": user, "user_info": {}, "peer": peer});
        let reply = pushi_join(&server, &mut c, "presence-sala/1", Some(data)).await;
        assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");
        c
    };
    let mut ann = join("ann lee", true).await;
    let mut john = join("john+1@example.com", false).await;
    let peer = "peer-sala/1:ann lee&john+1@example.com";
    ann.send(json!({"event": "whisper", "channel": peer, "data": "psst", "persist": false}))
        .await;
    let got = john.recv_event("whisper").await;
    assert_eq!(got["channel"], peer);
    assert_eq!(got["data"], "psst");
    john.send(json!({"event": "whisper", "channel": peer, "data": "back", "persist": false}))
        .await;
    assert_eq!(ann.recv_event("whisper").await["data"], "back");
}

#[tokio::test]
async fn apps_made_with_post_apps_get_the_pushi_profile_and_others_pushers_limits() {
    let mut server = start().await;
    let configured = server.app.clone();
    assert_eq!(configured.settings, AppSettings::default());
    let created = create_pushi_app(&server, "migrated").await;

    let data = "d".repeat(20 * 1024);
    let many: Vec<String> = (0..101).map(|i| format!("ch-{i}")).collect();
    let long_event = "e".repeat(250);

    // The configured app: Pusher's limits, on both APIs.
    let sid = as_app(&mut server, &configured).await;
    let refusals = [
        (json!({"channel": "news", "event": "e", "data": data}), 413),
        (json!({"channel": many, "event": "e", "data": "x"}), 400),
        (
            json!({"channel": "news", "event": long_event, "data": "x"}),
            400,
        ),
    ];
    for (body, status) in &refusals {
        assert_eq!(post_event(&server, &sid, body.clone()).await.0, *status);
    }
    let pusher_refusals = [
        (json!({"channel": "news", "name": "e", "data": data}), 413),
        (json!({"channels": many, "name": "e", "data": "x"}), 400),
        (
            json!({"channel": "news", "name": long_event, "data": "x"}),
            400,
        ),
    ];
    for (body, status) in &pusher_refusals {
        assert_eq!(pusher_trigger(&server, body.clone()).await.0, *status);
    }

    // The app made with POST /apps: all admitted, on both APIs and to both dialects.
    let sid = as_app(&mut server, &created).await;
    let mut pushi = server.connect_pushi().await;
    let mut pusher = server.connect().await;
    for channel in ["ch-0", "ch-100"] {
        pushi.pushi_subscribe(channel, None, None).await;
        pusher.subscribe(channel).await;
    }
    let body = json!({"channel": "ch-0", "event": "big", "data": data});
    assert_eq!(post_event(&server, &sid, body).await.0, 200);
    assert_eq!(pushi.recv_event("big").await["data"], data.as_str());
    assert_eq!(pusher.recv_event("big").await["data"], data.as_str());
    let body = json!({"channel": many, "event": "wide", "data": "x"});
    assert_eq!(post_event(&server, &sid, body).await.0, 200);
    // One copy per Pushi socket, one per channel for Pusher's.
    assert_eq!(pushi.recv_event("wide").await["data"], "x");
    for _ in 0..2 {
        assert_eq!(pusher.recv_event("wide").await["data"], "x");
    }
    let body = json!({"channel": "ch-0", "event": long_event, "data": "x"});
    assert_eq!(post_event(&server, &sid, body).await.0, 200);
    pushi.recv_event(&long_event).await;
    pusher.recv_event(&long_event).await;

    let triggers = [
        json!({"channel": "ch-0", "name": "big", "data": data}),
        json!({"channels": many, "name": "wide", "data": "x"}),
        json!({"channel": "ch-0", "name": long_event, "data": "x"}),
    ];
    for body in triggers {
        let (status, reply) = pusher_trigger(&server, body.clone()).await;
        assert_eq!(status, 200, "{reply}");
        let event = body["name"].as_str().unwrap();
        pushi.recv_event(event).await;
        pusher.recv_event(event).await;
    }

    // Client events of 20 KB from either dialect.
    let mut pushi_peer = server.connect_pushi().await;
    pushi_join(&server, &mut pushi_peer, "private-room", None).await;
    pushi_join(&server, &mut pushi, "private-room", None).await;
    pusher.subscribe_signed(&server, "private-room").await;
    pushi_peer
        .send(json!({"event": "client-big", "channel": "private-room", "data": data}))
        .await;
    assert_eq!(pushi.recv_event("client-big").await["data"], data.as_str());
    assert_eq!(pusher.recv_event("client-big").await["data"], data.as_str());

    // Still finite.
    let over = [
        (
            json!({"channel": "ch-0", "event": "e", "data": "d".repeat(64 * 1024 + 1)}),
            413,
        ),
        (
            json!({"channel": (0..1_001).map(|i| format!("c{i}")).collect::<Vec<_>>(), "event": "e", "data": "x"}),
            400,
        ),
        (
            json!({"channel": "ch-0", "event": "e".repeat(1_001), "data": "x"}),
            400,
        ),
    ];
    for (body, status) in over {
        assert_eq!(post_event(&server, &sid, body).await.0, status);
    }
}

#[tokio::test]
async fn presence_limits_follow_the_profile_on_both_dialects() {
    let mut server = start().await;
    let configured = server.app.clone();
    let created = create_pushi_app(&server, "crowded").await;
    let long_id = "i".repeat(200);

    for (app, admitted) in [(&configured, false), (&created, true)] {
        as_app(&mut server, app).await;
        // A 200-character user id, on both dialects.
        let data = json!({"user_id": long_id, "user_info": {}});
        let mut p = server.connect_pushi().await;
        let reply = pushi_join(&server, &mut p, "presence-long", Some(data)).await;
        let expected = if admitted {
            "pusher_internal:subscription_succeeded"
        } else {
            "pusher:subscription_error"
        };
        assert_eq!(reply["event"], expected, "{}", app.name);
        let mut c = server.connect().await;
        let reply = pusher_join(&server, &mut c, "presence-long", &long_id).await;
        assert_eq!(reply["event"], expected, "{}: {reply}", app.name);

        // 100 members, then a 101st from each dialect.
        let mut members = Vec::new();
        for i in 0..100 {
            let mut m = server.connect_pushi().await;
            let data = json!({"user_id": format!("u{i}"), "user_info": {}});
            let reply = pushi_join(&server, &mut m, "presence-crowd", Some(data)).await;
            assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");
            members.push(m);
        }
        let mut pushi_101 = server.connect_pushi().await;
        let data = json!({"user_id": "u100", "user_info": {}});
        let reply = pushi_join(&server, &mut pushi_101, "presence-crowd", Some(data)).await;
        assert_eq!(reply["event"], expected, "{}: {reply}", app.name);
        let mut pusher_102 = server.connect().await;
        let reply = pusher_join(&server, &mut pusher_102, "presence-crowd", "u101").await;
        assert_eq!(reply["event"], expected, "{}: {reply}", app.name);
    }
}

#[tokio::test]
async fn the_new_limits_are_settings_of_every_app() {
    let mut server = start().await;
    let created = create_pushi_app(&server, "tuned").await;
    let change = async |server: &TestServer, changes: Value| -> (u16, Value) {
        let response = server
            .http
            .patch(format!(
                "http://{}/admin/api/apps/{}",
                server.running().http_addr,
                created.id
            ))
            .bearer_auth(ADMIN)
            .json(&changes)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON"))
    };
    let limits = json!({"max_channels_per_publish": 2, "max_event_name_len": 5});
    assert_eq!(change(&server, limits).await.0, 200);
    let sid = as_app(&mut server, &created).await;
    let body = json!({"channel": ["a", "b", "c"], "event": "e", "data": "x"});
    let (status, reply) = post_event(&server, &sid, body).await;
    assert_eq!(status, 400);
    let message = reply["message"].as_str().unwrap();
    assert!(message.contains("at most 2 channels"), "{message}");
    let body = json!({"channel": "a", "event": "sixsix", "data": "x"});
    let (status, reply) = post_event(&server, &sid, body).await;
    assert_eq!(status, 400);
    assert!(reply["message"].as_str().unwrap().contains("event name"));
    let body = json!({"channel": ["a", "b"], "event": "fives", "data": "x"});
    assert_eq!(post_event(&server, &sid, body).await.0, 200);

    // Out of range is refused with the setting named.
    let (status, reply) = change(&server, json!({"max_event_name_len": 1_001})).await;
    assert_eq!(status, 400);
    let message = reply["message"].as_str().unwrap();
    assert!(message.contains("max_event_name_len"), "{message}");
}

#[tokio::test]
async fn health_details_are_a_superset_of_the_originals() {
    let server = start().await;
    let sid = server.pushi_login().await;
    let mut c = server.connect_pushi().await;
    c.pushi_subscribe("news", None, None).await;
    let body = json!({"channel": "news", "event": "e", "data": "x"});
    assert_eq!(post_event(&server, &sid, body).await.0, 200);
    c.recv_event("e").await;
    let web = json!({"url": "https://example.com/hook", "event": "news"});
    let (status, reply) = server
        .rest("POST", "/webs", &[], Some(&web), Some(&sid))
        .await;
    assert_eq!(status, 200, "{reply}");
    // A target too long to be indexed with a long channel name is refused up front.
    let long = format!("https://example.com/{}", "p".repeat(1_500));
    let too_long = json!({"url": long, "event": "x".repeat(1_000)});
    let (status, reply) = server
        .rest("POST", "/webs", &[], Some(&too_long), Some(&sid))
        .await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply["message"].as_str().unwrap().contains("1500 bytes"));

    let (status, health) = server.operator_get("/health/detailed").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["service"], "pushi");
    assert!(health["timestamp"].is_f64(), "{health}");
    let checks = &health["checks"];
    assert_eq!(checks["database"]["status"], "ok");
    assert_eq!(checks["database"]["app_count"], 1);
    assert!(checks["database"]["latency_ms"].is_number());
    assert_eq!(checks["websocket"]["connections"], 1);
    assert!(checks["websocket"]["messages_sent"].as_u64().unwrap() >= 1);
    assert_eq!(checks["handlers"]["status"], "ok");
    let handlers = checks["handlers"]["handlers"].as_array().unwrap();
    let names: Vec<&str> = handlers
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["apn", "smtp", "web", "web_push"]);
    assert_eq!(
        handlers[2]["stats"],
        json!({"subscription_count": 1, "app_count": 1})
    );
    assert_eq!(
        handlers[0]["stats"],
        json!({"subscription_count": 0, "app_count": 0})
    );
}
