//! App settings over Pushi's REST API, as a Pushi user manages them: `POST /apps` and
//! `PUT /apps/{ident}` with every setting as JSON, form fields or query parameters, read back
//! (secrets only reported as set), refused with the field named, and taking effect (a
//! webhook received after `PUT webhooks`; the e-mail case is in `tests/email.rs`, beside its
//! SMTP server). Also the routes of Pushi's README (`/apps/{app_id}/subscribe` and
//! `/unsubscribe`), the PyPI client's raw-URL `DELETE /webs/...`, the server-wide legacy
//! presence switch and the idents of configured apps.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::any;
use common::TestServer;
use serde_json::{Value, json};

/// A server that lets anyone create apps, as Pushi did, and delivers to loopback receivers.
async fn open_server() -> TestServer {
    TestServer::start_with(|c| {
        c.open_apps = true;
        common::allow_loopback(c);
    })
    .await
}

/// An app created with `POST /apps` (JSON), logged into: (app record with secret, session).
async fn created_app(server: &TestServer, extra: Value) -> (Value, String) {
    let mut body = json!({"name": format!("app-{}", uuid::Uuid::new_v4())});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let (status, app) = server.rest("POST", "/apps", &[], Some(&body), None).await;
    assert_eq!(status, 200, "create: {app}");
    let (status, login) = server
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
    assert_eq!(status, 200, "login: {login}");
    (app, login["token"].as_str().unwrap().to_owned())
}

fn ident(app: &Value) -> String {
    app["ident"].as_str().expect("ident").to_owned()
}

async fn show(server: &TestServer, app: &Value, sid: &str) -> Value {
    let (status, shown) = server
        .rest(
            "GET",
            &format!("/apps/{}", ident(app)),
            &[],
            None,
            Some(sid),
        )
        .await;
    assert_eq!(status, 200, "{shown}");
    shown
}

async fn put(server: &TestServer, app: &Value, sid: &str, body: Value) -> (u16, Value) {
    server
        .rest(
            "PUT",
            &format!("/apps/{}", ident(app)),
            &[],
            Some(&body),
            Some(sid),
        )
        .await
}

