//! The whole HTTP API as a client on the internet reaches it: arbitrary methods, paths, query
//! strings (Pusher's signed parameters), headers (sessions, cookies, content types) and bodies
//! (JSON, forms, Pushi's REST fields) go through the real router of a real server (in-memory
//! SQLite, one app). Every answer must be an HTTP response; a panic or a hang is a bug.

#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

/// Paths the fuzzer starts from, so it spends its time inside the handlers rather than on 404s.
const PATHS: &[&str] = &[
    "/apps/1/events",
    "/apps/1/batch_events",
    "/apps/1/channels",
    "/apps/1/channels/presence-room",
    "/apps/1/channels/presence-room/users",
    "/apps/1/users/u1/terminate_connections",
    "/login",
    "/logout",
    "/apps",
    "/apps/ident-1",
    "/apps/ping",
    "/events",
    "/subscriptions",
    "/subscriptions/u1/news",
    "/sockets",
    "/webs",
    "/smtps",
    "/apns",
    "/web_pushes",
    "/vapid_key",
    "/messaging",
    "/messaging/webhook",
    "/deliveries",
    "/health/detailed",
];

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    method: u8,
    path: u8,
    suffix: &'a str,
    query: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
}

struct World {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let router = runtime.block_on(async {
            pushi::install_crypto_provider();
            let mut config =
                pushi::config::Config::load(&pushi::config::Flags::default(), &|_| None)
                    .expect("default config");
            config.http_port = 0;
            config.ws_port = 0;
            config.database_url = "sqlite::memory:".into();
            config.open_apps = true;
            config.notify.enabled = false;
            let mut app = pushi::app::NewApp::default().into_app();
            app.id = "1".into();
            app.key = "key-1".into();
            app.secret = "secret-1".into();
            app.ident = "ident-1".into();
            config.static_apps = vec![app];
            let server = pushi::server::start(config).await.expect("server starts");
            let router = server.router.clone();
            std::mem::forget(server);
            router
        });
        World { runtime, router }
    })
}

fuzz_target!(|input: Input<'_>| {
    let world = world();
    let method = METHODS[input.method as usize % METHODS.len()];
    let path = PATHS[input.path as usize % PATHS.len()];
    let mut uri = format!("{path}{}", input.suffix);
    if !input.query.is_empty() {
        uri.push('?');
        uri.push_str(input.query);
    }
    let mut request = Request::builder().method(method).uri(uri.as_str());
    for (name, value) in input.headers.iter().take(8) {
        request = request.header(*name, *value);
    }
    // Invalid URIs or header names are refused by the HTTP parser before the router; skip them.
    let Ok(request) = request.body(Body::from(input.body.to_vec())) else {
        return;
    };
    let response = world.runtime.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            world.router.clone().oneshot(request),
        )
        .await
    });
    let response = response.expect("the API answers within 10 s");
    let Ok(response) = response;
    assert!(response.status().as_u16() >= 100);
});
