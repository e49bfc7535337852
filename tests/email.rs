//! E-mail delivery end to end against a real SMTP server: `tests/support/smtp_sink.py`,
//! Python's `aiosmtpd`, which records every message it accepts; the raw message is parsed
//! there with Python's own `email` package, so headers and bodies are checked by a parser
//! that is not lettre's.
//!
//! The sink needs `aiosmtpd`: `python3` is used unless `PUSHI_TEST_PYTHON` names another
//! interpreter (CI points it at a virtualenv with `pip install aiosmtpd`). Without it these
//! tests fail, they do not skip.
//!
//! TLS is real too: the tests make a CA and a certificate for 127.0.0.1 with `rcgen`, the
//! sink serves it (STARTTLS or implicit TLS), and the adapter trusts the CA only through
//! [`EmailAdapter::with_extra_root`].

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use pushi::app::{App, AppSettings};
use pushi::notify::email::{self, EmailAdapter};
use pushi::notify::payload::{EmailPayload, SmtpOverride, to_json};
use pushi::notify::{Adapter, DeliveryError, NotifyConfig};
use pushi::store::{DeliveryKind, DeliveryRecord, DeliveryStatus};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, Command};

const INSTALL_HINT: &str = "the e-mail tests need Python with aiosmtpd: `python3 -m pip install \
     aiosmtpd`, or point PUSHI_TEST_PYTHON at an interpreter that has it";

// ---------------------------------------------------------------------------------------
// The SMTP server

struct Sink {
    port: u16,
    out: PathBuf,
    dir: PathBuf,
    _child: Child,
}

