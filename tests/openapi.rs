//! The OpenAPI document against the server it describes: every operation it lists is called
//! on a real server, and every reply is checked against the schema for its status (the
//! `default` Error schema for refusals). A route missing from the document fails the test at
//! its call; an operation in the document that no call reached fails it at the end.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::TestServer;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use serde_json::{Map, Value, json};

const TOKEN: &str = "openapi-admin-token";

struct Checker {
    doc: Value,
    server: TestServer,
    /// Operations reached: (method, path template).
    covered: BTreeSet<(String, String)>,
    no_redirects: reqwest::Client,
}

/// One call: how to sign it and what to send.
enum Sign {
    None,
    Pusher,
    Session(String),
    Admin,
    AppBasic,
}

impl Checker {
    /// The operation of the document that serves `method path`: literal segments beat
    /// templated ones, as OpenAPI says.
    fn template(&self, method: &str, path: &str) -> String {
        let segments: Vec<&str> = path.split('/').collect();
        let mut best: Option<(usize, String)> = None;
        for (template, item) in self.doc["paths"].as_object().expect("paths") {
            if item.get(method).is_none() {
                continue;
            }
            let parts: Vec<&str> = template.split('/').collect();
            if parts.len() != segments.len() {
                continue;
            }
            let mut literal = 0;
            let matches = parts.iter().zip(&segments).all(|(t, s)| {
                if t.starts_with('{') && t.ends_with('}') {
                    !s.is_empty()
                } else {
                    literal += 1;
                    t == s
                }
            });
            if matches && best.as_ref().is_none_or(|(n, _)| literal > *n) {
                best = Some((literal, template.clone()));
            }
        }
        best.map(|(_, t)| t)
            .unwrap_or_else(|| panic!("{method} {path} is served but not in the OpenAPI document"))
    }

    /// Validates one reply against the document and records the operation as covered.
    fn check(&mut self, method: &str, path: &str, status: u16, content_type: &str, body: &str) {
        let method = method.to_ascii_lowercase();
        let template = self.template(&method, path);
        let operation = &self.doc["paths"][&template][&method];
        let responses = &operation["responses"];
        let response = responses
            .get(status.to_string())
            .or_else(|| responses.get("default"))
            .unwrap_or_else(|| panic!("{method} {template}: status {status} is not documented"));
        let media = content_type.split(';').next().unwrap_or("").trim();
        match response.get("content") {
            None => assert!(
                body.is_empty() || status == 308,
                "{method} {template} {status}: undocumented body"
            ),
            Some(content) => {
                let entry = content
                    .get(media)
                    .unwrap_or_else(|| panic!("{method} {template} {status}: content type {media:?} is not documented ({content})"));
                if media == "application/json" {
                    let instance: Value = serde_json::from_str(body)
                        .unwrap_or_else(|e| panic!("{method} {template}: not JSON ({e}): {body}"));
                    self.validate(
                        &entry["schema"],
                        &instance,
                        &format!("{method} {template} {status}"),
                    );
                }
            }
        }
        self.covered.insert((method, template));
    }

    fn validate(&self, schema: &Value, instance: &Value, what: &str) {
        let errors = self.errors(schema, instance, what);
        assert!(
            errors.is_empty(),
            "{what}: the reply does not match its schema: {errors:?}\n{instance}"
        );
    }

    fn errors(&self, schema: &Value, instance: &Value, what: &str) -> Vec<String> {
        let mut root: Map<String, Value> = schema.as_object().cloned().unwrap_or_default();
        root.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        root.insert("components".into(), self.doc["components"].clone());
        let validator = jsonschema::validator_for(&Value::Object(root))
            .unwrap_or_else(|e| panic!("{what}: the schema does not compile: {e}"));
        validator
            .iter_errors(instance)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect()
    }

