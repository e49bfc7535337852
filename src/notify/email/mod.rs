//! E-mail delivery over SMTP: one message per recipient, sent with `lettre`.
//!
//! Pushi sends e-mail for SMTP subscriptions (a channel's events to an address) and for
//! direct messaging (`/messaging/email`, `/messaging/send`). Every message is an outbox
//! delivery, so a failed attempt is retried by the worker and a restart does not lose it.
//!
//! Which server a message goes through, and SMTP URLs, are [`smtp_settings`]'s.
//!
//! A server a tenant chose (an app's `smtp_url`, a direct message's `smtp_host` or
//! `smtp_port`) must pass the [`outbound`](super::outbound) policy: its host is resolved
//! here, only public (or allowed) addresses are kept, and the connection goes to the first of
//! them, the very address that was checked. TLS still verifies the certificate for the host
//! name. The global `SMTP_URL` is the operator's and is used as it is.
//!
//! # The message
//!
//! `From: <sender>`, `To: <recipient>`, `Subject`, `Date`, a `Message-ID` made from the
//! delivery id (so a retried delivery carries the same id), `X-Pushi-Delivery: <delivery
//! id>` for receivers that de-duplicate, and a single `text/plain` (or `text/html`) UTF-8
//! part. The envelope is `sender` → `recipient`; AUTH (PLAIN or LOGIN) is used when the URL
//! has a user.
//!
//! # Outcomes
//!
//! No host or no sender, an address that does not parse, an unsupported URL, a 5xx reply
//! (bad recipient, authentication refused, ...) or a client-side protocol failure (the
//! server offers no STARTTLS although it is required, no common AUTH mechanism) are
//! [`DeliveryError::Permanent`]. Connection failures, TLS failures (including a TLS setup
//! that fails because the machine has no CA roots), 4xx replies and timeouts are
//! [`DeliveryError::Retry`]. Each attempt, from connecting to the end of the
//! answer to `DATA`, is bounded by [`NotifyConfig::request_timeout`] (and so is every single
//! read and write).
//!
//! Each attempt opens its own connection and closes it afterwards: lettre's connection pool
//! would put a connection back after an attempt cut short by the timeout, in an unknown
//! state.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use parking_lot::Mutex;

use super::outbound::{Chooser, OutboundPolicy, ResolveError};
use super::payload::{self, EmailPayload};
use super::{Adapter, DeliveryError, NotifyConfig};
use crate::app::App;
use crate::store::DeliveryRecord;

pub mod smtp_settings;
pub use smtp_settings::{NO_HOST, SmtpSecurity, SmtpSettings, parse_smtp_url, resolve_settings};

/// The error when no sender is known for a message (Pushi's wording).
pub const NO_SENDER: &str = "SMTP sender not configured";
/// The header that carries the delivery id, so receivers can drop retried duplicates.
pub const DELIVERY_HEADER: &str = "X-Pushi-Delivery";

/// Transports kept for reuse (they hold the TLS configuration, which is costly to build);
/// past this many distinct server settings the cache starts over.
const MAX_CACHED_TRANSPORTS: usize = 128;

type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// Sends [`EmailPayload`] deliveries.
pub struct EmailAdapter {
    global_url: Option<String>,
    timeout: Duration,
    /// A CA trusted besides the system's (tests).
    extra_root: Option<Vec<u8>>,
    /// The policy for servers a tenant chose.
    policy: Arc<OutboundPolicy>,
    /// By settings and the address (or, for the operator's server, the name) connected to.
    transports: Mutex<HashMap<(SmtpSettings, String), Arc<Transport>>>,
}

impl EmailAdapter {
    pub fn new(config: &NotifyConfig) -> Self {
        crate::install_crypto_provider();
        Self {
            global_url: config.smtp_url.clone(),
            timeout: config.request_timeout,
            extra_root: None,
            policy: config.outbound_policy(),
            transports: Mutex::new(HashMap::new()),
        }
    }

