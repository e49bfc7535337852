//! Pusher's HTTP API against a real server: signing, triggers, queries, errors.

mod common;

use common::TestServer;
use serde_json::json;

#[tokio::test]
async fn bad_signatures_are_401_and_name_the_string_to_sign() {
    let server = TestServer::start().await;
    let mut wrong = server.app.clone();
    wrong.secret = "not-the-secret".into();
    let path = format!("/apps/{}/events", server.app.id);
    let body = json!({"name": "e", "channel": "c", "data": "d"});
    let (status, err) = server.api_as(&wrong, "POST", &path, &[], Some(&body)).await;
    assert_eq!(status, 401);
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("POST\\n/apps/1/events\\nauth_key="),
        "{message}"
    );
    assert_eq!(err["code"], 401);

    // Missing auth entirely.
    let (status, err) = server.raw("POST", &path, &[], body.to_string()).await;
    assert_eq!(status, 401);
    assert!(err["message"].as_str().unwrap().contains("auth_key"));
}

#[tokio::test]
async fn stale_timestamps_and_tampered_bodies_are_refused() {
    let server = TestServer::start().await;
    let path = format!("/apps/{}/events", server.app.id);
    let body = json!({"name": "e", "channel": "c", "data": "d"}).to_string();
    let mut params = vec![
        ("auth_key".to_string(), server.app.key.clone()),
        (
            "auth_timestamp".to_string(),
            (pushi::clock::now_unix() - 10_000).to_string(),
        ),
        ("auth_version".to_string(), "1.0".to_string()),
        (
            "body_md5".to_string(),
            pushi::auth::body_md5(body.as_bytes()),
        ),
    ];
    let sig = pushi::auth::sign(
        &server.app.secret,
        &pushi::auth::request_string_to_sign("POST", &path, &params),
    );
    params.push(("auth_signature".into(), sig));
    let (status, err) = server.raw("POST", &path, &params, body.clone()).await;
    assert_eq!(status, 401);
    assert!(err["message"].as_str().unwrap().contains("auth_timestamp"));

    let mut params = params[..3].to_vec();
    params[1].1 = pushi::clock::now_unix().to_string();
    params.push(("body_md5".into(), pushi::auth::body_md5(b"something else")));
    let sig = pushi::auth::sign(
        &server.app.secret,
        &pushi::auth::request_string_to_sign("POST", &path, &params),
    );
    params.push(("auth_signature".into(), sig));
    let (status, err) = server.raw("POST", &path, &params, body).await;
    assert_eq!(status, 401);
    assert!(err["message"].as_str().unwrap().contains("body_md5"));
}

