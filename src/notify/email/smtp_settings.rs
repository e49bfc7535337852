//! Which SMTP server an e-mail goes through, and how: SMTP URLs and the settings they give.
//!
//! The first of these that is set wins (Pushi's order):
//!
//! 1. the payload's [`SmtpOverride`] (direct messaging's `smtp_host`, `smtp_port`, ...);
//! 2. the app's `smtp_url`;
//! 3. the global `SMTP_URL` ([`NotifyConfig::smtp_url`](crate::notify::NotifyConfig::smtp_url)).
//!
//! An override that names a host is used alone: the app's credentials are never sent to a
//! host a request chose. An override without a host only amends the URL's settings (for
//! instance another `sender`).
//!
//! The server is the operator's choice ([`Chooser::Operator`]) only when its host and port
//! both come from the global URL; an override's host or port, or an app's URL, is the
//! tenant's choice and is held to the [`outbound`](crate::notify::outbound) policy.
//!
//! # SMTP URLs
//!
//! `scheme://[user[:password]@]host[:port][?sender=addr][&starttls=true]`, parsed by
//! [`parse_smtp_url`]:
//!
//! | scheme | security | default port |
//! |---|---|---|
//! | `smtp` | none (plain SMTP, as Pushi) | 25 |
//! | `smtp` with `?starttls=true` | STARTTLS, required | 587 |
//! | `smtp+tls`, `smtp+starttls` | STARTTLS, required | 587 |
//! | `smtps` | implicit TLS (RFC 8314) | 465 |
//!
//! Pushi treated `smtps://` as STARTTLS on 587 (spec §11 item 28), which fails against every
//! implicit-TLS server on 465; `smtps` means implicit TLS here, as everywhere else. Other
//! schemes are refused rather than silently sent in the clear. User and password are
//! percent-decoded (`%40` for `@`, `%3A` for `:`); the last `@` of the authority ends the
//! user information, so a user that is an e-mail address works unencoded too. Query values
//! are form-decoded (`+` is a space, so write `%2B` for a `+` in the sender). The host is
//! lowercased; IPv6 literals go in brackets. A path (lettre's EHLO name) is ignored.
//!
//! With STARTTLS or TLS the server's certificate is verified against the system's roots
//! (`rustls-platform-verifier`, as the HTTP adapters do); there is no switch to accept an
//! invalid certificate. Tests add their own CA with
//! [`EmailAdapter::with_extra_root`](super::EmailAdapter::with_extra_root).

use crate::notify::DeliveryError;
use crate::notify::outbound::Chooser;
use crate::notify::payload::SmtpOverride;

/// The error when no SMTP host is known for a message (Pushi's wording).
pub const NO_HOST: &str = "SMTP host not configured";
/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmtpSecurity {
    /// Plain SMTP, no TLS at all (`smtp://`, as Pushi).
    None,
    /// STARTTLS, required: the message is not sent if the server cannot upgrade.
    StartTls,
    /// TLS from the first byte (`smtps://`, RFC 8314 "implicit TLS").
    Tls,
}

impl SmtpSecurity {
    /// The port used when the URL gives none.
    pub fn default_port(self) -> u16 {
        match self {
            Self::None => 25,
            Self::StartTls => 587,
            Self::Tls => 465,
        }
    }
}

/// Where and how to send e-mail: a parsed SMTP URL, possibly amended by a direct message's
/// override.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SmtpSettings {
    /// Lowercased host name or IP address (without brackets); `None` when the URL has none.
    pub host: Option<String>,
    /// The port the URL gives; see [`SmtpSettings::port`] for the one used.
    pub port: Option<u16>,
    pub security: SmtpSecurity,
    pub user: Option<String>,
    pub password: Option<String>,
    /// The `From` and envelope sender.
    pub sender: Option<String>,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("sender", &self.sender)
            .finish()
    }
}