    /// Sends a request and checks the reply; returns the status and the body as JSON (or text).
    async fn call(
        &mut self,
        sign: Sign,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let body_text = body.map(|b| b.to_string()).unwrap_or_default();
        let mut params: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let app = self.server.app.clone();
        if let Sign::Pusher = sign {
            params.push(("auth_key".into(), app.key.clone()));
            params.push((
                "auth_timestamp".into(),
                pushi::clock::now_unix().to_string(),
            ));
            params.push(("auth_version".into(), "1.0".into()));
            if !body_text.is_empty() {
                params.push((
                    "body_md5".into(),
                    pushi::auth::body_md5(body_text.as_bytes()),
                ));
            }
            let signature = pushi::auth::sign(
                &app.secret,
                &pushi::auth::request_string_to_sign(method, path, &params),
            );
            params.push(("auth_signature".into(), signature));
        }
        let url = format!("http://{}{path}", self.server.running().http_addr);
        let mut request = self
            .no_redirects
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                url,
            )
            .query(&params);
        request = match &sign {
            Sign::Session(sid) => request.header("x-session-id", sid),
            Sign::Admin => request.header("authorization", format!("Bearer {TOKEN}")),
            Sign::AppBasic => request.header(
                "authorization",
                format!(
                    "Basic {}",
                    STANDARD.encode(format!("{}:{}", app.key, app.secret))
                ),
            ),
            Sign::None | Sign::Pusher => request,
        };
        if !body_text.is_empty() {
            request = request
                .header("content-type", "application/json")
                .body(body_text);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let is_stream = content_type.starts_with("text/event-stream");
        let text = if is_stream {
            String::new() // an endless stream: its head is what is checked
        } else {
            response.text().await.expect("body")
        };
        self.check(method, path, status, &content_type, &text);
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }
}

fn browser_keys() -> (String, String) {
    let secret = p256::SecretKey::from_slice(&[7u8; 32]).expect("a valid scalar");
    let point = secret.public_key().to_encoded_point(false);
    (
        URL_SAFE_NO_PAD.encode(point.as_bytes()),
        URL_SAFE_NO_PAD.encode([9u8; 16]),
    )
}

fn ok(status: u16, body: &Value, what: &str) {
    assert!((200..300).contains(&status), "{what}: {status} {body}");
}

