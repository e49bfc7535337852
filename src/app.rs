//! The app model: a tenant's credentials and settings, as every layer sees them.
//!
//! Kept apart from the registry (which finds apps) so the store can read and write apps
//! without depending on the code that looks them up.

use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::clock::now_unix;

/// Per-app settings. Every field has a default so settings written by an older version (or a
/// partial TOML table) still load.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AppSettings {
    /// Whether sockets may send `client-*` events.
    pub client_events: bool,
    /// Most simultaneous connections; `None` means no limit.
    pub max_connections: Option<u32>,
    /// Largest event `data`, in bytes.
    pub max_payload_bytes: usize,
    /// Most members in one presence channel.
    pub max_presence_members: usize,
    /// Largest presence `user_info`, in bytes.
    pub max_presence_user_info_bytes: usize,
    /// Longest presence user id.
    pub max_presence_user_id_len: usize,
    /// Most client events per second per connection.
    pub client_event_rate: u32,
    /// Pushi-dialect sockets may publish to public channels they joined (the original Pushi
    /// allowed it). Off: only private and presence channels take client events.
    pub public_client_events: bool,
    /// Client events may be stored in history and sent to offline targets when they ask for
    /// it (Pushi's `persist`). Off: they reach live sockets only.
    pub persist_client_events: bool,
    /// Most channels one socket may be subscribed to at once.
    pub max_subscriptions_per_socket: usize,
    /// Longest event name, in bytes (Pusher: 200).
    pub max_event_name_len: usize,
    /// Most channels one publish may name (Pusher: 100).
    pub max_channels_per_publish: usize,
    /// Stored events older than this many seconds are deleted; `None` keeps them by age.
    pub history_max_age_secs: Option<u64>,
    /// Most stored events kept per channel (the oldest go first); `None` keeps them all.
    pub history_max_per_channel: Option<u64>,
    /// Finished deliveries (sent or given up) are deleted after this many seconds.
    pub deliveries_max_age_secs: u64,
    /// Accept Pushi's older channel signature, which does not cover `channel_data`.
    /// Only for apps migrating from Pushi.
    pub legacy_auth: bool,
    /// Pusher's subscription counting: tell a channel's subscribers (and the webhooks) how
    /// many sockets are subscribed whenever that changes. Not for presence channels, which
    /// have member events instead.
    pub subscription_count: bool,
    /// Pusher-style app webhooks (channel and member events, client events, cache misses,
    /// subscription counts).
    pub webhooks: Vec<WebhookConfig>,
    /// Offline delivery credentials (Web Push, e-mail, Apple push).
    #[serde(flatten)]
    pub delivery: DeliverySettings,
}

/// One Pusher-style webhook endpoint of an app.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WebhookConfig {
    pub url: String,
    /// Which events to send (`channel_occupied`, `channel_vacated`, `member_added`,
    /// `member_removed`, `client_event`, `cache_miss`, `subscription_count`); empty means all.
    #[serde(default)]
    pub event_types: Vec<String>,
}

/// Per-app credentials for offline delivery. Everything here but the flags is secret and is
/// never shown by the HTTP API.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct DeliverySettings {
    /// VAPID private key: PEM, or the raw 32-byte P-256 scalar in base64url.
    pub vapid_key: Option<String>,
    /// VAPID contact (`mailto:` is added if missing).
    pub vapid_email: Option<String>,
    /// SMTP server for this app: `smtp[s]://user:password@host:port?sender=addr`.
    pub smtp_url: Option<String>,
    /// APNs token auth: the `.p8` key (PEM), its key id, the team id and the topic (bundle id).
    pub apn_auth_key: Option<String>,
    pub apn_key_id: Option<String>,
    pub apn_team_id: Option<String>,
    pub apn_topic: Option<String>,
    /// APNs certificate auth: client certificate and its key (PEM).
    pub apn_cer: Option<String>,
    pub apn_key: Option<String>,
    /// Use Apple's sandbox endpoint.
    pub apn_sandbox: bool,
    /// Override the APNs base URL (for tests and proxies).
    pub apn_url: Option<String>,
}