#[tokio::test]
async fn unknown_apps_and_routes_are_404() {
    let server = TestServer::start().await;
    let mut ghost = server.app.clone();
    ghost.id = "999".into();
    let (status, err) = server
        .api_as(
            &ghost,
            "POST",
            "/apps/999/events",
            &[],
            Some(&json!({"name": "e", "channel": "c", "data": "d"})),
        )
        .await;
    assert_eq!(status, 404);
    assert!(err["message"].as_str().unwrap().contains("999"));
    let (status, _) = server
        .raw("GET", "/no/such/route", &[], String::new())
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn disabled_apps_are_403() {
    let server = TestServer::start_with(|c| {
        let mut off = common::test_app("2");
        off.enabled = false;
        c.static_apps.push(off);
    })
    .await;
    let off = common::test_app("2");
    let (status, _) = server
        .api_as(
            &off,
            "POST",
            "/apps/2/events",
            &[],
            Some(&json!({"name": "e", "channel": "c", "data": "d"})),
        )
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn oversized_and_malformed_triggers_are_rejected_clearly() {
    let server = TestServer::start().await;
    let path = format!("/apps/{}/events", server.app.id);
    let big = "x".repeat(11 * 1024);
    let (status, err) = server
        .api(
            "POST",
            &path,
            &[],
            Some(&json!({"name": "e", "channel": "c", "data": big})),
        )
        .await;
    assert_eq!(status, 413);
    assert!(err["message"].as_str().unwrap().contains("bytes"));

    for (body, needle) in [
        (json!({"channel": "c", "data": "d"}), "name"),
        (json!({"name": "e", "data": "d"}), "channel"),
        (json!({"name": "e", "channel": "c"}), "data"),
        (
            json!({"name": "e", "channel": "bad channel", "data": "d"}),
            "channel",
        ),
        (
            json!({"name": "e", "channel": "c", "data": "d", "socket_id": "nope"}),
            "socket_id",
        ),
        (
            json!({"name": "e", "channels": (0..101).map(|i| format!("c{i}")).collect::<Vec<_>>(), "data": "d"}),
            "100",
        ),
        (
            json!({"name": "x".repeat(201), "channel": "c", "data": "d"}),
            "event name",
        ),
    ] {
        let (status, err) = server.api("POST", &path, &[], Some(&body)).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            err["message"].as_str().unwrap().contains(needle),
            "{err} should mention {needle}"
        );
    }
    let (status, _) = server
        .api("POST", &path, &[], Some(&json!("not an object")))
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn trigger_info_reports_counts() {
    let server = TestServer::start().await;
    let mut c = server.connect().await;
    c.join_presence(&server, "presence-i", "u", json!({})).await;
    let path = format!("/apps/{}/events", server.app.id);
    let (status, body) = server
        .api(
            "POST",
            &path,
            &[],
            Some(&json!({"name": "e", "channels": ["presence-i", "public-i"], "data": "d", "info": "user_count,subscription_count"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"channels": {"presence-i": {"user_count": 1, "subscription_count": 1}, "public-i": {"subscription_count": 0}}})
    );
}

#[tokio::test]
async fn batch_triggers() {
    let server = TestServer::start().await;
    let mut c = server.connect().await;
    c.subscribe("b1").await;
    c.subscribe("b2").await;
    let path = format!("/apps/{}/batch_events", server.app.id);
    let (status, body) = server
        .api(
            "POST",
            &path,
            &[],
            Some(&json!({"batch": [
                {"name": "one", "channel": "b1", "data": "1"},
                {"name": "two", "channel": "b2", "data": "2", "info": "subscription_count"},
            ]})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"batch": [{}, {"subscription_count": 1}]}));
    assert_eq!(c.recv_event("one").await["data"], "1");
    assert_eq!(c.recv_event("two").await["data"], "2");

    let too_many: Vec<_> = (0..11)
        .map(|i| json!({"name": "e", "channel": "b1", "data": i.to_string()}))
        .collect();
    let (status, _) = server
        .api("POST", &path, &[], Some(&json!({"batch": too_many})))
        .await;
    assert_eq!(status, 400);
    // One bad event: nothing is published.
    let (status, _) = server
        .api("POST", &path, &[], Some(&json!({"batch": [{"name": "ok", "channel": "b1", "data": "1"}, {"name": "bad", "channel": "b1", "data": "x".repeat(20000)}]})))
        .await;
    assert_eq!(status, 413);
    c.expect_silence(200).await;
}

#[tokio::test]
async fn a_batch_with_any_bad_event_publishes_nothing() {
    let server = TestServer::start().await;
    let mut c = server.connect().await;
    c.subscribe("b1").await;
    let path = format!("/apps/{}/batch_events", server.app.id);
    let good = json!({"name": "ok", "channel": "b1", "data": "1"});
    let bad_events = [
        (
            json!({"name": "bad", "channel": "not a channel!", "data": "2"}),
            "channel",
        ),
        (
            json!({"name": "", "channel": "b1", "data": "2"}),
            "event name",
        ),
        (
            json!({"name": "x".repeat(201), "channel": "b1", "data": "2"}),
            "event name",
        ),
        (
            json!({"name": "bad", "channel": "b1", "data": "2", "socket_id": "nope"}),
            "socket_id",
        ),
        (
            json!({"name": "bad", "channel": "b1", "data": "2", "info": "colour"}),
            "info",
        ),
        (
            json!({"name": "bad", "channels": [], "data": "2"}),
            "channel",
        ),
    ];
    for (bad, named) in bad_events {
        let (status, body) = server
            .api("POST", &path, &[], Some(&json!({"batch": [good, bad]})))
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("batch event 1: "), "{message}");
        assert!(message.contains(named), "{message} should name the {named}");
        c.expect_silence(100).await;
    }
    // The same first event in a good batch does arrive.
    let (status, _) = server
        .api("POST", &path, &[], Some(&json!({"batch": [good]})))
        .await;
    assert_eq!(status, 200);
    assert_eq!(c.recv_event("ok").await["data"], "1");
}

#[tokio::test]
async fn channel_queries() {
    let server = TestServer::start().await;
    let mut c = server.connect().await;
    c.subscribe("news-1").await;
    c.subscribe("news-2").await;
    c.subscribe("sport").await;
    c.join_presence(&server, "presence-lobby", "u1", json!({}))
        .await;
    let list = format!("/apps/{}/channels", server.app.id);
    let (_, all) = server.api("GET", &list, &[], None).await;
    assert_eq!(all["channels"].as_object().unwrap().len(), 4);
    let (_, news) = server
        .api("GET", &list, &[("filter_by_prefix", "news-")], None)
        .await;
    assert_eq!(news, json!({"channels": {"news-1": {}, "news-2": {}}}));
    let (_, presence) = server
        .api(
            "GET",
            &list,
            &[("filter_by_prefix", "presence-"), ("info", "user_count")],
            None,
        )
        .await;
    assert_eq!(
        presence,
        json!({"channels": {"presence-lobby": {"user_count": 1}}})
    );
    let (status, _) = server
        .api("GET", &list, &[("info", "user_count")], None)
        .await;
    assert_eq!(status, 400);

    let one = format!("/apps/{}/channels/empty", server.app.id);
    let (_, info) = server
        .api("GET", &one, &[("info", "subscription_count")], None)
        .await;
    assert_eq!(info, json!({"occupied": false, "subscription_count": 0}));
    let (status, _) = server
        .api("GET", &one, &[("info", "user_count")], None)
        .await;
    assert_eq!(status, 400);
    let (status, _) = server.api("GET", &format!("{one}/users"), &[], None).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn one_apps_credentials_cannot_touch_another_app() {
    let server = TestServer::start_with(|c| c.static_apps.push(common::test_app("2"))).await;
    let other = common::test_app("2");
    // App 2's key and secret against app 1's path: refused.
    let (status, _) = server
        .api_as(
            &other,
            "POST",
            "/apps/1/events",
            &[],
            Some(&json!({"name": "e", "channel": "c", "data": "d"})),
        )
        .await;
    assert_eq!(status, 401);
    // Events of app 2 do not reach app 1's sockets.
    let mut c = server.connect().await;
    c.subscribe("shared-name").await;
    let (status, _) = server
        .api_as(
            &other,
            "POST",
            "/apps/2/events",
            &[],
            Some(&json!({"name": "e", "channel": "shared-name", "data": "d"})),
        )
        .await;
    assert_eq!(status, 200);
    c.expect_silence(200).await;
}

#[tokio::test]
async fn health_and_metrics() {
    let server = TestServer::start().await;
    let (status, body) = server.raw("GET", "/health", &[], String::new()).await;
    assert_eq!((status, body["status"].clone()), (200, json!("ok")));
    let (status, body) = server.raw("GET", "/health/ready", &[], String::new()).await;
    assert_eq!((status, body["ready"].clone()), (200, json!(true)));
    let _c = server.connect().await;
    let (status, body) = server.operator_get("/metrics").await;
    assert_eq!(status, 200);
    assert!(body.as_str().unwrap().contains("pushi_connections"));
}

#[tokio::test]
async fn terminate_without_the_apps_prefix_as_the_pypi_sdk_sends_it() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    client.signin(&server, &json!({"id": "py-user"})).await;
    let (status, body) = server
        .api(
            "POST",
            "/users/py-user/terminate_connections",
            &[],
            Some(&json!({})),
        )
        .await;
    assert_eq!((status, body), (200, json!({})));
    assert_eq!(client.expect_close().await, Some(4009));
    // A wrong key is refused, not routed to another app.
    let mut ghost = server.app.clone();
    ghost.key = "unknown".into();
    let (status, _) = server
        .api_as(
            &ghost,
            "POST",
            "/users/py-user/terminate_connections",
            &[],
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, 401);
}
