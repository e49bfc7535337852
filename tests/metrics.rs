//! The operator's metrics: every series present before traffic, per-app counts that follow real
//! traffic, latency histograms, and `/metrics` kept off the public listeners.
//!
//! The Prometheus recorder is global to the process, so each test uses its own app id and
//! reads only that app's series.

mod common;

use common::{TestServer, test_app};
use serde_json::json;

/// The value of one sample line (`name{labels} value`), if the series is there.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn app_series(name: &str, app: &str) -> String {
    format!("{name}{{app=\"{app}\"}}")
}

async fn scrape(server: &TestServer) -> String {
    let (status, body) = server.operator_get("/metrics").await;
    assert_eq!(status, 200);
    body.as_str().expect("Prometheus text").to_owned()
}

#[tokio::test]
async fn every_series_is_there_before_any_traffic() {
    let server = TestServer::start_with(|c| c.static_apps = vec![test_app("m-idle")]).await;
    let text = scrape(&server).await;
    for name in [
        "pushi_connections",
        "pushi_connections_total",
        "pushi_subscriptions",
        "pushi_events_published_total",
        "pushi_client_events_total",
        "pushi_frames_sent_total",
        "pushi_bytes_sent_total",
    ] {
        assert_eq!(
            sample(&text, &app_series(name, "m-idle")),
            Some(0.0),
            "{name} missing or not zero"
        );
    }
    for kind in pushi::metrics::DELIVERY_KINDS {
        for outcome in pushi::metrics::DELIVERY_OUTCOMES {
            let series = format!(
                "pushi_deliveries_total{{app=\"m-idle\",kind=\"{kind}\",outcome=\"{outcome}\"}}"
            );
            assert_eq!(sample(&text, &series), Some(0.0), "{series}");
        }
    }
    for name in [
        "pushi_slow_sockets_closed_total",
        "pushi_client_errors_total",
        "pushi_connections_refused_total",
        "pushi_deliveries_pending",
    ] {
        assert!(text.lines().any(|l| l.starts_with(name)), "{name} missing");
    }
    for histogram in ["pushi_publish_duration_seconds", "pushi_outbox_lag_seconds"] {
        assert!(
            text.contains(&format!("# TYPE {histogram} histogram")),
            "{histogram} missing"
        );
    }
    // Bounded cardinality: no label names a channel, a user or a socket.
    for label in ["channel=", "user=", "socket="] {
        assert!(!text.contains(label), "unbounded label {label}");
    }
}

#[tokio::test]
async fn per_app_series_follow_real_traffic() {
    let server = TestServer::start_with(|c| c.static_apps = vec![test_app("m-busy")]).await;
    let mut client = server.connect().await;
    client.subscribe("news").await;
    let (status, _) = server.trigger("news", "flash", "\"hello\"").await;
    assert_eq!(status, 200);
    client.recv_event("flash").await;

    let text = scrape(&server).await;
    let value = |name: &str| sample(&text, &app_series(name, "m-busy")).unwrap_or(-1.0);
    assert_eq!(value("pushi_connections"), 1.0);
    assert_eq!(value("pushi_connections_total"), 1.0);
    assert_eq!(value("pushi_subscriptions"), 1.0);
    assert_eq!(value("pushi_events_published_total"), 1.0);
    assert!(value("pushi_frames_sent_total") >= 1.0);
    assert!(value("pushi_bytes_sent_total") > 0.0);
    let publishes = sample(
        &text,
        "pushi_publish_duration_seconds_count{app=\"m-busy\"}",
    );
    assert_eq!(publishes, Some(1.0), "one publish timed");
    assert!(
        text.lines().any(
            |l| l.starts_with("pushi_http_request_duration_seconds_count")
                && l.contains("route=\"/apps/{app_id}/events\"")
                && l.contains("method=\"POST\"")
        ),
        "the trigger's route is timed by its template"
    );

    drop(client);
    let mut left = false;
    for _ in 0..50 {
        let text = scrape(&server).await;
        if sample(&text, &app_series("pushi_connections", "m-busy")) == Some(0.0)
            && sample(&text, &app_series("pushi_subscriptions", "m-busy")) == Some(0.0)
        {
            left = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(left, "gauges come back to zero when the socket leaves");
}

#[tokio::test]
async fn metrics_and_details_are_not_public() {
    // No admin token configured: the public listeners refuse outright.
    let server = TestServer::start_with(|c| c.static_apps = vec![test_app("m-closed")]).await;
    for path in ["/metrics", "/health/detailed"] {
        let (status, body) = server.raw("GET", path, &[], String::new()).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(
            body["error"].is_string() || body["message"].is_string(),
            "{body}"
        );
    }
    // The plain health checks stay public (load balancers read them).
    let (status, _) = server.raw("GET", "/health", &[], String::new()).await;
    assert_eq!(status, 200);

    // With an admin token: 401 without it, 200 with it.
    let server = TestServer::start_with(|c| {
        c.static_apps = vec![test_app("m-token")];
        c.admin_token = Some("operator-secret".into());
    })
    .await;
    let base = format!("http://{}", server.running().http_addr);
    for path in ["/metrics", "/health/detailed"] {
        let (status, _) = server.raw("GET", path, &[], String::new()).await;
        assert_eq!(status, 401, "{path}");
        let wrong = server
            .http
            .get(format!("{base}{path}"))
            .bearer_auth("guess")
            .send()
            .await
            .expect("request");
        assert_eq!(wrong.status().as_u16(), 401, "{path} with a wrong token");
        let right = server
            .http
            .get(format!("{base}{path}"))
            .bearer_auth("operator-secret")
            .send()
            .await
            .expect("request");
        assert_eq!(right.status().as_u16(), 200, "{path} with the token");
    }
}

#[tokio::test]
async fn the_operator_listener_serves_them_without_a_token() {
    let server = TestServer::start_with(|c| {
        c.static_apps = vec![test_app("m-op")];
        c.admin_addr = Some("127.0.0.1:0".into());
    })
    .await;
    let admin = server
        .running()
        .admin_addr
        .expect("operator listener bound");
    let http = reqwest::Client::new();
    let metrics = http
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("request");
    assert_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().await.expect("body");
    assert_eq!(
        sample(&text, &app_series("pushi_connections", "m-op")),
        Some(0.0)
    );
    let details = http
        .get(format!("http://{admin}/health/detailed"))
        .send()
        .await
        .expect("request");
    assert_eq!(details.status().as_u16(), 200);
    let body: serde_json::Value = details.json().await.expect("JSON");
    assert_eq!(body["checks"]["websocket"]["connections"], json!(0));
    // The public listener still refuses.
    let (status, _) = server.raw("GET", "/metrics", &[], String::new()).await;
    assert_eq!(status, 403);
}