impl SmtpSettings {
    /// The port to connect to: the given one, else the default of the security mode.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.security.default_port())
    }

    /// Settings from a direct message's override alone (when it names a host).
    fn from_override(o: &SmtpOverride) -> Self {
        Self {
            host: o.host.as_deref().and_then(normalize_host),
            port: o.port,
            security: if o.starttls == Some(true) {
                SmtpSecurity::StartTls
            } else {
                SmtpSecurity::None
            },
            user: o.user.clone().filter(|u| !u.is_empty()),
            password: o.password.clone(),
            sender: o.sender.clone().filter(|s| !s.trim().is_empty()),
        }
    }

    /// This URL's settings with what an override (without a host) sets replacing them.
    fn amended(mut self, o: &SmtpOverride) -> Self {
        if let Some(port) = o.port {
            self.port = Some(port);
        }
        match o.starttls {
            Some(true) if self.security == SmtpSecurity::None => {
                self.security = SmtpSecurity::StartTls
            }
            Some(false) if self.security == SmtpSecurity::StartTls => {
                self.security = SmtpSecurity::None
            }
            _ => {}
        }
        if let Some(user) = o.user.clone().filter(|u| !u.is_empty()) {
            self.user = Some(user);
            self.password = o.password.clone();
        } else if let Some(password) = &o.password {
            self.password = Some(password.clone());
        }
        if let Some(sender) = o.sender.clone().filter(|s| !s.trim().is_empty()) {
            self.sender = Some(sender);
        }
        self
    }
}

/// Parses an SMTP URL (see the module documentation for the format).
///
/// A URL without a host or without a sender parses (the error is reported when a message
/// needs them); a URL that is malformed, has an unknown scheme or a bad port does not.
pub fn parse_smtp_url(url: &str) -> Result<SmtpSettings, String> {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        "SMTP URL has no scheme (expected smtp://, smtp+tls:// or smtps://)".to_owned()
    })?;
    let mut security = match scheme.to_ascii_lowercase().as_str() {
        "smtp" => SmtpSecurity::None,
        "smtp+tls" | "smtp+starttls" => SmtpSecurity::StartTls,
        "smtps" => SmtpSecurity::Tls,
        other => {
            return Err(format!(
                "unsupported SMTP URL scheme {other:?} (expected smtp, smtp+tls or smtps)"
            ));
        }
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let before_fragment = before_query.split('#').next().unwrap_or_default();
    // The authority ends at the first `/`; a path (lettre's EHLO name) is ignored.
    let authority = before_fragment.split('/').next().unwrap_or_default();
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(info) => {
            let (user, password) = match info.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (info, None),
            };
            let user = percent_decode(user)?;
            let password = password.map(percent_decode).transpose()?;
            (Some(user).filter(|u| !u.is_empty()), password)
        }
        None => (None, None),
    };
    let (host, port) = split_host_port(hostport)?;

    let mut sender = None;
    if let Some(query) = query {
        let query = query.split('#').next().unwrap_or_default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "sender" if sender.is_none() => {
                    sender = Some(value.trim().to_owned()).filter(|s| !s.is_empty());
                }
                "starttls" if security == SmtpSecurity::None && is_true(&value) => {
                    security = SmtpSecurity::StartTls;
                }
                _ => {}
            }
        }
    }
    Ok(SmtpSettings {
        host,
        port,
        security,
        user,
        password,
        sender,
    })
}

fn is_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

fn percent_decode(text: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "SMTP URL user or password is not valid UTF-8 once decoded".to_owned())
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; an empty host is `None`.
fn split_host_port(hostport: &str) -> Result<(Option<String>, Option<u16>), String> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "SMTP URL has an unclosed IPv6 address".to_owned())?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("unexpected {p:?} after the SMTP host"))?,
            ),
        };
        (host, port)
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("invalid SMTP port {p:?}"))?,
        ),
    };
    Ok((normalize_host(host), port))
}