impl AppSettings {
    /// The settings as the HTTP API may show them: delivery secrets reduced to whether they
    /// are set.
    pub fn public_view(&self) -> serde_json::Value {
        let mut map = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        for name in SECRET_SETTINGS {
            if let Some(value) = map.get_mut(*name) {
                *value = serde_json::Value::Bool(!value.is_null());
            }
        }
        serde_json::Value::Object(map)
    }
}

/// Settings that hold a secret (a private key, a password in a URL): written, never shown;
/// the HTTP API and the CLI report only whether they are set.
pub const SECRET_SETTINGS: &[&str] = &[
    "vapid_key",
    "smtp_url",
    "apn_auth_key",
    "apn_cer",
    "apn_key",
];

/// A setting that was refused, and why: the HTTP API answers it with 400, the configuration
/// loader stops the server with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SettingError {
    pub field: String,
    pub reason: String,
}

impl SettingError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The kinds of Pusher-style app webhook events an app can ask for.
pub const WEBHOOK_EVENT_TYPES: &[&str] = &[
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
];

/// The allowed range of each numeric setting: wide enough for any real app, narrow enough
/// that a typo (an extra zero, a negative number) is caught instead of silently obeyed.
const RANGES: &[(&str, u64, u64)] = &[
    ("max_connections", 1, 10_000_000),
    ("max_payload_bytes", 1, 16 * 1024 * 1024),
    ("max_presence_members", 1, 100_000),
    ("max_presence_user_info_bytes", 1, 1024 * 1024),
    ("max_presence_user_id_len", 1, 1_000),
    ("client_event_rate", 1, 100_000),
    ("max_subscriptions_per_socket", 1, 100_000),
    (
        "max_event_name_len",
        1,
        crate::protocol::MAX_PUSHI_NAME_LEN as u64,
    ),
    ("max_channels_per_publish", 1, 10_000),
    ("history_max_age_secs", 60, 10 * 365 * 86_400),
    ("history_max_per_channel", 1, 100_000_000),
    ("deliveries_max_age_secs", 60, 365 * 86_400),
];

impl AppSettings {
    /// Every setting's name, as it appears in TOML tables and JSON bodies.
    pub fn names() -> Vec<String> {
        match serde_json::to_value(AppSettings::default()) {
            Ok(serde_json::Value::Object(map)) => map.into_iter().map(|(k, _)| k).collect(),
            _ => Vec::new(),
        }
    }

