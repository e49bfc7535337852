//! TLS at the listeners: `wss://` and `https://` with a throwaway CA made here, certificate
//! renewal under live connections (SIGHUP-free: the file watcher), broken files at start, and
//! the shutdown order (a connection attempted after shutdown began is refused).
//!
//! The clients are real: tokio-rustls trusting only the test CA, tungstenite for WebSocket,
//! hand-written HTTP/1.1 over the TLS stream for the API.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pushi::tls::TlsFiles;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;

use common::{TestServer, WAIT};

/// A CA and certificates it issues for 127.0.0.1, written to a temporary directory.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "pushi TLS test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let dir = std::env::temp_dir().join(format!("pushi-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self { ca, dir }
    }

    /// Issues a certificate named `name` (its CN) and writes it as `file`.pem / `file`.key.
    fn issue(&self, file: &str, name: &str) -> TlsFiles {
        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "127.0.0.2".to_owned()])
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.ca).expect("certificate");
        let files = TlsFiles {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        files
    }

    fn connector(&self, alpn: &[&[u8]]) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(self.ca.pem().as_bytes()).expect("CA PEM");
        roots.add(ca).expect("CA root");
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsConnector::from(Arc::new(config))
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls_connect(pki: &Pki, addr: std::net::SocketAddr, alpn: &[&[u8]]) -> TlsStream {
    let tcp = TcpStream::connect(addr).await.expect("TCP connect");
    let name = ServerName::from(addr.ip());
    pki.connector(alpn)
        .connect(name, tcp)
        .await
        .expect("TLS handshake with a certificate the test CA issued")
}

/// The common name of the certificate the server presented.
fn peer_name(stream: &TlsStream) -> String {
    let (_, conn) = stream.get_ref();
    let der = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a peer certificate")
        .to_vec();
    // The CN is plain ASCII inside the DER; find which of the names we issued it carries.
    let text = String::from_utf8_lossy(&der).to_string();
    ["first", "second"]
        .into_iter()
        .find(|n| text.contains(&format!("cert-{n}")))
        .unwrap_or("unknown")
        .to_owned()
}

async fn https_get(stream: &mut TlsStream, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut response = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

async fn wss_connect(
    pki: &Pki,
    server: &TestServer,
) -> tokio_tungstenite::WebSocketStream<TlsStream> {
    let stream = tls_connect(pki, server.running().ws_addr, &[b"http/1.1"]).await;
    let url = format!(
        "wss://{}/app/{}?protocol=7&client=test&version=1",
        server.running().ws_addr,
        server.app.key
    );
    let (ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("WebSocket upgrade over TLS");
    ws
}

async fn next_event(ws: &mut tokio_tungstenite::WebSocketStream<TlsStream>) -> Value {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).expect("JSON frame");
        }
    }
}

#[tokio::test]
async fn wss_and_https_with_separate_certificates_and_alpn() {
    let pki = Pki::new();
    let api = pki.issue("api", "cert-first");
    let ws = pki.issue("ws", "cert-second");
    let mut server = TestServer::start_with(|c| {
        c.http_tls = Some(api);
        c.ws_tls = Some(ws);
        // Port 0 on one host would be one listener; another loopback address makes two.
        c.ws_host = "127.0.0.2".into();
    })
    .await;
    assert_ne!(server.running().http_addr, server.running().ws_addr);

    // The API listener negotiates HTTP/2 when offered, HTTP/1.1 otherwise.
    let h2 = tls_connect(&pki, server.running().http_addr, &[b"h2", b"http/1.1"]).await;
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut api_stream = tls_connect(&pki, server.running().http_addr, &[b"http/1.1"]).await;
    assert_eq!(peer_name(&api_stream), "first");
    let (status, body) = https_get(&mut api_stream, "/health").await;
    assert_eq!(status, 200, "{body}");

    // The WebSocket listener offers HTTP/1.1 only, and carries the Pusher protocol.
    let ws_stream = tls_connect(&pki, server.running().ws_addr, &[b"h2", b"http/1.1"]).await;
    assert_eq!(
        ws_stream.get_ref().1.alpn_protocol(),
        Some(&b"http/1.1"[..])
    );
    assert_eq!(peer_name(&ws_stream), "second");
    let mut socket = wss_connect(&pki, &server).await;
    let established = next_event(&mut socket).await;
    assert_eq!(established["event"], "pusher:connection_established");
    socket
        .send(Message::text(
            r#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#,
        ))
        .await
        .expect("subscribe");
    let reply = next_event(&mut socket).await;
    assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");
    // A signed trigger over HTTPS, through a client that trusts only the test CA.
    let https = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca.pem().as_bytes()).expect("CA")])
        .build()
        .expect("HTTPS client");
    let base = format!("https://{}", server.running().http_addr);
    server.use_client(https, base);
    let (status, _) = server
        .trigger("news", "headline", "{\"title\":\"hi\"}")
        .await;
    assert_eq!(status, 200);
    let event = next_event(&mut socket).await;
    assert_eq!(event["event"], "headline");
}

#[tokio::test]
async fn one_port_serves_tls_for_both_protocols() {
    let pki = Pki::new();
    let files = pki.issue("both", "cert-first");
    let server = TestServer::start_with(|c| {
        c.ws_tls = Some(files);
        c.ws_port = 0;
        c.http_port = 0;
        c.ws_host = c.http_host.clone();
    })
    .await;
    // Port 0 for both means "the same listener" only when equal; make sure they are.
    assert_eq!(server.running().http_addr, server.running().ws_addr);
    let mut socket = wss_connect(&pki, &server).await;
    assert_eq!(
        next_event(&mut socket).await["event"],
        "pusher:connection_established"
    );
    let mut stream = tls_connect(&pki, server.running().http_addr, &[b"http/1.1"]).await;
    assert_eq!(https_get(&mut stream, "/health").await.0, 200);
}