/// A form-encoded request (what HTML forms and appier's clients send).
async fn form(
    server: &TestServer,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    fields: &[(&str, &str)],
) -> (u16, Value) {
    let url = format!("http://{}{path}", server.running().http_addr);
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let response = server
        .http
        .request(method, url)
        .query(query)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A self-signed certificate and its key, as PEM (an APNs client certificate's shape).
fn certificate() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["pushi.test".to_owned()]).expect("params");
    let cert = params.self_signed(&key).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

/// A valid value for every setting, each different from its default.
fn every_setting() -> Value {
    let (cer, cer_key) = certificate();
    json!({
        "name": "renamed",
        "description": "all of it",
        "enabled": true,
        "client_events": false,
        "max_connections": 50,
        "max_payload_bytes": 2048,
        "max_presence_members": 7,
        "max_presence_user_info_bytes": 512,
        "max_presence_user_id_len": 64,
        "max_event_name_len": 150,
        "max_channels_per_publish": 20,
        "client_event_rate": 3,
        "public_client_events": true,
        "persist_client_events": true,
        "max_subscriptions_per_socket": 20,
        "history_max_age_secs": 3600,
        "history_max_per_channel": 500,
        "deliveries_max_age_secs": 7200,
        "legacy_auth": true,
        "subscription_count": true,
        "webhooks": [{"url": "https://hooks.example.com/pushi", "event_types": ["member_added"]}],
        "vapid_key": pushi::notify::web_push::generate_vapid_key(),
        "vapid_email": "ops@example.com",
        "smtp_url": "smtps://user:pass@mail.example.com:465?sender=noreply@example.com",
        "apn_auth_key": pushi::notify::web_push::generate_vapid_key(),
        "apn_key_id": "ABC123DEFG",
        "apn_team_id": "TEAM123456",
        "apn_topic": "com.example.app",
        "apn_cer": cer,
        "apn_key": cer_key,
        "apn_sandbox": true,
        "apn_url": "https://apns.example.com",
    })
}

/// Settings that hold a secret, reported only as set.
const SECRETS: &[&str] = &[
    "vapid_key",
    "smtp_url",
    "apn_auth_key",
    "apn_cer",
    "apn_key",
];

#[tokio::test]
async fn every_setting_is_taken_read_back_and_secrets_are_write_only() {
    let server = open_server().await;
    let (app, sid) = created_app(&server, json!({})).await;
    let all = every_setting();
    // The test covers every setting there is.
    for name in pushi::app::AppSettings::names() {
        assert!(all.get(&name).is_some(), "the test misses setting {name}");
    }
    let (status, updated) = put(&server, &app, &sid, all.clone()).await;
    assert_eq!(status, 200, "{updated}");
    let shown = show(&server, &app, &sid).await;
    assert_eq!(shown["name"], "renamed");
    assert_eq!(shown["description"], "all of it");
    let settings = &shown["settings"];
    for (name, value) in all.as_object().unwrap() {
        if ["name", "description", "enabled"].contains(&name.as_str()) {
            continue;
        }
        if SECRETS.contains(&name.as_str()) {
            assert_eq!(settings[name], json!(true), "{name} is reported as set");
        } else {
            assert_eq!(&settings[name], value, "{name} reads back");
        }
    }
    let text = shown.to_string();
    for secret in SECRETS {
        let value = all[*secret].as_str().unwrap();
        assert!(!text.contains(value), "{secret}'s value is never shown");
        assert!(
            !updated.to_string().contains(value),
            "{secret} is not in the PUT reply"
        );
    }
    // Clearing: null (JSON) or empty text (form) lifts optional settings.
    let (status, _) = put(&server, &app, &sid, json!({"smtp_url": null})).await;
    assert_eq!(status, 200);
    let (status, _) = form(
        &server,
        "PUT",
        &format!("/apps/{}", ident(&app)),
        &[("sid", &sid)],
        &[("max_connections", ""), ("vapid_key", "")],
    )
    .await;
    assert_eq!(status, 200);
    let settings = show(&server, &app, &sid).await["settings"].clone();
    assert_eq!(settings["smtp_url"], json!(false));
    assert_eq!(settings["vapid_key"], json!(false));
    assert_eq!(settings["max_connections"], Value::Null);
}

#[tokio::test]
async fn settings_come_from_forms_and_query_strings_too() {
    let server = open_server().await;
    let (app, sid) = created_app(&server, json!({})).await;
    let path = format!("/apps/{}", ident(&app));
    let (status, body) = form(
        &server,
        "PUT",
        &path,
        &[("sid", &sid)],
        &[
            ("client_events", "0"),
            ("max_payload_bytes", "4096"),
            ("vapid_email", "mailto:ops@example.com"),
            ("webhooks", r#"[{"url": "http://127.0.0.1:9/hook"}]"#),
            ("legacy_auth", "true"),
            ("enabled", "1"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .rest(
            "PUT",
            &path,
            &[("apn_sandbox", "True"), ("history_max_per_channel", "null")],
            None,
            Some(&sid),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let settings = show(&server, &app, &sid).await["settings"].clone();
    assert_eq!(settings["client_events"], json!(false));
    assert_eq!(settings["max_payload_bytes"], json!(4096));
    assert_eq!(settings["vapid_email"], json!("mailto:ops@example.com"));
    assert_eq!(
        settings["webhooks"][0]["url"],
        json!("http://127.0.0.1:9/hook")
    );
    assert_eq!(settings["legacy_auth"], json!(true));
    assert_eq!(settings["apn_sandbox"], json!(true));
    assert_eq!(settings["history_max_per_channel"], Value::Null);

    // POST /apps takes them as well, from a form.
    let name = format!("form-{}", uuid::Uuid::new_v4());
    let (status, created) = form(
        &server,
        "POST",
        "/apps",
        &[],
        &[
            ("name", &name),
            ("smtp_url", "smtp://127.0.0.1:2525?sender=a@b.test"),
            ("subscription_count", "yes"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["settings"]["smtp_url"], json!(true));
    assert_eq!(created["settings"]["subscription_count"], json!(true));
    assert!(created["secret"].is_string());
}

#[tokio::test]
async fn post_apps_takes_every_setting_and_refuses_bad_ones_before_creating() {
    let server = open_server().await;
    let mut all = every_setting();
    all["name"] = json!(format!("all-{}", uuid::Uuid::new_v4()));
    all["enabled"] = json!(true);
    let (status, created) = server.rest("POST", "/apps", &[], Some(&all), None).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["settings"]["max_presence_members"], json!(7));
    assert_eq!(created["settings"]["apn_cer"], json!(true));
    assert_eq!(created["description"], json!("all of it"));

    let name = format!("refused-{}", uuid::Uuid::new_v4());
    let (status, body) = server
        .rest(
            "POST",
            "/apps",
            &[],
            Some(&json!({"name": name, "smtp_url": "ftp://mail.example.com"})),
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().starts_with("smtp_url: "));
    // Nothing was created: the name is still free.
    let (status, body) = server
        .rest("POST", "/apps", &[], Some(&json!({"name": name})), None)
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn each_bad_value_is_refused_with_its_field_named_and_nothing_applied() {
    let server = open_server().await;
    let (app, sid) = created_app(&server, json!({})).await;
    let before = show(&server, &app, &sid).await;
    let cases: &[(&str, Value)] = &[
        ("colour", json!("blue")),
        ("meta", json!({"a": 1})),
        ("name", json!("")),
        ("description", json!(12)),
        ("enabled", json!("maybe")),
        ("client_events", json!("sometimes")),
        ("max_payload_bytes", json!(0)),
        ("max_connections", json!(-1)),
        ("max_presence_members", json!(1_000_000_000)),
        ("history_max_age_secs", json!(5)),
        ("deliveries_max_age_secs", json!("soon")),
        ("smtp_url", json!("ftp://mail.example.com")),
        ("smtp_url", json!("smtp://mail.example.com?sender=nobody")),
        ("smtp_url", json!("not a url")),
        ("vapid_email", json!("nobody")),
        ("vapid_key", json!("not a key")),
        (
            "apn_auth_key",
            json!("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"),
        ),
        ("apn_cer", json!("not a certificate")),
        ("apn_key", json!("not a key")),
        ("apn_key_id", json!("short")),
        ("apn_team_id", json!("has spaces!")),
        ("apn_topic", json!("with space")),
        ("apn_url", json!("gopher://apns.example.com")),
        ("apn_sandbox", json!("perhaps")),
        ("webhooks[0].url", json!([{"url": "not a url"}])),
        (
            "webhooks[0].url",
            json!([{"url": "ftp://hooks.example.com"}]),
        ),
        (
            "webhooks[0].event_types",
            json!([{"url": "https://hooks.example.com", "event_types": ["nope"]}]),
        ),
        ("webhooks", json!("https://hooks.example.com")),
    ];
    for (field, value) in cases {
        let name = field.split('[').next().unwrap();
        // A valid change beside the bad one: refused together.
        let mut body = serde_json::Map::new();
        body.insert(name.to_owned(), value.clone());
        body.insert("client_event_rate".into(), json!(99));
        let (status, reply) = put(&server, &app, &sid, Value::Object(body)).await;
        assert_eq!(status, 400, "{field} = {value}: {reply}");
        let message = reply["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("{field}: ")),
            "{field} = {value}: the refusal names the field: {message}"
        );
    }
    // Form values are refused the same way.
    let (status, reply) = form(
        &server,
        "PUT",
        &format!("/apps/{}", ident(&app)),
        &[("sid", &sid)],
        &[("max_payload_bytes", "lots")],
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .starts_with("max_payload_bytes: ")
    );
    let after = show(&server, &app, &sid).await;
    assert_eq!(before["settings"], after["settings"], "nothing was applied");
    assert_eq!(before["name"], after["name"]);
}

#[tokio::test]
async fn assigned_fields_are_ignored_as_pushi_did() {
    let server = open_server().await;
    let (app, sid) = created_app(&server, json!({})).await;
    let (status, body) = put(
        &server,
        &app,
        &sid,
        json!({"ident": "0".repeat(64), "key": "1".repeat(64), "id": 99, "name": "kept"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let shown = show(&server, &app, &sid).await;
    assert_eq!(shown["key"], app["key"]);
    assert_eq!(shown["ident"], app["ident"]);
    assert_eq!(shown["name"], "kept");
}

#[tokio::test]
async fn configured_apps_cannot_be_changed_over_rest() {
    let server = open_server().await;
    let sid = server.pushi_login().await;
    let (status, body) = server
        .rest(
            "PUT",
            &format!("/apps/{}", server.app.ident),
            &[],
            Some(&json!({"client_events": false})),
            Some(&sid),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("configuration"));
}

// ---------------------------------------------------------------------------------------
// Settings take effect

/// A local HTTP receiver recording request bodies.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Value>>>);

impl Receiver {
    async fn start() -> (Self, String) {
        let receiver = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(any(|State(r): State<Receiver>, body: Bytes| async move {
                r.0.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
            }))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, format!("http://{addr}/hook"))
    }

    /// The webhook events received, once one satisfies `done` (or after about 10 s).
    async fn events_until(&self, done: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut events = Vec::new();
        for _ in 0..200 {
            events = self
                .0
                .lock()
                .unwrap()
                .iter()
                .flat_map(|b| b["events"].as_array().cloned().unwrap_or_default())
                .collect();
            if events.iter().any(&done) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        events
    }
}

#[tokio::test]
async fn a_webhook_set_with_put_is_called() {
    let server = open_server().await;
    let (app, sid) = created_app(&server, json!({})).await;
    let (receiver, url) = Receiver::start().await;
    let (status, body) = put(
        &server,
        &app,
        &sid,
        json!({"webhooks": [{"url": url, "event_types": ["channel_occupied"]}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let key = app["key"].as_str().unwrap();
    let mut client = common::Client::open(&format!(
        "ws://{}/app/{key}?protocol=7",
        server.running().ws_addr
    ))
    .await;
    client.recv_event("pusher:connection_established").await;
    client.subscribe("news").await;
    let events = receiver
        .events_until(|e| e["name"] == "channel_occupied" && e["channel"] == "news")
        .await;
    assert!(
        events
            .iter()
            .any(|e| e["name"] == "channel_occupied" && e["channel"] == "news"),
        "the webhook set over REST was called: {events:?}"
    );
}

#[tokio::test]
async fn a_limit_set_with_put_applies_to_the_next_publish() {
    let server = open_server().await;
    let (app, sid) = created_app(&server, json!({})).await;
    let (status, _) = put(&server, &app, &sid, json!({"max_payload_bytes": 16})).await;
    assert_eq!(status, 200);
    let (status, body) = server
        .rest(
            "POST",
            "/events",
            &[],
            Some(&json!({"channel": "news", "data": "x".repeat(64)})),
            Some(&sid),
        )
        .await;
    assert_eq!(status, 413, "{body}");
}

// ---------------------------------------------------------------------------------------
// Pushi README's subscribe / unsubscribe routes

#[tokio::test]
async fn readme_subscribe_routes_work_with_a_session() {
    let server = open_server().await;
    let (app, sid) = created_app(&server, json!({})).await;
    for app_id in [ident(&app), app["id"].to_string()] {
        let (status, record) = form(
            &server,
            "POST",
            &format!("/apps/{app_id}/subscribe"),
            &[("sid", &sid)],
            &[("user_id", "alice"), ("event", "news")],
        )
        .await;
        assert_eq!(status, 200, "{record}");
        assert_eq!(
            (record["user_id"].as_str(), record["event"].as_str()),
            (Some("alice"), Some("news"))
        );
        let (_, listed) = server
            .rest(
                "GET",
                "/subscriptions",
                &[("user_id", "alice")],
                None,
                Some(&sid),
            )
            .await;
        assert_eq!(listed["subscriptions"].as_array().unwrap().len(), 1);

        let (status, removed) = server
            .rest(
                "POST",
                &format!("/apps/{app_id}/unsubscribe"),
                &[("user_id", "alice"), ("event", "news")],
                None,
                Some(&sid),
            )
            .await;
        assert_eq!(status, 200, "{removed}");
        assert_eq!(removed["event"], "news");
        let (_, listed) = server
            .rest(
                "GET",
                "/subscriptions",
                &[("user_id", "alice")],
                None,
                Some(&sid),
            )
            .await;
        assert_eq!(listed["subscriptions"], json!([]));
    }
    // Another app's path with this session, no credentials, a missing field.
    let (status, _) = server
        .rest(
            "POST",
            "/apps/1/subscribe",
            &[("user_id", "a"), ("event", "e")],
            None,
            Some(&sid),
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = server
        .rest(
            "POST",
            &format!("/apps/{}/subscribe", ident(&app)),
            &[("user_id", "a"), ("event", "e")],
            None,
            None,
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = server
        .rest(
            "POST",
            &format!("/apps/{}/subscribe", ident(&app)),
            &[("user_id", "a")],
            None,
            Some(&sid),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("event"));
}

#[tokio::test]
async fn readme_subscribe_routes_work_signed_and_feed_personal_history() {
    let server = open_server().await;
    let path = format!("/apps/{}/subscribe", server.app.id);
    let (status, record) = server
        .api(
            "POST",
            &path,
            &[],
            Some(&json!({"user_id": "bob", "event": "alerts"})),
        )
        .await;
    assert_eq!(status, 200, "{record}");
    // Same effect as POST /subscriptions: bob's personal channel gets the channel's events.
    let mut client = server.connect_pushi().await;
    let auth = server.sign_channel(&client.socket_id, "personal-bob", None);
    let reply = client
        .pushi_subscribe("personal-bob", Some(auth), None)
        .await;
    assert_eq!(
        reply["event"], "pusher_internal:subscription_succeeded",
        "{reply}"
    );
    server.trigger("alerts", "fire", "\"hot\"").await;
    let frame = client.recv_event("fire").await;
    assert_eq!(frame["channel"], "alerts");

    let (status, removed) = server
        .api(
            "POST",
            &format!("/apps/{}/unsubscribe", server.app.id),
            &[],
            Some(&json!({"user_id": "bob", "event": "alerts"})),
        )
        .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["user_id"], "bob");
    // A bad signature is refused.
    let mut params: Vec<(String, String)> = vec![
        ("auth_key".into(), server.app.key.clone()),
        (
            "auth_timestamp".into(),
            pushi::clock::now_unix().to_string(),
        ),
        ("auth_version".into(), "1.0".into()),
        ("auth_signature".into(), "0".repeat(64)),
        ("user_id".into(), "x".into()),
        ("event".into(), "y".into()),
    ];
    params.sort();
    let (status, _) = server.raw("POST", &path, &params, String::new()).await;
    assert_eq!(status, 401);
}

// ---------------------------------------------------------------------------------------
// The PyPI client's delete_web

#[tokio::test]
async fn delete_web_takes_the_raw_url_and_the_encoded_one() {
    let server = open_server().await;
    let (_, sid) = created_app(&server, json!({})).await;
    let url = "http://127.0.0.1:9/hooks/in";
    for event in ["raw", "encoded", "all"] {
        let (status, body) = server
            .rest(
                "POST",
                "/webs",
                &[],
                Some(&json!({"url": url, "event": event})),
                Some(&sid),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // As `pushi.API.delete_web(url, event)` sends it: the URL unencoded in the path.
    let (status, body) = server
        .rest("DELETE", &format!("/webs/{url}/raw"), &[], None, Some(&sid))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["url"].as_str(), body["event"].as_str()),
        (Some(url), Some("raw"))
    );
    let encoded: String = form_urlencoded::byte_serialize(url.as_bytes()).collect();
    let (status, body) = server
        .rest(
            "DELETE",
            &format!("/webs/{encoded}/encoded"),
            &[],
            None,
            Some(&sid),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["event"], "encoded");
    let (status, body) = server
        .rest("DELETE", &format!("/webs/{encoded}"), &[], None, Some(&sid))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["subscriptions"].as_array().unwrap().len(), 1);
    let (_, listed) = server.rest("GET", "/webs", &[], None, Some(&sid)).await;
    assert_eq!(listed["subscriptions"], json!([]));
}

// ---------------------------------------------------------------------------------------
// Pushi's older presence signature

/// Joins a presence channel in Pushi's dialect signed with Pushi's older formula (the
/// channel data left out), as an unchanged Pushi backend signs it.
async fn join_with_legacy_signature(server: &TestServer) -> Value {
    let mut client = server.connect_pushi().await;
    let auth = server.sign_channel(&client.socket_id, "presence-room", None);
    client
        .pushi_subscribe(
            "presence-room",
            Some(auth),
            Some(json!({"user_id": "u1", "user_info": {}})),
        )
        .await
}

#[tokio::test]
async fn the_older_presence_signature_is_refused_naming_both_switches() {
    let server = TestServer::start().await;
    let reply = join_with_legacy_signature(&server).await;
    assert_eq!(reply["event"], "pusher:subscription_error", "{reply}");
    let text = reply.to_string();
    assert!(text.contains("legacy_auth"), "{text}");
    assert!(text.contains("PUSHI_LEGACY_AUTH"), "{text}");
    assert!(text.contains("--legacy-auth"), "{text}");
}

#[tokio::test]
async fn the_server_wide_switch_accepts_the_older_presence_signature() {
    let server = TestServer::start_with(|c| c.hub.legacy_auth = true).await;
    assert!(!server.app.settings.legacy_auth);
    let reply = join_with_legacy_signature(&server).await;
    assert_eq!(
        reply["event"], "pusher_internal:subscription_succeeded",
        "{reply}"
    );
}

// ---------------------------------------------------------------------------------------
// Configured apps' idents

#[tokio::test]
async fn a_configured_app_logs_in_with_its_derived_ident() {
    pushi::install_crypto_provider();
    let env = |name: &str| {
        match name {
            "PUSHI_APP_ID" => Some("7"),
            "PUSHI_APP_KEY" => Some("env-key"),
            "PUSHI_APP_SECRET" => Some("env-secret"),
            _ => None,
        }
        .map(str::to_owned)
    };
    let config = pushi::config::Config::load(&pushi::config::Flags::default(), &env).unwrap();
    let app = config.static_apps[0].clone();
    assert_eq!(app.ident, pushi::app::derived_ident("7", "env-key"));
    assert_ne!(app.ident, app.key);
    let server = TestServer::start_with(|c| c.static_apps = vec![app.clone()]).await;
    let sid = server.pushi_login_as(&app).await;
    let (status, shown) = server
        .rest(
            "GET",
            &format!("/apps/{}", app.ident),
            &[],
            None,
            Some(&sid),
        )
        .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["ident"], json!(app.ident));
}