impl Sink {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts `smtp_sink.py` with these extra arguments and waits until it listens.
    async fn start_with(args: &[&str]) -> Self {
        let dir = temp_dir("sink");
        let out = dir.join("messages.jsonl");
        let python = std::env::var("PUSHI_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg("--out")
            .arg(&out)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python:?} ({e}); {INSTALL_HINT}"));
        let stdout = child.stdout.take().expect("sink stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
        let port = match first {
            Ok(Ok(Some(line))) => line
                .strip_prefix("READY ")
                .and_then(|p| p.trim().parse::<u16>().ok()),
            _ => None,
        };
        let Some(port) = port else {
            let _ = child.start_kill();
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), err.read_to_string(&mut stderr))
                        .await;
            }
            let _ = std::fs::remove_dir_all(&dir);
            panic!(
                "the SMTP sink did not start: {}\n{INSTALL_HINT}",
                stderr.trim()
            );
        };
        Self {
            port,
            out,
            dir,
            _child: child,
        }
    }

    fn url(&self, scheme: &str, query: &str) -> String {
        format!("{scheme}://127.0.0.1:{}?{query}", self.port)
    }

    /// Every message accepted so far (the sink writes before it answers `DATA`).
    fn messages(&self) -> Vec<Value> {
        match std::fs::read_to_string(&self.out) {
            Ok(text) => text
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn only_message(&self) -> Value {
        let mut messages = self.messages();
        assert_eq!(messages.len(), 1, "one message: {messages:#?}");
        messages.remove(0)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pushi-email-{what}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

/// The header `name` of a recorded message, as Python's `email` package decoded it.
fn header(message: &Value, name: &str) -> Option<String> {
    message["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .and_then(|h| h[1].as_str().map(str::to_owned))
}

// ---------------------------------------------------------------------------------------
// A CA and a certificate for 127.0.0.1

struct TestPki {
    ca_pem: String,
    cert_path: PathBuf,
    key_path: PathBuf,
    dir: PathBuf,
}

impl TestPki {
    fn new() -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Pushi e-mail test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");

        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "smtp test server");
        let cert = params.signed_by(&key, &ca).expect("server certificate");

        let dir = temp_dir("pki");
        let cert_path = dir.join("server.pem");
        let key_path = dir.join("server.key");
        std::fs::write(&cert_path, cert.pem()).expect("write the certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write the key");
        Self {
            ca_pem: ca.pem(),
            cert_path,
            key_path,
            dir,
        }
    }

    async fn sink(&self, mode: &str) -> Sink {
        Sink::start_with(&[
            "--tls-mode",
            mode,
            "--tls-cert",
            self.cert_path.to_str().expect("UTF-8 path"),
            "--tls-key",
            self.key_path.to_str().expect("UTF-8 path"),
        ])
        .await
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------
// Fixtures

fn app(smtp_url: Option<&str>) -> App {
    let mut settings = AppSettings::default();
    settings.delivery.smtp_url = smtp_url.map(str::to_owned);
    App {
        id: "1".into(),
        key: "key-1".into(),
        secret: "secret-1".into(),
        name: "app-1".into(),
        ident: "ident-1".into(),
        enabled: true,
        settings,
        description: None,
        created: 0,
        modified: 0,
    }
}

fn email_to(to: &str) -> EmailPayload {
    EmailPayload {
        to: to.into(),
        subject: "Build finished".into(),
        body: "All green.\nSee you.".into(),
        html: false,
        smtp: None,
    }
}

fn delivery(email: &EmailPayload) -> DeliveryRecord {
    DeliveryRecord {
        id: 1,
        delivery_id: uuid::Uuid::new_v4().to_string(),
        app_id: "1".into(),
        kind: DeliveryKind::Smtp,
        target: email.to.clone(),
        payload: to_json(email),
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_attempt_ms: 0,
        last_error: None,
        created_ms: 0,
        updated_ms: 0,
    }
}

/// The SMTP sinks run on this machine: loopback is allowed for the servers an app or a
/// message names (the policy refuses it by default).
fn config(global: Option<&str>) -> NotifyConfig {
    NotifyConfig {
        smtp_url: global.map(str::to_owned),
        request_timeout: Duration::from_secs(5),
        outbound_allow: vec!["127.0.0.0/8".parse().expect("a CIDR range")],
        ..NotifyConfig::default()
    }
}

fn adapter(global: Option<&str>) -> EmailAdapter {
    EmailAdapter::new(&config(global))
}

fn assert_permanent(result: Result<(), DeliveryError>, needle: &str) {
    match result {
        Err(DeliveryError::Permanent(message)) => {
            assert!(message.contains(needle), "{message:?} mentions {needle:?}")
        }
        other => panic!("expected a permanent failure ({needle}), got {other:?}"),
    }
}

fn assert_retry(result: Result<(), DeliveryError>) -> String {
    match result {
        Err(DeliveryError::Retry(message)) => message,
        other => panic!("expected a retry, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn a_plain_text_message_reaches_the_server() {
    let sink = Sink::start().await;
    let url = sink.url("smtp", "sender=Pushi%20%3Cnoreply%40pushi.test%3E");
    let mut email = email_to("Bob <bob@example.com>");
    email.subject = "Café ☕ is open".into();
    email.body = "Grüße,\nthe café\n".into();
    let record = delivery(&email);

    adapter(None)
        .deliver(&app(Some(&url)), &record)
        .await
        .expect("delivered");

    let m = sink.only_message();
    assert_eq!(m["mail_from"], "noreply@pushi.test");
    assert_eq!(m["rcpt_tos"], serde_json::json!(["bob@example.com"]));
    assert_eq!(m["tls"], false);
    assert_eq!(m["auth_user"], Value::Null);
    assert_eq!(
        header(&m, "From").as_deref(),
        Some("Pushi <noreply@pushi.test>")
    );
    assert_eq!(header(&m, "To").as_deref(), Some("Bob <bob@example.com>"));
    assert_eq!(header(&m, "Subject").as_deref(), Some("Café ☕ is open"));
    assert_eq!(
        header(&m, email::DELIVERY_HEADER).as_deref(),
        Some(record.delivery_id.as_str())
    );
    assert_eq!(
        header(&m, "Message-ID"),
        Some(format!("<{}@pushi.test>", record.delivery_id))
    );
    assert!(header(&m, "Date").is_some(), "a Date header: {m:#?}");
    assert_eq!(m["content_type"], "text/plain");
    assert_eq!(m["charset"], "utf-8");
    assert_eq!(
        m["body"]
            .as_str()
            .map(|b| b.replace("\r\n", "\n"))
            .as_deref(),
        Some("Grüße,\nthe café\n")
    );
}

#[tokio::test]
async fn html_messages_are_text_html() {
    let sink = Sink::start().await;
    let url = sink.url("smtp", "sender=noreply@pushi.test");
    let mut email = email_to("carol@example.com");
    email.html = true;
    email.body = "<p>Hello <b>Carol</b></p>".into();

    adapter(None)
        .deliver(&app(Some(&url)), &delivery(&email))
        .await
        .expect("delivered");

    let m = sink.only_message();
    assert_eq!(m["content_type"], "text/html");
    assert_eq!(
        m["body"].as_str().map(str::trim_end),
        Some("<p>Hello <b>Carol</b></p>")
    );
}

#[tokio::test]
async fn a_retried_delivery_carries_the_same_ids() {
    let sink = Sink::start().await;
    let url = sink.url("smtp", "sender=noreply@pushi.test");
    let record = delivery(&email_to("dave@example.com"));
    let adapter = adapter(None);
    let app = app(Some(&url));
    adapter.deliver(&app, &record).await.expect("first attempt");
    adapter
        .deliver(&app, &record)
        .await
        .expect("second attempt");

    let messages = sink.messages();
    assert_eq!(messages.len(), 2);
    for field in [email::DELIVERY_HEADER, "Message-ID"] {
        assert_eq!(
            header(&messages[0], field),
            header(&messages[1], field),
            "{field}"
        );
    }
}

#[tokio::test]
async fn the_app_url_wins_over_the_global_one() {
    let app_sink = Sink::start().await;
    let global_sink = Sink::start().await;
    let global = global_sink.url("smtp", "sender=global@pushi.test");
    let adapter = adapter(Some(&global));

    // An app without a URL uses the global one.
    adapter
        .deliver(&app(None), &delivery(&email_to("erin@example.com")))
        .await
        .expect("delivered through the global server");
    assert_eq!(global_sink.only_message()["mail_from"], "global@pushi.test");
    assert!(app_sink.messages().is_empty());

    // An app with one uses its own.
    let own = app_sink.url("smtp", "sender=app@pushi.test");
    adapter
        .deliver(&app(Some(&own)), &delivery(&email_to("erin@example.com")))
        .await
        .expect("delivered through the app's server");
    assert_eq!(app_sink.only_message()["mail_from"], "app@pushi.test");
    assert_eq!(global_sink.messages().len(), 1);
}

#[tokio::test]
async fn a_direct_override_wins_over_the_app() {
    let app_sink = Sink::start().await;
    let direct_sink = Sink::start().await;
    let own = app_sink.url("smtp", "sender=app@pushi.test");
    let mut email = email_to("frank@example.com");
    email.smtp = Some(SmtpOverride {
        host: Some("127.0.0.1".into()),
        port: Some(direct_sink.port),
        sender: Some("direct@pushi.test".into()),
        ..SmtpOverride::default()
    });

    adapter(None)
        .deliver(&app(Some(&own)), &delivery(&email))
        .await
        .expect("delivered through the override");
    assert_eq!(direct_sink.only_message()["mail_from"], "direct@pushi.test");
    assert!(app_sink.messages().is_empty());

    // An override without a host only amends the app's URL: here, the sender.
    email.smtp = Some(SmtpOverride {
        sender: Some("amended@pushi.test".into()),
        ..SmtpOverride::default()
    });
    adapter(None)
        .deliver(&app(Some(&own)), &delivery(&email))
        .await
        .expect("delivered through the app's server");
    assert_eq!(app_sink.only_message()["mail_from"], "amended@pushi.test");
}

#[tokio::test]
async fn missing_settings_are_permanent() {
    let sink = Sink::start().await;
    let adapter = adapter(None);
    let record = delivery(&email_to("gina@example.com"));

    let no_sender = format!("smtp://127.0.0.1:{}", sink.port);
    assert_permanent(
        adapter.deliver(&app(Some(&no_sender)), &record).await,
        email::NO_SENDER,
    );
    assert_permanent(
        adapter
            .deliver(&app(Some("smtp://?sender=a@pushi.test")), &record)
            .await,
        email::NO_HOST,
    );
    assert_permanent(adapter.deliver(&app(None), &record).await, email::NO_HOST);
    assert_permanent(
        adapter
            .deliver(
                &app(Some("smtp+ssl://127.0.0.1?sender=a@pushi.test")),
                &record,
            )
            .await,
        "unsupported SMTP URL scheme",
    );

    let url = sink.url("smtp", "sender=noreply@pushi.test");
    assert_permanent(
        adapter
            .deliver(&app(Some(&url)), &delivery(&email_to("not an address")))
            .await,
        "invalid recipient",
    );
    let bad_sender = sink.url("smtp", "sender=nobody");
    assert_permanent(
        adapter.deliver(&app(Some(&bad_sender)), &record).await,
        "invalid sender",
    );
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn refusals_are_permanent_or_retried_by_their_code() {
    let sink = Sink::start().await;
    let url = sink.url("smtp", "sender=noreply@pushi.test");
    let adapter = adapter(None);
    let app = app(Some(&url));

    assert_permanent(
        adapter
            .deliver(&app, &delivery(&email_to("reject-me@example.com")))
            .await,
        "550",
    );
    let message = assert_retry(
        adapter
            .deliver(&app, &delivery(&email_to("tempfail@example.com")))
            .await,
    );
    assert!(message.contains("451"), "{message}");
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn a_server_that_is_down_is_retried() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    let url = format!("smtp://127.0.0.1:{port}?sender=noreply@pushi.test");
    assert_retry(
        adapter(None)
            .deliver(&app(Some(&url)), &delivery(&email_to("hank@example.com")))
            .await,
    );
}

#[tokio::test]
async fn a_silent_server_times_out_and_is_retried() {
    // Accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let config = NotifyConfig {
        request_timeout: Duration::from_secs(1),
        ..config(None)
    };
    let url = format!("smtp://127.0.0.1:{port}?sender=noreply@pushi.test");
    let started = Instant::now();
    assert_retry(
        EmailAdapter::new(&config)
            .deliver(&app(Some(&url)), &delivery(&email_to("ivy@example.com")))
            .await,
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "bounded by the timeout: {:?}",
        started.elapsed()
    );
    server.abort();
}

#[tokio::test]
async fn credentials_from_the_url_are_used() {
    let sink = Sink::start_with(&["--auth", "me@pushi.test:p@ss w:rd+1"]).await;
    let good = format!(
        "smtp://me%40pushi.test:p%40ss%20w%3Ard+1@127.0.0.1:{}?sender=me@pushi.test",
        sink.port
    );
    adapter(None)
        .deliver(&app(Some(&good)), &delivery(&email_to("jack@example.com")))
        .await
        .expect("delivered with AUTH");
    assert_eq!(sink.only_message()["auth_user"], "me@pushi.test");

    let wrong = format!(
        "smtp://me%40pushi.test:nope@127.0.0.1:{}?sender=me@pushi.test",
        sink.port
    );
    assert_permanent(
        adapter(None)
            .deliver(&app(Some(&wrong)), &delivery(&email_to("jack@example.com")))
            .await,
        "535",
    );
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn starttls_with_a_trusted_certificate() {
    let pki = TestPki::new();
    let sink = pki.sink("starttls").await;
    let adapter =
        EmailAdapter::with_extra_root(&config(None), &pki.ca_pem).expect("a valid CA certificate");
    let record = delivery(&email_to("kate@example.com"));

    for url in [
        sink.url("smtp+tls", "sender=noreply@pushi.test"),
        sink.url("smtp", "sender=noreply@pushi.test&starttls=true"),
    ] {
        adapter
            .deliver(&app(Some(&url)), &record)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e:?}"));
    }
    let messages = sink.messages();
    assert_eq!(messages.len(), 2);
    assert!(messages.iter().all(|m| m["tls"] == true), "{messages:#?}");

    // Without STARTTLS the server refuses the mail (530, permanent).
    let plain = sink.url("smtp", "sender=noreply@pushi.test");
    assert_permanent(adapter.deliver(&app(Some(&plain)), &record).await, "530");

    // An adapter that does not trust the test CA refuses the certificate.
    let tls = sink.url("smtp+tls", "sender=noreply@pushi.test");
    let message = assert_retry(
        EmailAdapter::new(&config(None))
            .deliver(&app(Some(&tls)), &record)
            .await,
    );
    assert!(
        message.to_lowercase().contains("certificate") || message.to_lowercase().contains("tls"),
        "{message}"
    );
    assert_eq!(sink.messages().len(), 2);
}

#[tokio::test]
async fn smtps_is_implicit_tls() {
    let pki = TestPki::new();
    let sink = pki.sink("implicit").await;
    let adapter =
        EmailAdapter::with_extra_root(&config(None), &pki.ca_pem).expect("a valid CA certificate");
    let url = sink.url("smtps", "sender=noreply@pushi.test");
    adapter
        .deliver(&app(Some(&url)), &delivery(&email_to("liam@example.com")))
        .await
        .expect("delivered over implicit TLS");
    assert_eq!(sink.only_message()["tls"], true);
}

#[test]
fn with_extra_root_refuses_what_is_not_a_certificate() {
    assert!(EmailAdapter::with_extra_root(&config(None), "not a PEM").is_err());
}

/// The Pushi way: `PUT /apps/{ident}` with `smtp_url`, an e-mail target, a publish; the
/// message reaches the SMTP server.
#[tokio::test]
async fn smtp_url_set_over_rest_sends_mail() {
    let sink = Sink::start().await;
    let server = common::TestServer::start_with(|c| {
        c.open_apps = true;
        common::allow_loopback(c);
    })
    .await;
    let (status, app) = server
        .rest(
            "POST",
            "/apps",
            &[],
            Some(&serde_json::json!({"name": "mail-app"})),
            None,
        )
        .await;
    assert_eq!(status, 200, "{app}");
    let text = |v: &Value| v.as_str().expect("a string").to_owned();
    let (status, login) = server
        .rest(
            "GET",
            "/login",
            &[
                ("app_id", &text(&app["ident"])),
                ("app_key", &text(&app["key"])),
                ("app_secret", &text(&app["secret"])),
            ],
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let sid = text(&login["token"]);
    let smtp_url = sink.url("smtp", "sender=noreply@pushi.test");
    let (status, body) = server
        .rest(
            "PUT",
            &format!("/apps/{}", text(&app["ident"])),
            &[("smtp_url", smtp_url.as_str())],
            None,
            Some(&sid),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["settings"]["smtp_url"], Value::Bool(true));
    assert!(
        !body.to_string().contains(&smtp_url),
        "the URL is never shown"
    );
    let (status, body) = server
        .rest(
            "POST",
            "/smtps",
            &[],
            Some(&serde_json::json!({"email": "carol@example.com", "event": "mail-news"})),
            Some(&sid),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .rest(
            "POST",
            "/events",
            &[],
            Some(&serde_json::json!({"channel": "mail-news", "event": "update", "data": "hello"})),
            Some(&sid),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.messages().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let message = sink.only_message();
    assert_eq!(message["mail_from"], "noreply@pushi.test");
    assert_eq!(
        message["rcpt_tos"],
        serde_json::json!(["carol@example.com"])
    );
}