#[tokio::test]
async fn renewed_certificate_reaches_new_handshakes_while_open_connections_stay() {
    let pki = Pki::new();
    let files = pki.issue("live", "cert-first");
    let server = TestServer::start_with(|c| c.ws_tls = Some(files.clone())).await;
    let mut before = wss_connect(&pki, &server).await;
    next_event(&mut before).await;

    // A renewal writes new files in place, as an ACME client does.
    let renewed = pki.issue("renewed", "cert-second");
    std::fs::copy(&renewed.cert, &files.cert).expect("replace certificate");
    std::fs::copy(&renewed.key, &files.key).expect("replace key");
    let deadline = tokio::time::Instant::now() + pushi::tls::WATCH_EVERY * 3;
    loop {
        let stream = tls_connect(&pki, server.running().ws_addr, &[b"http/1.1"]).await;
        if peer_name(&stream) == "second" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A broken renewal keeps the good certificate.
    std::fs::write(&files.key, "not a key").expect("break the key");
    tokio::time::sleep(pushi::tls::WATCH_EVERY + Duration::from_secs(1)).await;
    let stream = tls_connect(&pki, server.running().ws_addr, &[b"http/1.1"]).await;
    assert_eq!(peer_name(&stream), "second");

    // The connection opened before the renewal still works.
    before
        .send(Message::text(r#"{"event":"pusher:ping","data":{}}"#))
        .await
        .expect("ping");
    assert_eq!(next_event(&mut before).await["event"], "pusher:pong");
}

#[tokio::test]
async fn bad_files_at_start_name_the_file_and_the_problem() {
    let pki = Pki::new();
    let good = pki.issue("good", "cert-first");
    let other = pki.issue("other", "cert-second");
    let garbage = pki.dir.join("garbage.pem");
    std::fs::write(&garbage, "hello").expect("write");
    let cases = [
        (
            TlsFiles {
                cert: pki.dir.join("missing.pem"),
                key: good.key.clone(),
            },
            "missing.pem",
        ),
        (
            TlsFiles {
                cert: good.cert.clone(),
                key: garbage.clone(),
            },
            "garbage.pem",
        ),
        (
            TlsFiles {
                cert: garbage.clone(),
                key: good.key.clone(),
            },
            "garbage.pem",
        ),
        (
            TlsFiles {
                cert: good.cert.clone(),
                key: other.key.clone(),
            },
            "other.key",
        ),
    ];
    for (files, named) in cases {
        let mut config = common::test_config();
        config.http_tls = Some(files);
        let error = match pushi::server::start(config).await {
            Ok(_) => panic!("a broken TLS pair must stop the start ({named})"),
            Err(e) => e.to_string(),
        };
        assert!(error.contains(named), "{error:?} should name {named}");
        assert_eq!(error.lines().count(), 1, "one line: {error:?}");
    }
}

#[tokio::test]
async fn after_shutdown_begins_no_connection_is_accepted() {
    let mut server = TestServer::start().await;
    let mut open = server.connect().await;
    let ws_addr = server.running().ws_addr;
    let http_addr = server.running().http_addr;
    let running = server.server.take().expect("running");
    let shutdown = tokio::spawn(running.shutdown());
    // The open socket is told to go away with 4200 ...
    assert_eq!(open.expect_close().await, Some(4200));
    // ... and nobody can connect any more: the listening sockets are gone.
    for addr in [ws_addr, http_addr] {
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "{addr} still accepts after shutdown began"
        );
    }
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown finishes")
        .expect("shutdown task");
}

/// The `Set-Cookie` header of a Pushi login, over whatever stream it is given.
async fn login_cookie<S>(stream: &mut S, server: &TestServer, extra: &str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let app = &server.app;
    let request = format!(
        "GET /login?app_id={}&app_key={}&app_secret={} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n",
        app.id, app.key, app.secret
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut response = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response).to_string();
    text.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie in {text}"))
        .to_owned()
}

#[tokio::test]
async fn session_cookie_is_secure_over_tls_or_behind_a_trusted_proxy_only() {
    let pki = Pki::new();
    let files = pki.issue("api", "cert-first");
    let server = TestServer::start_with(|c| c.http_tls = Some(files)).await;
    let mut stream = tls_connect(&pki, server.running().http_addr, &[b"http/1.1"]).await;
    let cookie = login_cookie(&mut stream, &server, "").await;
    assert!(cookie.contains("SameSite=None; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");

    // Plain HTTP: a client cannot claim https for itself...
    let server = TestServer::start().await;
    let mut plain = tokio::net::TcpStream::connect(server.running().http_addr)
        .await
        .expect("connect");
    let cookie = login_cookie(&mut plain, &server, "X-Forwarded-Proto: https\r\n").await;
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");

    // ...but a trusted proxy that terminated TLS can.
    let server = TestServer::start_with(|c| c.listener.trusted_proxies = common::loopback()).await;
    let mut proxied = tokio::net::TcpStream::connect(server.running().http_addr)
        .await
        .expect("connect");
    let cookie = login_cookie(&mut proxied, &server, "X-Forwarded-Proto: https\r\n").await;
    assert!(cookie.contains("SameSite=None; Secure"), "{cookie}");
    let mut proxied = tokio::net::TcpStream::connect(server.running().http_addr)
        .await
        .expect("connect");
    let cookie = login_cookie(&mut proxied, &server, "X-Forwarded-Proto: http\r\n").await;
    assert!(!cookie.contains("Secure"), "{cookie}");
}