    /// Applies `changes` (setting name → new value) on top of these settings. Unknown names,
    /// values of the wrong type and values out of range are refused with the setting named;
    /// nothing is applied unless everything is valid.
    pub fn apply(
        &self,
        changes: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<AppSettings, SettingError> {
        let names = Self::names();
        if let Some(unknown) = changes.keys().find(|k| !names.contains(k)) {
            return Err(SettingError::new(
                unknown.as_str(),
                format!("unknown setting (known: {})", names.join(", ")),
            ));
        }
        let mut merged = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        for (name, value) in changes {
            // Each value is checked on its own first, so the error names the right setting.
            let mut one = serde_json::Map::new();
            one.insert(name.clone(), value.clone());
            serde_json::from_value::<AppSettings>(serde_json::Value::Object(one))
                .map_err(|e| SettingError::new(name.as_str(), type_error(&e)))?;
            merged.insert(name.clone(), value.clone());
        }
        let settings: AppSettings = serde_json::from_value(serde_json::Value::Object(merged))
            .map_err(|e| SettingError::new("settings", e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every value against its allowed range or format.
    pub fn validate(&self) -> Result<(), SettingError> {
        let values = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        for (name, min, max) in RANGES {
            // `None` (JSON null) means "no limit" and is always allowed.
            let Some(value) = values.get(*name).and_then(serde_json::Value::as_u64) else {
                continue;
            };
            if !(*min..=*max).contains(&value) {
                return Err(SettingError::new(
                    *name,
                    format!("{value} is out of range (allowed {min} to {max})"),
                ));
            }
        }
        for (i, hook) in self.webhooks.iter().enumerate() {
            check_url(&hook.url, &["http", "https"])
                .map_err(|reason| SettingError::new(format!("webhooks[{i}].url"), reason))?;
            if let Some(bad) = hook
                .event_types
                .iter()
                .find(|t| !WEBHOOK_EVENT_TYPES.contains(&t.as_str()))
            {
                return Err(SettingError::new(
                    format!("webhooks[{i}].event_types"),
                    format!(
                        "unknown event type {bad:?} (known: {})",
                        WEBHOOK_EVENT_TYPES.join(", ")
                    ),
                ));
            }
        }
        let d = &self.delivery;
        if let Some(url) = &d.smtp_url {
            check_url(url, &["smtp", "smtps", "smtp+tls", "smtp+starttls"])
                .map_err(|reason| SettingError::new("smtp_url", reason))?;
        }
        if let Some(url) = &d.apn_url {
            check_url(url, &["http", "https"])
                .map_err(|reason| SettingError::new("apn_url", reason))?;
        }
        d.validate_credentials()?;
        if let Some(contact) = &d.vapid_email {
            let contact = contact.trim();
            let is_uri = contact.starts_with("mailto:") || contact.starts_with("https://");
            if !is_uri && !looks_like_email(contact) {
                return Err(SettingError::new(
                    "vapid_email",
                    "expected an e-mail address, a mailto: URI or an https:// URL",
                ));
            }
        }
        Ok(())
    }
}

impl DeliverySettings {
    /// Checks the key material and identifiers for offline delivery by reading them the way
    /// delivery will ([`crate::credentials`]), so a bad key is refused when it is written.
    fn validate_credentials(&self) -> Result<(), SettingError> {
        let given = |value: &Option<String>| value.clone().filter(|v| !v.trim().is_empty());
        if let Some(key) = given(&self.vapid_key) {
            crate::credentials::vapid_key(&key).map_err(|r| SettingError::new("vapid_key", r))?;
        }
        if let Some(key) = given(&self.apn_auth_key) {
            crate::credentials::apn_auth_key(&key)
                .map_err(|r| SettingError::new("apn_auth_key", r))?;
        }
        if let Some(cer) = given(&self.apn_cer) {
            crate::credentials::apn_certificate(&cer)
                .map_err(|r| SettingError::new("apn_cer", r))?;
        }
        if let Some(key) = given(&self.apn_key) {
            crate::credentials::apn_client_key(&key)
                .map_err(|r| SettingError::new("apn_key", r))?;
        }
        // Apple's key and team identifiers are ten letters and digits.
        for (name, value) in [
            ("apn_key_id", &self.apn_key_id),
            ("apn_team_id", &self.apn_team_id),
        ] {
            if let Some(id) = value
                && (id.len() != 10 || !id.bytes().all(|b| b.is_ascii_alphanumeric()))
            {
                return Err(SettingError::new(
                    name,
                    "expected 10 letters and digits, as Apple issues it",
                ));
            }
        }
        if let Some(topic) = &self.apn_topic
            && (topic.is_empty()
                || topic.len() > 255
                || topic.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(SettingError::new(
                "apn_topic",
                "expected the app's bundle id (1 to 255 characters, no spaces)",
            ));
        }
        if let Some(url) = &self.smtp_url
            && let Ok(parsed) = url::Url::parse(url.trim())
            && let Some((_, sender)) = parsed.query_pairs().find(|(k, _)| k == "sender")
            // `Name <address>` or a bare address.
            && !looks_like_email(
                sender
                    .rsplit_once('<')
                    .map_or(sender.as_ref(), |(_, rest)| rest.trim_end_matches('>'))
                    .trim(),
            )
        {
            return Err(SettingError::new(
                "smtp_url",
                format!("sender {sender:?} is not an e-mail address"),
            ));
        }
        Ok(())
    }
}

/// Reads a setting given as text (a form field, a query parameter, `key=value` on the
/// command line) in the type the setting has: text settings keep the text, others take it
/// as JSON (`20000`, `null`, `[{"url": ...}]`) or as a boolean word (`1`/`0`, `true`/`false`,
/// `yes`/`no`, `on`/`off`); empty text clears an optional setting. Anything else is left as
/// text, so [`App::with_changes`] refuses it with the setting named. Values that are not text
/// are returned unchanged.
pub fn typed_setting(name: &str, value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let Value::String(text) = &value else {
        return value;
    };
    let text = text.trim();
    if APP_TEXT_FIELDS.contains(&name) {
        return value;
    }
    if name == "enabled" {
        return bool_word(text).map_or(value, Value::Bool);
    }
    let fits = |candidate: &Value| {
        let mut one = serde_json::Map::new();
        one.insert(name.to_owned(), candidate.clone());
        serde_json::from_value::<AppSettings>(Value::Object(one)).is_ok()
    };
    if text.is_empty() && fits(&Value::Null) {
        return Value::Null;
    }
    if fits(&value) {
        return value;
    }
    if let Ok(parsed) = serde_json::from_str::<Value>(text)
        && fits(&parsed)
    {
        return parsed;
    }
    match bool_word(text) {
        Some(b) if fits(&Value::Bool(b)) => Value::Bool(b),
        _ => value,
    }
}

/// The app's own text fields (not settings).
const APP_TEXT_FIELDS: &[&str] = &["name", "description"];

/// The words a boolean may be written as.
fn bool_word(text: &str) -> Option<bool> {
    match text {
        "1" | "true" | "True" | "TRUE" | "yes" | "on" => Some(true),
        "0" | "false" | "False" | "FALSE" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// Turns serde's message for a one-setting object into a short reason.
fn type_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.split_once(" at line ") {
        Some((reason, _)) => reason.to_owned(),
        None => text,
    }
}

/// An absolute URL with one of `schemes` and a host.
fn check_url(url: &str, schemes: &[&str]) -> Result<(), String> {
    let parsed = url::Url::parse(url.trim()).map_err(|e| format!("not a valid URL: {e}"))?;
    if !schemes.contains(&parsed.scheme()) {
        return Err(format!(
            "scheme {:?} is not allowed (use {})",
            parsed.scheme(),
            schemes.join(", ")
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(())
}

/// `local@domain` with something on both sides and no spaces: what every mail server needs,
/// without pretending to implement RFC 5322.
pub fn looks_like_email(address: &str) -> bool {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !address.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            client_events: true,
            max_connections: None,
            max_payload_bytes: 10 * 1024,
            max_presence_members: 100,
            max_presence_user_info_bytes: 1024,
            max_presence_user_id_len: 128,
            client_event_rate: 10,
            public_client_events: false,
            persist_client_events: false,
            max_subscriptions_per_socket: 1_000,
            max_event_name_len: crate::protocol::MAX_EVENT_NAME_LEN,
            max_channels_per_publish: crate::protocol::MAX_TRIGGER_CHANNELS,
            history_max_age_secs: Some(30 * 86_400),
            history_max_per_channel: Some(10_000),
            deliveries_max_age_secs: 7 * 86_400,
            legacy_auth: false,
            subscription_count: false,
            webhooks: Vec::new(),
            delivery: DeliverySettings::default(),
        }
    }
}

impl AppSettings {
    /// The "Pushi" profile: what an app created through Pushi's REST API (`POST /apps`)
    /// starts with, so an unmodified Pushi deployment keeps working. The original had no
    /// limits at all; these admit what its apps practically did (20 KB events, a publish to a
    /// few hundred channels, long event names and user ids, crowded presence channels) and
    /// stay finite. Each can be changed per app like any setting. Apps created any other way
    /// (configuration, `pushi apps create`, the admin API) start from [`Default`], Pusher's
    /// limits. Both profiles are listed in docs/security.md.
    pub fn pushi_profile() -> Self {
        Self {
            max_payload_bytes: 64 * 1024,
            max_channels_per_publish: 1_000,
            max_event_name_len: crate::protocol::MAX_PUSHI_NAME_LEN,
            max_presence_user_id_len: 512,
            max_presence_members: 1_000,
            max_presence_user_info_bytes: 4 * 1024,
            client_event_rate: 100,
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct App {
    /// Numeric string: the PyPI `pusher` SDK refuses other ids.
    pub id: String,
    pub key: String,
    pub secret: String,
    pub name: String,
    /// Pushi's 64-hex identifier of the app.
    pub ident: String,
    pub enabled: bool,
    pub settings: AppSettings,
    pub description: Option<String>,
    pub created: i64,
    pub modified: i64,
}

impl App {
    /// This app with `changes` applied: `name`, `description` and `enabled` are the app's own
    /// fields, every other key is a setting (see [`AppSettings::apply`]). Refuses unknown keys
    /// and bad values with the key named, and changes nothing then.
    pub fn with_changes(
        &self,
        changes: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<App, SettingError> {
        let mut app = self.clone();
        let mut settings = serde_json::Map::new();
        for (key, value) in changes {
            match key.as_str() {
                "name" => match value.as_str().map(str::trim) {
                    Some(name) if !name.is_empty() && name.len() <= 256 => {
                        app.name = name.to_owned()
                    }
                    _ => return Err(SettingError::new("name", "expected 1 to 256 characters")),
                },
                "description" => match value {
                    serde_json::Value::Null => app.description = None,
                    serde_json::Value::String(d) if d.len() <= 4096 => {
                        app.description = Some(d.clone())
                    }
                    _ => {
                        return Err(SettingError::new(
                            "description",
                            "expected text of at most 4096 bytes",
                        ));
                    }
                },
                "enabled" => match value.as_bool() {
                    Some(enabled) => app.enabled = enabled,
                    None => return Err(SettingError::new("enabled", "expected true or false")),
                },
                _ => {
                    settings.insert(key.clone(), value.clone());
                }
            }
        }
        app.settings = self.settings.apply(&settings)?;
        if app != *self {
            app.modified = now_unix();
        }
        Ok(app)
    }
}

/// 64 lowercase hex characters from the OS random generator: Pushi's recipe for idents, keys
/// and secrets (Pushi hashes a random UUID; 32 random bytes are at least as strong).
pub fn random_hex64() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

/// The Pushi `ident` of an app declared in configuration without one: 64 hex characters,
/// the same on every start and every node (SHA-256 of the id and the key, domain-separated),
/// so Pushi clients can keep logging in with it. Not the key itself, which is public.
pub fn derived_ident(id: &str, key: &str) -> String {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    hasher.update(b"pushi app ident\0");
    hasher.update(id.as_bytes());
    hasher.update(b"\0");
    hasher.update(key.as_bytes());
    hex::encode(hasher.finalize())
}

/// Checks an `ident` given in configuration: it appears in paths (`/apps/{ident}`) and in
/// Pushi's login, so 1 to 128 letters, digits, `-`, `_` or `.`.
pub fn check_ident(ident: &str) -> Result<(), String> {
    let fine = !ident.is_empty()
        && ident.len() <= 128
        && ident
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if fine {
        Ok(())
    } else {
        Err("expected 1 to 128 letters, digits, '-', '_' or '.'".into())
    }
}

/// What creating an app needs; the rest is generated.
#[derive(Debug, Clone, Default)]
pub struct NewApp {
    pub name: String,
    pub settings: AppSettings,
    pub description: Option<String>,
}

impl NewApp {
    /// Fills in generated credentials. The numeric id is assigned by the store.
    pub fn into_app(self) -> App {
        let now = now_unix();
        App {
            id: String::new(),
            key: random_hex64(),
            secret: random_hex64(),
            ident: random_hex64(),
            name: self.name,
            enabled: true,
            settings: self.settings,
            description: self.description,
            created: now,
            modified: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn changes(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        match value {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("tests pass objects"),
        }
    }

    #[test]
    fn apply_accepts_known_settings() {
        let s = AppSettings::default()
            .apply(&changes(json!({
                "client_events": false,
                "max_payload_bytes": 20000,
                "smtp_url": "smtps://u:p@mail.example.com:465?sender=a@b.c",
                "webhooks": [{"url": "https://example.com/hook", "event_types": ["member_added"]}],
            })))
            .unwrap();
        assert!(!s.client_events);
        assert_eq!(s.max_payload_bytes, 20000);
        assert_eq!(s.webhooks.len(), 1);
        assert!(s.delivery.smtp_url.is_some());
        let s = s
            .apply(&changes(
                json!({"history_max_age_secs": null, "max_connections": 5}),
            ))
            .unwrap();
        assert_eq!(s.history_max_age_secs, None, "null lifts an optional limit");
        assert_eq!(s.max_connections, Some(5));
    }

    #[test]
    fn text_values_take_the_settings_type() {
        let typed = |name: &str, text: &str| typed_setting(name, json!(text));
        assert_eq!(typed("client_events", "0"), json!(false));
        assert_eq!(typed("client_events", "True"), json!(true));
        assert_eq!(typed("max_payload_bytes", "20000"), json!(20000));
        assert_eq!(typed("max_connections", ""), serde_json::Value::Null);
        assert_eq!(
            typed("history_max_age_secs", "null"),
            serde_json::Value::Null
        );
        assert_eq!(typed("vapid_email", "123"), json!("123"));
        assert_eq!(typed("smtp_url", ""), serde_json::Value::Null);
        assert_eq!(typed("name", "true"), json!("true"));
        assert_eq!(typed("enabled", "False"), json!(false));
        assert_eq!(
            typed("webhooks", r#"[{"url": "https://x.test"}]"#)[0]["url"],
            "https://x.test"
        );
        // Left as text, for `apply` to refuse with the setting named.
        assert_eq!(typed("client_events", "maybe"), json!("maybe"));
        assert_eq!(typed_setting("client_events", json!(true)), json!(true));
    }

    #[test]
    fn apply_names_what_it_refuses() {
        let base = AppSettings::default();
        let field = |v| base.apply(&changes(v)).unwrap_err().field;
        assert_eq!(field(json!({"client_event": true})), "client_event");
        assert_eq!(field(json!({"client_events": "yes"})), "client_events");
        assert_eq!(field(json!({"max_payload_bytes": 0})), "max_payload_bytes");
        assert_eq!(
            field(json!({"max_presence_members": -1})),
            "max_presence_members"
        );
        assert_eq!(field(json!({"smtp_url": "ftp://x"})), "smtp_url");
        assert_eq!(
            field(json!({"webhooks": [{"url": "not a url"}]})),
            "webhooks[0].url"
        );
        assert_eq!(
            field(json!({"webhooks": [{"url": "http://x", "event_types": ["nope"]}]})),
            "webhooks[0].event_types"
        );
        assert_eq!(field(json!({"vapid_email": "nobody"})), "vapid_email");
        assert_eq!(
            field(json!({"history_max_age_secs": 1})),
            "history_max_age_secs"
        );
        assert_eq!(field(json!({"max_connections": 0})), "max_connections");
        assert_eq!(
            field(json!({"max_event_name_len": 1_001})),
            "max_event_name_len"
        );
        assert_eq!(
            field(json!({"max_channels_per_publish": 0})),
            "max_channels_per_publish"
        );
    }

    #[test]
    fn both_profiles_are_valid_and_the_pushi_one_admits_the_originals_sizes() {
        AppSettings::default().validate().unwrap();
        let pushi = AppSettings::pushi_profile();
        pushi.validate().unwrap();
        let pusher = AppSettings::default();
        assert_eq!(pusher.max_event_name_len, 200);
        assert_eq!(pusher.max_channels_per_publish, 100);
        assert!(pushi.max_payload_bytes >= 20 * 1024);
        assert!(pushi.max_channels_per_publish > 100);
        assert!(pushi.max_event_name_len >= 250);
        assert!(pushi.max_presence_user_id_len >= 200);
        assert!(pushi.max_presence_members > 100);
        // Settable like any other, and a stored app from before these settings loads with
        // Pusher's values.
        let changed = pushi
            .apply(&changes(
                json!({"max_channels_per_publish": 5, "max_event_name_len": 300}),
            ))
            .unwrap();
        assert_eq!(changed.max_channels_per_publish, 5);
        assert_eq!(changed.max_event_name_len, 300);
        let old: AppSettings = serde_json::from_value(json!({"max_payload_bytes": 1})).unwrap();
        assert_eq!(old.max_channels_per_publish, 100);
    }
}