fn normalize_host(host: &str) -> Option<String> {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Picks the settings for one message (the override, the app's URL, the global URL) and
/// says who chose the server.
pub fn resolve_settings(
    override_: Option<&SmtpOverride>,
    app_url: Option<&str>,
    global_url: Option<&str>,
) -> Result<(SmtpSettings, Chooser), DeliveryError> {
    if let Some(o) = override_.filter(|o| o.host.as_deref().is_some_and(|h| !h.trim().is_empty())) {
        return Ok((SmtpSettings::from_override(o), Chooser::Tenant));
    }
    let set = |u: &&str| !u.trim().is_empty();
    let (url, mut chooser) = match (app_url.filter(set), global_url.filter(set)) {
        (Some(url), _) => (url, Chooser::Tenant),
        (None, Some(url)) => (url, Chooser::Operator),
        (None, None) => return Err(DeliveryError::Permanent(NO_HOST.into())),
    };
    let settings = parse_smtp_url(url)
        .map_err(|e| DeliveryError::Permanent(format!("invalid SMTP URL: {e}")))?;
    Ok(match override_ {
        Some(o) => {
            if o.port.is_some() {
                chooser = Chooser::Tenant;
            }
            (settings.amended(o), chooser)
        }
        None => (settings, chooser),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> SmtpSettings {
        parse_smtp_url(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn plain_smtp_defaults_to_port_25_without_tls() {
        let s = parse("smtp://Mail.Example.COM?sender=noreply@example.com");
        assert_eq!(s.host.as_deref(), Some("mail.example.com"));
        assert_eq!(s.port, None);
        assert_eq!(s.port(), 25);
        assert_eq!(s.security, SmtpSecurity::None);
        assert_eq!(s.user, None);
        assert_eq!(s.password, None);
        assert_eq!(s.sender.as_deref(), Some("noreply@example.com"));
    }

    #[test]
    fn starttls_schemes_and_query_default_to_587() {
        for url in [
            "smtp+tls://h",
            "smtp+starttls://h",
            "SMTP+TLS://h",
            "smtp://h?starttls=true",
            "smtp://h?sender=a@b.c&starttls=1",
        ] {
            let s = parse(url);
            assert_eq!(s.security, SmtpSecurity::StartTls, "{url}");
            assert_eq!(s.port(), 587, "{url}");
        }
        assert_eq!(
            parse("smtp://h?starttls=false").security,
            SmtpSecurity::None
        );
    }

    #[test]
    fn smtps_is_implicit_tls_on_465() {
        // Pushi made this STARTTLS on 587 (spec §11 item 28); fixed here.
        let s = parse("smtps://user:pw@smtp.example.com?sender=a@example.com");
        assert_eq!(s.security, SmtpSecurity::Tls);
        assert_eq!(s.port(), 465);
        assert_eq!(parse("smtps://h:2465").port(), 2465);
        // `starttls=true` does not downgrade implicit TLS.
        assert_eq!(parse("smtps://h?starttls=true").security, SmtpSecurity::Tls);
    }

    #[test]
    fn credentials_are_percent_decoded() {
        let s = parse("smtp://us%40er:p%3Aa%2Fss%20word@host:2525?sender=x@y.z");
        assert_eq!(s.user.as_deref(), Some("us@er"));
        assert_eq!(s.password.as_deref(), Some("p:a/ss word"));
        assert_eq!(s.host.as_deref(), Some("host"));
        assert_eq!(s.port, Some(2525));
        // A literal `+` in user information stays a `+` (RFC 3986).
        assert_eq!(parse("smtp://u:a+b@h").password.as_deref(), Some("a+b"));
        // An unencoded e-mail address as the user: the last `@` ends the user information.
        let s = parse("smtp://me@example.com:secret@smtp.example.com:587");
        assert_eq!(s.user.as_deref(), Some("me@example.com"));
        assert_eq!(s.password.as_deref(), Some("secret"));
        assert_eq!(s.host.as_deref(), Some("smtp.example.com"));
        // User without password, empty password.
        let s = parse("smtp://me@h");
        assert_eq!(
            (s.user.as_deref(), s.password.as_deref()),
            (Some("me"), None)
        );
        let s = parse("smtp://me:@h");
        assert_eq!(s.password.as_deref(), Some(""));
    }

    #[test]
    fn sender_is_the_first_value_form_decoded() {
        let s = parse("smtp://h?sender=a%2Bb%40example.com&sender=other@x.y");
        assert_eq!(s.sender.as_deref(), Some("a+b@example.com"));
        let s = parse("smtp://h?sender=Pushi%20%3Cno@x.y%3E");
        assert_eq!(s.sender.as_deref(), Some("Pushi <no@x.y>"));
        assert_eq!(parse("smtp://h?sender=").sender, None);
        assert_eq!(parse("smtp://h").sender, None);
    }

    #[test]
    fn hosts_ipv6_paths_and_missing_hosts() {
        let s = parse("smtp://[::1]:2525/ehlo-name?sender=a@b.c");
        assert_eq!(s.host.as_deref(), Some("::1"));
        assert_eq!(s.port, Some(2525));
        assert_eq!(parse("smtp://[::1]").host.as_deref(), Some("::1"));
        assert_eq!(
            parse("smtp://127.0.0.1:25").host.as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(parse("smtp://?sender=a@b.c").host, None);
        assert_eq!(parse("smtp://user:pw@:25").host, None);
        assert_eq!(parse("smtp://h:").port, None);
    }

    #[test]
    fn malformed_urls_are_refused() {
        for url in [
            "mail.example.com",
            "http://mail.example.com",
            "smtp+ssl://h",
            "smtp://h:99999",
            "smtp://h:0",
            "smtp://h:abc",
            "smtp://[::1",
            "smtp://[::1]x",
            "smtp://u:%FF@h",
        ] {
            assert!(parse_smtp_url(url).is_err(), "{url} should be refused");
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let s = parse("smtp://u:topsecret@h");
        assert!(!format!("{s:?}").contains("topsecret"));
    }

    #[test]
    fn resolution_order_override_app_global() {
        let app = Some("smtp://app.example?sender=app@example.com");
        let global = Some("smtp://global.example?sender=global@example.com");
        let (s, chooser) = resolve_settings(None, app, global).unwrap();
        assert_eq!(s.host.as_deref(), Some("app.example"));
        assert_eq!(chooser, Chooser::Tenant);
        let (s, chooser) = resolve_settings(None, None, global).unwrap();
        assert_eq!(s.host.as_deref(), Some("global.example"));
        assert_eq!(chooser, Chooser::Operator);
        let (s, _) = resolve_settings(None, Some("  "), global).unwrap();
        assert_eq!(s.host.as_deref(), Some("global.example"));
        assert_eq!(
            resolve_settings(None, None, None),
            Err(DeliveryError::Permanent(NO_HOST.into()))
        );
        assert!(matches!(
            resolve_settings(None, Some("ftp://x"), global),
            Err(DeliveryError::Permanent(_))
        ));

        // An override with a host is used alone: no credentials or sender from the URL.
        let o = SmtpOverride {
            host: Some("Direct.Example".into()),
            starttls: Some(true),
            ..Default::default()
        };
        let (s, chooser) = resolve_settings(
            Some(&o),
            Some("smtp://u:p@app.example?sender=a@b.c"),
            global,
        )
        .unwrap();
        assert_eq!(s.host.as_deref(), Some("direct.example"));
        assert_eq!(chooser, Chooser::Tenant);
        assert_eq!((s.security, s.port()), (SmtpSecurity::StartTls, 587));
        assert_eq!((s.user, s.password, s.sender), (None, None, None));

        // An override without a host amends the URL.
        let o = SmtpOverride {
            sender: Some("direct@example.com".into()),
            port: Some(2525),
            ..Default::default()
        };
        let (s, _) = resolve_settings(Some(&o), app, global).unwrap();
        assert_eq!(s.host.as_deref(), Some("app.example"));
        assert_eq!(s.port(), 2525);
        assert_eq!(s.sender.as_deref(), Some("direct@example.com"));

        // The operator's server stays the operator's choice unless a request moves its port
        // (which could aim SMTP at another service on that host).
        let sender_only = SmtpOverride {
            sender: Some("direct@example.com".into()),
            ..Default::default()
        };
        let (_, chooser) = resolve_settings(Some(&sender_only), None, global).unwrap();
        assert_eq!(chooser, Chooser::Operator);
        let (_, chooser) = resolve_settings(Some(&o), None, global).unwrap();
        assert_eq!(chooser, Chooser::Tenant);
    }
}