#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    let server = TestServer::start_with(|c| {
        c.admin_token = Some(TOKEN.into());
        c.static_apps = vec![common::test_app("900")];
        // Deliveries to unreachable targets stay pending after their first attempt.
        c.notify.base_backoff = Duration::from_secs(60);
        c.notify.max_backoff = Duration::from_secs(60);
        c.notify.request_timeout = Duration::from_secs(2);
        common::allow_loopback(c);
    })
    .await;
    let served: Value = server
        .http
        .get(format!(
            "http://{}/openapi.json",
            server.running().http_addr
        ))
        .send()
        .await
        .expect("served")
        .json()
        .await
        .expect("JSON");
    let mut c = Checker {
        doc: served,
        server,
        covered: BTreeSet::new(),
        no_redirects: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
    };
    // The checker itself: references resolve, and a wrong reply is caught.
    let delivery = json!({"$ref": "#/components/schemas/Deliveries"});
    let wrong = json!({"deliveries": [{"id": "seven", "status": "lost"}], "counts": {}});
    assert!(c.errors(&delivery, &wrong, "self-check").len() >= 3);
    let app = c.server.app.clone();
    let mut socket = c.server.connect().await;
    socket
        .join_presence(&c.server, "presence-room", "u1", json!({"name": "U"}))
        .await;
    socket.subscribe("news").await;

    // Pusher's HTTP API.
    let events = format!("/apps/{}/events", app.id);
    let (s, b) = c
        .call(
            Sign::Pusher,
            "POST",
            &events,
            &[],
            Some(
                json!({"name": "e", "channel": "news", "data": "x", "info": "subscription_count"}),
            ),
        )
        .await;
    ok(s, &b, "trigger");
    let (s, _) = c
        .call(
            Sign::Pusher,
            "POST",
            &events,
            &[],
            Some(json!({"channel": "news", "data": "x"})),
        )
        .await;
    assert_eq!(s, 400, "a refusal is checked against the Error schema");
    let (s, _) = c
        .call(
            Sign::None,
            "POST",
            &events,
            &[],
            Some(json!({"name": "e", "channel": "news", "data": "x"})),
        )
        .await;
    assert_eq!(s, 401);
    let batch = format!("/apps/{}/batch_events", app.id);
    let (s, b) = c.call(Sign::Pusher, "POST", &batch, &[], Some(json!({"batch": [{"name": "e", "channel": "news", "data": "x", "info": "subscription_count"}]}))).await;
    ok(s, &b, "batch");
    let (s, b) = c
        .call(
            Sign::Pusher,
            "GET",
            &format!("/apps/{}/channels", app.id),
            &[("filter_by_prefix", "presence-"), ("info", "user_count")],
            None,
        )
        .await;
    ok(s, &b, "channels");
    let (s, b) = c
        .call(
            Sign::Pusher,
            "GET",
            &format!("/apps/{}/channels/presence-room", app.id),
            &[("info", "user_count,subscription_count")],
            None,
        )
        .await;
    ok(s, &b, "channel");
    let (s, b) = c
        .call(
            Sign::Pusher,
            "GET",
            &format!("/apps/{}/channels/presence-room/users", app.id),
            &[],
            None,
        )
        .await;
    ok(s, &b, "users");
    let (s, b) = c
        .call(
            Sign::Pusher,
            "POST",
            &format!("/apps/{}/users/nobody/terminate_connections", app.id),
            &[],
            None,
        )
        .await;
    ok(s, &b, "terminate");
    let (s, b) = c
        .call(
            Sign::Pusher,
            "POST",
            "/users/nobody/terminate_connections",
            &[],
            None,
        )
        .await;
    ok(s, &b, "terminate by key");

    // Pushi's REST API.
    let login = [
        ("app_id", app.ident.as_str()),
        ("app_key", app.key.as_str()),
        ("app_secret", app.secret.as_str()),
    ];
    let (s, b) = c.call(Sign::None, "GET", "/login", &login, None).await;
    ok(s, &b, "login");
    let (s, b) = c
        .call(
            Sign::None,
            "POST",
            "/login",
            &[],
            Some(json!({"app_id": app.ident, "app_key": app.key, "app_secret": app.secret})),
        )
        .await;
    ok(s, &b, "login (POST)");
    let sid = b["token"].as_str().expect("token").to_owned();
    let session = || Sign::Session(sid.clone());
    let (s, b) = c.call(session(), "GET", "/apps", &[], None).await;
    ok(s, &b, "apps");
    let (s, b) = c
        .call(
            Sign::Admin,
            "POST",
            "/apps",
            &[],
            Some(json!({"name": "made-by-pushi-api"})),
        )
        .await;
    ok(s, &b, "create app");
    let created = b.clone();
    let (s, b) = c.call(session(), "GET", "/apps/ping", &[], None).await;
    ok(s, &b, "ping");
    let (s, b) = c
        .call(session(), "GET", &format!("/apps/{}", app.ident), &[], None)
        .await;
    ok(s, &b, "show app");
    let (s, b) = c
        .call(
            session(),
            "PUT",
            &format!("/apps/{}", app.ident),
            &[],
            Some(json!({"client_events": true})),
        )
        .await;
    assert_eq!(
        s, 409,
        "a configured app is changed in the configuration: {b}"
    );
    // A stored app takes every setting over REST.
    let text = |v: &Value| v.as_str().expect("a string").to_owned();
    let (s, b) = c
        .call(
            Sign::None,
            "GET",
            "/login",
            &[
                ("app_id", &text(&created["ident"])),
                ("app_key", &text(&created["key"])),
                ("app_secret", &text(&created["secret"])),
            ],
            None,
        )
        .await;
    ok(s, &b, "login as the created app");
    let created_session = Sign::Session(text(&b["token"]));
    let (s, b) = c
        .call(
            created_session,
            "PUT",
            &format!("/apps/{}", text(&created["ident"])),
            &[],
            Some(json!({"client_events": false, "smtp_url": "smtp://mail.example.com?sender=a@b.test"})),
        )
        .await;
    ok(s, &b, "update app");
    assert_eq!(b["settings"]["smtp_url"], json!(true));
    let seed = format!("/apps/{}", app.ident);
    let (s, b) = c
        .call(
            session(),
            "POST",
            &format!("{seed}/subscribe"),
            &[],
            Some(json!({"user_id": "u9", "event": "news"})),
        )
        .await;
    ok(s, &b, "README subscribe");
    let (s, b) = c
        .call(
            Sign::Pusher,
            "POST",
            &format!("/apps/{}/unsubscribe", app.id),
            &[],
            Some(json!({"user_id": "u9", "event": "news"})),
        )
        .await;
    ok(s, &b, "README unsubscribe");
    let (s, b) = c
        .call(
            session(),
            "POST",
            "/events",
            &[],
            Some(json!({"data": "hello", "channel": "news", "event": "stored"})),
        )
        .await;
    ok(s, &b, "create event");
    let (s, b) = c
        .call(session(), "GET", "/events", &[("count", "5")], None)
        .await;
    ok(s, &b, "list events");
    assert!(!b["events"].as_array().expect("events").is_empty());
    let (s, b) = c
        .call(
            session(),
            "POST",
            "/subscriptions",
            &[],
            Some(json!({"user_id": "u1", "event": "news"})),
        )
        .await;
    ok(s, &b, "subscribe");
    let (s, b) = c
        .call(
            session(),
            "GET",
            "/subscriptions",
            &[("user_id", "u1")],
            None,
        )
        .await;
    ok(s, &b, "subscriptions");
    let (s, b) = c
        .call(session(), "DELETE", "/subscriptions/u1/news", &[], None)
        .await;
    ok(s, &b, "unsubscribe");
    let (s, b) = c.call(session(), "GET", "/sockets", &[], None).await;
    ok(s, &b, "sockets");
    let socket_path = format!("/sockets/{}", socket.socket_id);
    let (s, b) = c.call(session(), "GET", &socket_path, &[], None).await;
    ok(s, &b, "socket");
    let (s, b) = c.call(session(), "POST", &socket_path, &[], None).await;
    ok(s, &b, "socket (POST)");

    // Delivery targets of every kind.
    let (p256dh, auth) = browser_keys();
    // Each kind: a target kept on "news" (publishes there record deliveries), and a second
    // one subscribed twice, then removed one channel and then wholly.
    let targets = [
        (
            "webs",
            "url",
            "http://127.0.0.1:9/hook",
            "http://127.0.0.1:9/gone",
        ),
        ("smtps", "email", "ops@example.com", "gone@example.com"),
        (
            "apns",
            "token",
            "00ff00ff00ff00ff00ff00ff00ff00ff",
            "abcdef",
        ),
        (
            "web_pushes",
            "endpoint",
            "http://127.0.0.1:9/push",
            "http://127.0.0.1:9/gone",
        ),
    ];
    for (collection, field, kept, removed) in targets {
        let body = |target: &str, event: &str| {
            let mut body = json!({field: target, "event": event});
            if collection == "web_pushes" {
                body["p256dh"] = json!(p256dh);
                body["auth"] = json!(auth);
            }
            body
        };
        for (target, event) in [(kept, "news"), (removed, "news"), (removed, "other")] {
            let (s, b) = c
                .call(
                    session(),
                    "POST",
                    &format!("/{collection}"),
                    &[],
                    Some(body(target, event)),
                )
                .await;
            ok(s, &b, collection);
        }
        let (s, b) = c
            .call(session(), "GET", &format!("/{collection}"), &[], None)
            .await;
        ok(s, &b, collection);
        let encoded: String = form_urlencoded::byte_serialize(removed.as_bytes()).collect();
        let (s, b) = c
            .call(
                session(),
                "DELETE",
                &format!("/{collection}/{encoded}/other"),
                &[],
                None,
            )
            .await;
        ok(s, &b, collection);
        let (s, b) = c
            .call(
                session(),
                "DELETE",
                &format!("/{collection}/{encoded}"),
                &[],
                None,
            )
            .await;
        ok(s, &b, collection);
    }
    let (s, b) = c.call(session(), "GET", "/vapid_key", &[], None).await;
    ok(s, &b, "vapid key");

    // Direct messaging (answered at once: the targets are unreachable).
    let wait = [("wait", "0")];
    let (s, b) = c
        .call(
            session(),
            "POST",
            "/messaging/webhook",
            &wait,
            Some(json!({"urls": ["http://127.0.0.1:9/direct"], "data": {"a": 1}})),
        )
        .await;
    ok(s, &b, "messaging webhook");
    let (s, b) = c
        .call(
            session(),
            "POST",
            "/messaging/email",
            &wait,
            Some(json!({"to": "ops@example.com", "subject": "S", "body": "B"})),
        )
        .await;
    ok(s, &b, "messaging email");
    let (s, b) = c
        .call(
            session(),
            "POST",
            "/messaging/apn",
            &wait,
            Some(json!({"tokens": ["00ff"], "message": "hi"})),
        )
        .await;
    ok(s, &b, "messaging apn");
    let (s, b) = c.call(session(), "POST", "/messaging/web_push", &wait, Some(json!({"subscriptions": [{"endpoint": "http://127.0.0.1:9/push", "p256dh": p256dh, "auth": auth}], "message": "hi"}))).await;
    ok(s, &b, "messaging web push");
    for path in ["/messaging", "/messaging/send"] {
        let (s, b) = c.call(session(), "POST", path, &wait, Some(json!({"adapters": ["webhook", "nope"], "webhook_urls": ["http://127.0.0.1:9/many"], "data": {"b": 2}}))).await;
        ok(s, &b, path);
    }
    let (s, b) = c
        .call(session(), "GET", "/deliveries", &[("count", "10")], None)
        .await;
    ok(s, &b, "deliveries");

    // Operations.
    for path in [
        "/health",
        "/health/live",
        "/health/ready",
        "/health/detailed",
        "/metrics",
        "/",
        "/info",
        "/versions",
        "/openapi.json",
        "/dashboard",
        "/dashboard/",
        "/dashboard/dashboard.js",
    ] {
        // The operator's routes need the admin token on a public listener.
        let sign = if ["/metrics", "/health/detailed"].contains(&path) {
            Sign::Admin
        } else {
            Sign::None
        };
        let (s, b) = c.call(sign, "GET", path, &[], None).await;
        assert!(s < 400, "{path}: {s} {b}");
    }

    // The admin API.
    let (s, b) = c
        .call(Sign::Admin, "GET", "/admin/api/session", &[], None)
        .await;
    ok(s, &b, "session");
    let (s, b) = c
        .call(Sign::AppBasic, "GET", "/admin/api/session", &[], None)
        .await;
    ok(s, &b, "session (app)");
    let (s, b) = c
        .call(Sign::Admin, "GET", "/admin/api/apps", &[], None)
        .await;
    ok(s, &b, "admin apps");
    let (s, created) = c
        .call(
            Sign::Admin,
            "POST",
            "/admin/api/apps",
            &[],
            Some(json!({"name": "made-by-admin-api", "max_connections": 10})),
        )
        .await;
    ok(s, &created, "admin create");
    let made = format!("/admin/api/apps/{}", created["id"].as_str().expect("id"));
    let (s, b) = c.call(Sign::Admin, "GET", &made, &[], None).await;
    ok(s, &b, "admin show");
    let (s, b) = c
        .call(
            Sign::Admin,
            "PATCH",
            &made,
            &[],
            Some(json!({"webhooks": [{"url": "https://example.com/h"}]})),
        )
        .await;
    ok(s, &b, "admin change");
    let (s, b) = c
        .call(
            Sign::Admin,
            "PATCH",
            &made,
            &[],
            Some(json!({"max_connections": 0})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = c
        .call(Sign::Admin, "POST", &format!("{made}/secret"), &[], None)
        .await;
    ok(s, &b, "admin rotate");
    let own = format!("/admin/api/apps/{}", app.id);
    let (s, b) = c
        .call(Sign::AppBasic, "POST", &format!("{own}/secret"), &[], None)
        .await;
    assert_eq!(s, 409, "a configured app's secret: {b}");
    let (s, b) = c.call(Sign::AppBasic, "GET", &made, &[], None).await;
    assert_eq!(s, 403, "another app: {b}");
    let (s, b) = c
        .call(Sign::AppBasic, "GET", &format!("{own}/live"), &[], None)
        .await;
    ok(s, &b, "live");
    let (s, b) = c
        .call(Sign::AppBasic, "GET", &format!("{own}/stream"), &[], None)
        .await;
    ok(s, &b, "stream");
    let (s, b) = c
        .call(
            Sign::AppBasic,
            "POST",
            &format!("{own}/events"),
            &[],
            Some(json!({"channels": ["news"], "event": "from-admin", "data": {"x": 1}})),
        )
        .await;
    ok(s, &b, "admin publish");
    let (s, b) = c
        .call(
            Sign::AppBasic,
            "GET",
            &format!("{own}/deliveries"),
            &[("status", "pending")],
            None,
        )
        .await;
    ok(s, &b, "admin deliveries");
    let pending = b["deliveries"][0]["id"]
        .as_i64()
        .expect("a pending delivery");
    let delivery = format!("{own}/deliveries/{pending}");
    let (s, b) = c
        .call(
            Sign::AppBasic,
            "POST",
            &format!("{delivery}/give_up"),
            &[],
            None,
        )
        .await;
    ok(s, &b, "give up");
    let (s, b) = c
        .call(
            Sign::AppBasic,
            "POST",
            &format!("{delivery}/retry"),
            &[],
            None,
        )
        .await;
    ok(s, &b, "retry");

    // Logging out last: the session ends.
    let (s, b) = c.call(session(), "GET", "/logout", &[], None).await;
    ok(s, &b, "logout");
    let (s, b) = c.call(session(), "POST", "/logout", &[], None).await;
    ok(s, &b, "logout (POST)");

    let documented: BTreeSet<(String, String)> = c.doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    let missed: Vec<_> = documented.difference(&c.covered).collect();
    assert!(missed.is_empty(), "documented but never called: {missed:?}");
}