    /// An adapter that also trusts the CA certificate `ca_pem` (PEM) for STARTTLS and TLS,
    /// besides the system's roots: for tests against a server with a test certificate.
    pub fn with_extra_root(config: &NotifyConfig, ca_pem: &str) -> Result<Self, String> {
        check_certificates(ca_pem)?;
        let mut adapter = Self::new(config);
        adapter.extra_root = Some(ca_pem.as_bytes().to_vec());
        Ok(adapter)
    }

    /// The transport for these settings connecting to `server` (an address or a name), built
    /// once and reused; `host` is the name TLS verifies.
    fn transport(
        &self,
        settings: &SmtpSettings,
        server: &str,
        host: &str,
    ) -> Result<Arc<Transport>, String> {
        let key = (settings.clone(), server.to_owned());
        if let Some(transport) = self.transports.lock().get(&key) {
            return Ok(transport.clone());
        }
        let tls = match settings.security {
            SmtpSecurity::None => Tls::None,
            SmtpSecurity::StartTls => Tls::Required(self.tls_parameters(host)?),
            SmtpSecurity::Tls => Tls::Wrapper(self.tls_parameters(host)?),
        };
        let mut builder = Transport::builder_dangerous(server)
            .port(settings.port())
            .tls(tls)
            .timeout(Some(self.timeout));
        if let Some(user) = &settings.user {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                settings.password.clone().unwrap_or_default(),
            ));
        }
        let transport = Arc::new(builder.build());
        let mut transports = self.transports.lock();
        if transports.len() >= MAX_CACHED_TRANSPORTS {
            transports.clear();
        }
        transports.insert(key, transport.clone());
        Ok(transport)
    }

    /// Where to connect for `host`: the name itself when the operator chose the server, else
    /// the first address of it the policy permits.
    async fn server(
        &self,
        host: &str,
        port: u16,
        chooser: Chooser,
    ) -> Result<String, DeliveryError> {
        if chooser == Chooser::Operator {
            return Ok(host.to_owned());
        }
        match self.policy.public_addresses(host, port).await {
            Ok(addresses) => addresses
                .first()
                .map(|a| a.ip().to_string())
                .ok_or_else(|| DeliveryError::Retry(format!("{host} has no address"))),
            Err(ResolveError::Refused(refused)) => {
                Err(DeliveryError::Permanent(refused.to_string()))
            }
            Err(ResolveError::Lookup(e)) => Err(DeliveryError::Retry(e)),
        }
    }

    fn tls_parameters(&self, host: &str) -> Result<TlsParameters, String> {
        let mut builder = TlsParameters::builder(host.to_owned());
        if let Some(pem) = &self.extra_root {
            let cert = Certificate::from_pem(pem).map_err(|e| format!("invalid CA: {e}"))?;
            builder = builder.add_root_certificate(cert);
        }
        builder
            .build_rustls()
            .map_err(|e| format!("TLS setup for {host} failed: {e}"))
    }
}

/// Accepts PEM text with at least one certificate and nothing unreadable in it.
pub(crate) fn check_certificates(pem: &str) -> Result<(), String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        cert.map_err(|e| format!("invalid CA certificate: {e}"))?;
        count += 1;
    }
    if count == 0 {
        return Err("no certificate in the CA PEM".into());
    }
    Ok(())
}

/// Builds the message for one recipient.
pub fn build_message(
    email: &EmailPayload,
    sender: &str,
    delivery_id: &str,
) -> Result<Message, DeliveryError> {
    let from: Mailbox = sender
        .trim()
        .parse()
        .map_err(|e| DeliveryError::Permanent(format!("invalid sender {sender:?}: {e}")))?;
    let to: Mailbox =
        email.to.trim().parse().map_err(|e| {
            DeliveryError::Permanent(format!("invalid recipient {:?}: {e}", email.to))
        })?;
    // Only printable ASCII of the id goes into headers, so nothing can be injected.
    let id: String = delivery_id
        .chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '@'))
        .collect();
    let id = if id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        id
    };
    let subject: String = email
        .subject
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    let body = if email.html {
        SinglePart::html(email.body.clone())
    } else {
        SinglePart::plain(email.body.clone())
    };
    let message_id = format!("<{id}@{}>", from.email.domain());
    Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .message_id(Some(message_id))
        .user_agent(concat!("pushi/", env!("CARGO_PKG_VERSION")).to_owned())
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str(DELIVERY_HEADER),
            id,
        ))
        .singlepart(body)
        .map_err(|e| DeliveryError::Permanent(format!("cannot build the message: {e}")))
}

/// An SMTP failure as an outcome: 5xx replies and client-side protocol failures will not
/// get better by themselves; everything else (connection, TLS, 4xx, timeouts) may. A reply
/// is reported by its code alone: the server's text, like an HTTP receiver's body, is not
/// repeated.
fn smtp_error(e: lettre::transport::smtp::Error) -> DeliveryError {
    let code = e.status().map(|code| code.to_string()).unwrap_or_default();
    if e.is_permanent() {
        DeliveryError::Permanent(format!("SMTP server refused: {code}"))
    } else if e.is_transient() {
        DeliveryError::Retry(format!("SMTP server deferred the message: {code}"))
    } else if e.is_response() {
        DeliveryError::Retry("SMTP server's answer is not SMTP".into())
    } else if e.is_client() {
        DeliveryError::Permanent(format!("SMTP error: {e}"))
    } else {
        DeliveryError::Retry(format!("SMTP delivery failed: {e}"))
    }
}

#[async_trait]
impl Adapter for EmailAdapter {
    async fn deliver(&self, app: &App, delivery: &DeliveryRecord) -> Result<(), DeliveryError> {
        let email: EmailPayload = payload::parse(&delivery.payload)?;
        let (settings, chooser) = resolve_settings(
            email.smtp.as_ref(),
            app.settings.delivery.smtp_url.as_deref(),
            self.global_url.as_deref(),
        )?;
        let host = settings
            .host
            .clone()
            .ok_or_else(|| DeliveryError::Permanent(NO_HOST.into()))?;
        let sender = settings
            .sender
            .clone()
            .ok_or_else(|| DeliveryError::Permanent(NO_SENDER.into()))?;
        let message = build_message(&email, &sender, &delivery.delivery_id)?;
        let attempt = async {
            let server = self.server(&host, settings.port(), chooser).await?;
            // A TLS setup failure is about this machine (no system roots), not the message.
            let transport = self
                .transport(&settings, &server, &host)
                .map_err(DeliveryError::Retry)?;
            transport.send(message).await.map_err(smtp_error)
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(_response)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(DeliveryError::Retry(format!(
                "SMTP attempt to {host}:{} timed out after {:?}",
                settings.port(),
                self.timeout
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_the_delivery_id_and_content_type() {
        let email = EmailPayload {
            to: "Bob <bob@example.com>".into(),
            subject: "Hi\r\nBcc: evil@example.com".into(),
            body: "<b>hello</b>".into(),
            html: true,
            smtp: None,
        };
        let id = "5f0c7d39-4c8e-4a55-9d7e-7f3f1a3b2c10";
        let message = build_message(&email, "Pushi <noreply@pushi.example>", id).unwrap();
        let text = String::from_utf8(message.formatted()).unwrap();
        assert!(
            text.contains(&format!("X-Pushi-Delivery: {id}\r\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("Message-ID: <{id}@pushi.example>\r\n")),
            "{text}"
        );
        assert!(
            text.contains("Content-Type: text/html; charset=utf-8"),
            "{text}"
        );
        assert!(!text.contains("\r\nBcc:"), "{text}");
        let envelope = message.envelope();
        assert_eq!(
            envelope.from().map(ToString::to_string).as_deref(),
            Some("noreply@pushi.example")
        );
        assert_eq!(envelope.to()[0].to_string(), "bob@example.com");

        let bad = EmailPayload {
            to: "not an address".into(),
            ..email.clone()
        };
        assert!(matches!(
            build_message(&bad, "noreply@pushi.example", id),
            Err(DeliveryError::Permanent(_))
        ));
        assert!(matches!(
            build_message(&email, "nobody", id),
            Err(DeliveryError::Permanent(_))
        ));
    }
}
