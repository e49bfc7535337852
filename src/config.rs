//! One `Config`, assembled from defaults < TOML file < environment < command-line flags.
//!
//! Pushi's own variables keep their meaning (`APP_HOST`/`APP_PORT` for the HTTP API,
//! `SERVER_HOST`/`SERVER_PORT` for WebSockets) so an existing deployment's environment works
//! unchanged; both listeners serve both protocols, so one port is enough when they coincide.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::app::{App, AppSettings};
use crate::clock::now_unix;
use crate::cluster::ClusterConfig;
use crate::hub::HubConfig;
use crate::listener::ListenerLimits;
use crate::notify::NotifyConfig;
use crate::store::HousekeepingConfig;
use crate::tls::TlsFiles;

pub const DEFAULT_DATABASE_URL: &str = "sqlite://pushi.db";
pub const DEFAULT_CONFIG_FILE: &str = "pushi.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub http_host: String,
    pub http_port: u16,
    pub ws_host: String,
    pub ws_port: u16,
    pub database_url: String,
    pub hub: HubConfig,
    /// Apps declared in the TOML file or `PUSHI_APP_*`; never stored.
    pub static_apps: Vec<App>,
    pub log_format: LogFormat,
    /// Bearer token for app creation and cross-app listing over HTTP.
    pub admin_token: Option<String>,
    /// The operator's listener (`HOST:PORT`): `/metrics` and the health details there need no
    /// token. `None`: no such listener, and those routes need the admin token.
    pub admin_addr: Option<String>,
    /// Let anyone `POST /apps`, as the original Pushi did.
    pub open_apps: bool,
    /// Offline delivery (webhooks, Web Push, e-mail, APNs).
    pub notify: NotifyConfig,
    /// Several nodes over Redis or NATS; `None` runs a single node.
    pub cluster: Option<ClusterConfig>,
    /// TLS on the HTTP API listener (`APP_SSL`, `APP_SSL_KEY`, `APP_SSL_CER`).
    pub http_tls: Option<TlsFiles>,
    /// TLS on the WebSocket listener (`SERVER_SSL`, `SERVER_SSL_KEY`, `SERVER_SSL_CER`).
    pub ws_tls: Option<TlsFiles>,
    /// Connection caps and timeouts at the listeners.
    pub listener: ListenerLimits,
    /// How often and in what batches the store deletes what retention lets go.
    pub housekeeping: HousekeepingConfig,
}

/// The TOML file's shape; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub http_host: Option<String>,
    pub http_port: Option<u16>,
    pub ws_host: Option<String>,
    pub ws_port: Option<u16>,
    pub database_url: Option<String>,
    pub activity_timeout: Option<u64>,
    pub queue_len: Option<usize>,
    pub log_format: Option<LogFormat>,
    pub admin_token: Option<String>,
    pub open_apps: Option<bool>,
    pub cluster: Option<String>,
    pub node_id: Option<String>,
    pub cluster_namespace: Option<String>,
    pub node_timeout: Option<u64>,
    pub handlers: Option<bool>,
    pub smtp_url: Option<String>,
    pub web_push_ttl: Option<u64>,
    pub apns_url: Option<String>,
    pub delivery_max_attempts: Option<u32>,
    pub delivery_timeout: Option<u64>,
    pub delivery_backoff_ms: Option<u64>,
    pub webhook_hold: Option<u64>,
    pub http_ssl: Option<bool>,
    pub http_ssl_key: Option<PathBuf>,
    pub http_ssl_cer: Option<PathBuf>,
    pub ws_ssl: Option<bool>,
    pub ws_ssl_key: Option<PathBuf>,
    pub ws_ssl_cer: Option<PathBuf>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub header_timeout: Option<u64>,
    pub handshake_timeout: Option<u64>,
    pub admin_addr: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub outbound_allow: Option<Vec<String>>,
    pub max_targets_per_request: Option<usize>,
    pub legacy_auth: Option<bool>,
    /// `[[apps]]` tables, checked key by key in [`StaticAppConfig::from_table`] (serde cannot
    /// refuse unknown keys next to flattened settings).
    pub apps: Vec<toml::Table>,
}

/// An app declared in configuration.
#[derive(Debug)]
pub struct StaticAppConfig {
    pub id: String,
    pub key: String,
    pub secret: String,
    pub name: Option<String>,
    /// Pushi's identifier (login, `/apps/{ident}`); derived from the id and key when absent.
    pub ident: Option<String>,
    pub enabled: bool,
    pub settings: AppSettings,
}

/// The keys of an `[[apps]]` table that are not settings.
const APP_IDENTITY_KEYS: &[&str] = &["id", "key", "secret", "name", "ident", "enabled"];

impl StaticAppConfig {
    /// Reads one `[[apps]]` table: identity keys, then every other key as a setting, refusing
    /// unknown keys and invalid values with the key named.
    fn from_table(index: usize, table: toml::Table) -> Result<Self, ConfigError> {
        let bad = |key: &str, reason: String| {
            ConfigError::Invalid(format!("apps[{index}].{key}: {reason}"))
        };
        let text = |key: &str| -> Result<Option<String>, ConfigError> {
            match table.get(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                Some(toml::Value::Integer(n)) if key == "id" => Ok(Some(n.to_string())),
                Some(_) => Err(bad(key, "expected a string".into())),
            }
        };
        let required = |key: &str| text(key)?.ok_or_else(|| bad(key, "is required".into()));
        let enabled = match table.get("enabled") {
            None => true,
            Some(toml::Value::Boolean(b)) => *b,
            Some(_) => return Err(bad("enabled", "expected true or false".into())),
        };
        let changes: serde_json::Map<String, serde_json::Value> = table
            .iter()
            .filter(|(k, _)| !APP_IDENTITY_KEYS.contains(&k.as_str()))
            .map(|(k, v)| Ok((k.clone(), toml_to_json(v).map_err(|r| bad(k, r))?)))
            .collect::<Result<_, ConfigError>>()?;
        let settings = AppSettings::default()
            .apply(&changes)
            .map_err(|e| bad(&e.field, e.reason))?;
        Ok(Self {
            id: required("id")?,
            key: required("key")?,
            secret: required("secret")?,
            name: text("name")?,
            ident: text("ident")?,
            enabled,
            settings,
        })
    }

    fn into_app(self) -> App {
        App {
            name: self.name.unwrap_or_else(|| format!("app-{}", self.id)),
            ident: self
                .ident
                .unwrap_or_else(|| crate::app::derived_ident(&self.id, &self.key)),
            id: self.id,
            key: self.key,
            secret: self.secret,
            enabled: self.enabled,
            settings: self.settings,
            description: None,
            created: now_unix(),
            modified: now_unix(),
        }
    }
}

/// Values given on the command line (highest precedence).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Flags {
    /// TOML configuration file [default: ./pushi.toml if present; env PUSHI_CONFIG]
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Database URL: sqlite://FILE or postgres://... [default: sqlite://pushi.db; env PUSHI_DATABASE_URL]
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// HTTP API bind address [default: 127.0.0.1; env APP_HOST]
    #[arg(long, global = true)]
    pub http_host: Option<String>,
    /// HTTP API port [default: 8080; env APP_PORT]
    #[arg(long, global = true)]
    pub http_port: Option<u16>,
    /// WebSocket bind address [default: 127.0.0.1; env SERVER_HOST]
    #[arg(long, global = true)]
    pub ws_host: Option<String>,
    /// WebSocket port [default: 9090; env SERVER_PORT]
    #[arg(long, global = true)]
    pub ws_port: Option<u16>,
    /// Serve everything on this one port (sets both --http-port and --ws-port)
    #[arg(long, global = true)]
    pub port: Option<u16>,
    /// Seconds of client silence before the server pings [default: 120; env PUSHI_ACTIVITY_TIMEOUT]
    #[arg(long, global = true)]
    pub activity_timeout: Option<u64>,
    /// Frames queued per socket before it is closed as too slow [default: 1024; env PUSHI_QUEUE_LEN]
    #[arg(long, global = true)]
    pub queue_len: Option<usize>,
    /// Log format [default: text; env PUSHI_LOG_FORMAT]
    #[arg(long, value_enum, global = true)]
    pub log_format: Option<LogFormat>,
    /// Run as one node of a cluster: redis://HOST:PORT or nats://HOST:PORT [env PUSHI_CLUSTER]
    #[arg(long, global = true)]
    pub cluster: Option<String>,
    /// This node's name in the cluster [default: HOSTNAME plus a random suffix; env PUSHI_NODE_ID]
    #[arg(long, global = true)]
    pub node_id: Option<String>,
    /// Prefix of the cluster's broker subjects, to share a broker between clusters [env PUSHI_CLUSTER_NAMESPACE]
    #[arg(long, global = true)]
    pub cluster_namespace: Option<String>,
    /// Seconds without a heartbeat before a node counts as dead [default: 10; env PUSHI_NODE_TIMEOUT]
    #[arg(long, global = true)]
    pub node_timeout: Option<u64>,
    /// Offline delivery on or off [default: true; env PUSHI_HANDLERS]
    #[arg(long, global = true)]
    pub handlers: Option<bool>,
    /// Server-wide SMTP server: smtp[s]://user:password@host:port?sender=ADDR [env SMTP_URL]
    #[arg(long, global = true)]
    pub smtp_url: Option<String>,
    /// Seconds a push service keeps an undelivered Web Push message [default: 86400; env WEB_PUSH_TTL]
    #[arg(long, global = true)]
    pub web_push_ttl: Option<u64>,
    /// APNs base URL override for every app [env PUSHI_APNS_URL]
    #[arg(long, global = true)]
    pub apns_url: Option<String>,
    /// Attempts before a delivery is given up [default: 12; env PUSHI_DELIVERY_MAX_ATTEMPTS]
    #[arg(long, global = true)]
    pub delivery_max_attempts: Option<u32>,
    /// Seconds each delivery attempt may take [default: 10; env PUSHI_DELIVERY_TIMEOUT]
    #[arg(long, global = true)]
    pub delivery_timeout: Option<u64>,
    /// First retry delay in milliseconds, doubled per attempt [default: 1000; env PUSHI_DELIVERY_BACKOFF_MS]
    #[arg(long, global = true)]
    pub delivery_backoff_ms: Option<u64>,
    /// Seconds channel_vacated/member_removed webhooks wait for a quick return [default: 3; env PUSHI_WEBHOOK_HOLD]
    #[arg(long, global = true)]
    pub webhook_hold: Option<u64>,
    /// TLS on the HTTP API listener (on when its key and certificate are given) [env APP_SSL]
    #[arg(long, global = true)]
    pub http_ssl: Option<bool>,
    /// PEM private key (PKCS#8, RSA or EC) of the HTTP API listener [env APP_SSL_KEY]
    #[arg(long, global = true)]
    pub http_ssl_key: Option<PathBuf>,
    /// PEM certificate chain of the HTTP API listener [env APP_SSL_CER]
    #[arg(long, global = true)]
    pub http_ssl_cer: Option<PathBuf>,
    /// TLS on the WebSocket listener (on when its key and certificate are given) [env SERVER_SSL]
    #[arg(long, global = true)]
    pub ws_ssl: Option<bool>,
    /// PEM private key of the WebSocket listener [env SERVER_SSL_KEY]
    #[arg(long, global = true)]
    pub ws_ssl_key: Option<PathBuf>,
    /// PEM certificate chain of the WebSocket listener [env SERVER_SSL_CER]
    #[arg(long, global = true)]
    pub ws_ssl_cer: Option<PathBuf>,
    /// Connections open at once, all listeners [default: descriptor limit - 256; env PUSHI_MAX_CONNECTIONS]
    #[arg(long, global = true)]
    pub max_connections: Option<usize>,
    /// Connections open at once from one address [default: 1000; env PUSHI_MAX_CONNECTIONS_PER_IP]
    #[arg(long, global = true)]
    pub max_connections_per_ip: Option<usize>,
    /// Seconds for a request head to arrive, and for an idle keep-alive connection [default: 30; env PUSHI_HEADER_TIMEOUT]
    #[arg(long, global = true)]
    pub header_timeout: Option<u64>,
    /// Seconds for a TLS handshake [default: 10; env PUSHI_HANDSHAKE_TIMEOUT]
    #[arg(long, global = true)]
    pub handshake_timeout: Option<u64>,
    /// The operator's listener (HOST:PORT): /metrics and health details without a token;
    /// keep it private [env PUSHI_ADMIN_ADDR]
    #[arg(long, global = true)]
    pub admin_addr: Option<String>,
    /// Proxies whose X-Forwarded-For is believed: addresses or CIDR ranges, comma-separated [env PUSHI_TRUSTED_PROXIES]
    #[arg(long, global = true, value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// Non-public addresses deliveries may reach (intranet receivers, tests): addresses or CIDR ranges, comma-separated [env PUSHI_OUTBOUND_ALLOW]
    #[arg(long, global = true, value_delimiter = ',')]
    pub outbound_allow: Option<Vec<String>>,
    /// Targets one direct-messaging request may name [default: 100; env PUSHI_MAX_TARGETS_PER_REQUEST]
    #[arg(long, global = true)]
    pub max_targets_per_request: Option<usize>,
    /// Accept Pushi's older presence signature (without channel_data) for every app, while
    /// migrating from Pushi [default: false; env PUSHI_LEGACY_AUTH]
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub legacy_auth: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid value {value:?} for {name}: {reason}")]
    Env {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Where environment values come from; tests pass a map instead of the process env.
pub type EnvSource<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn env_parse<T: std::str::FromStr>(
    env: EnvSource<'_>,
    name: &'static str,
) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match env(name) {
        None => Ok(None),
        Some(value) => value
            .parse()
            .map(Some)
            .map_err(|e: T::Err| ConfigError::Env {
                name,
                reason: e.to_string(),
                value,
            }),
    }
}

/// A TOML value as JSON, the form app settings are validated in.
fn toml_to_json(value: &toml::Value) -> Result<serde_json::Value, String> {
    serde_json::to_value(value).map_err(|e| e.to_string())
}

/// A number that must lie in `min..=max`, refused (never clamped) with the range named.
fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    name: &str,
    value: T,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::Invalid(format!(
            "{name}: {value} is out of range (allowed {min} to {max})"
        )));
    }
    Ok(value)
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

impl Config {
    /// Loads the configuration: defaults, then the TOML file, then `env`, then `flags`.
    pub fn load(flags: &Flags, env: EnvSource<'_>) -> Result<Self, ConfigError> {
        let file_path = flags
            .config
            .clone()
            .or_else(|| env("PUSHI_CONFIG").map(PathBuf::from))
            .or_else(|| {
                let default = PathBuf::from(DEFAULT_CONFIG_FILE);
                default.exists().then_some(default)
            });
        let file = match &file_path {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let notify = notify_config(flags, env, &file)?;
        let http_tls = tls_files(
            "APP_SSL",
            flags
                .http_ssl
                .or(env_bool(env, "APP_SSL")?)
                .or(file.http_ssl),
            flags
                .http_ssl_key
                .clone()
                .or_else(|| env("APP_SSL_KEY").map(PathBuf::from))
                .or_else(|| file.http_ssl_key.clone()),
            flags
                .http_ssl_cer
                .clone()
                .or_else(|| env("APP_SSL_CER").map(PathBuf::from))
                .or_else(|| file.http_ssl_cer.clone()),
        )?;
        let ws_tls = tls_files(
            "SERVER_SSL",
            flags
                .ws_ssl
                .or(env_bool(env, "SERVER_SSL")?)
                .or(file.ws_ssl),
            flags
                .ws_ssl_key
                .clone()
                .or_else(|| env("SERVER_SSL_KEY").map(PathBuf::from))
                .or_else(|| file.ws_ssl_key.clone()),
            flags
                .ws_ssl_cer
                .clone()
                .or_else(|| env("SERVER_SSL_CER").map(PathBuf::from))
                .or_else(|| file.ws_ssl_cer.clone()),
        )?;
        let listener = listener_limits(flags, env, &file)?;

        let mut hub = HubConfig::default();
        let activity = flags
            .activity_timeout
            .or(env_parse(env, "PUSHI_ACTIVITY_TIMEOUT")?)
            .or(file.activity_timeout);
        if let Some(secs) = activity {
            in_range("activity_timeout", secs, 1, 3600)?;
            hub.activity_timeout = Duration::from_secs(secs);
            // A client gets as long to answer a ping as it had to speak, up to Pusher's 30 s.
            hub.pong_timeout = Duration::from_secs(secs.min(30));
        }
        hub.legacy_auth = flags
            .legacy_auth
            .or(env_bool(env, "PUSHI_LEGACY_AUTH")?)
            .or(file.legacy_auth)
            .unwrap_or(false);
        if let Some(len) = flags
            .queue_len
            .or(env_parse(env, "PUSHI_QUEUE_LEN")?)
            .or(file.queue_len)
        {
            hub.queue_len = in_range("queue_len", len, 1, 1_000_000)?;
        }

        let mut static_apps: Vec<App> = file
            .apps
            .into_iter()
            .enumerate()
            .map(|(i, table)| StaticAppConfig::from_table(i, table).map(StaticAppConfig::into_app))
            .collect::<Result<_, _>>()?;
        match (
            env("PUSHI_APP_ID"),
            env("PUSHI_APP_KEY"),
            env("PUSHI_APP_SECRET"),
        ) {
            (Some(id), Some(key), Some(secret)) => {
                static_apps.retain(|a| a.id != id);
                static_apps.push(
                    StaticAppConfig {
                        id,
                        key,
                        secret,
                        name: env("PUSHI_APP_NAME"),
                        ident: env("PUSHI_APP_IDENT"),
                        enabled: true,
                        settings: AppSettings::default(),
                    }
                    .into_app(),
                );
            }
            (None, None, None) if env("PUSHI_APP_IDENT").is_some() => {
                return Err(ConfigError::Invalid(
                    "PUSHI_APP_IDENT names the ident of the app of PUSHI_APP_ID, which is not set"
                        .into(),
                ));
            }
            (None, None, None) => {}
            _ => {
                return Err(ConfigError::Invalid(
                    "PUSHI_APP_ID, PUSHI_APP_KEY and PUSHI_APP_SECRET must be set together".into(),
                ));
            }
        }
        for app in &static_apps {
            if app.id.is_empty() || app.key.is_empty() || app.secret.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "app {:?}: id, key and secret must not be empty",
                    app.name
                )));
            }
            crate::app::check_ident(&app.ident).map_err(|reason| {
                ConfigError::Invalid(format!("app {}: ident {:?}: {reason}", app.id, app.ident))
            })?;
        }
        for (i, app) in static_apps.iter().enumerate() {
            if let Some(other) = static_apps[..i].iter().find(|o| o.ident == app.ident) {
                return Err(ConfigError::Invalid(format!(
                    "apps {} and {} have the same ident {:?}",
                    other.id, app.id, app.ident
                )));
            }
        }

        let pick_port = |flag: Option<u16>, var: &'static str, file: Option<u16>, default: u16| {
            Ok::<_, ConfigError>(
                flag.or(flags.port)
                    .or(env_parse(env, var)?)
                    .or(file)
                    .unwrap_or(default),
            )
        };
        let http_port = pick_port(flags.http_port, "APP_PORT", file.http_port, 8080)?;
        let ws_port = pick_port(flags.ws_port, "SERVER_PORT", file.ws_port, 9090)?;
        let http_host = flags
            .http_host
            .clone()
            .or_else(|| env("APP_HOST"))
            .or(file.http_host)
            .unwrap_or_else(|| "127.0.0.1".into());
        let ws_host = flags
            .ws_host
            .clone()
            .or_else(|| env("SERVER_HOST"))
            .or(file.ws_host)
            .unwrap_or_else(|| "127.0.0.1".into());
        let database_url = flags
            .database_url
            .clone()
            .or_else(|| env("PUSHI_DATABASE_URL"))
            .or(file.database_url)
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        let log_format = flags
            .log_format
            .or(match env("PUSHI_LOG_FORMAT").as_deref() {
                Some("json") => Some(LogFormat::Json),
                Some("text") => Some(LogFormat::Text),
                Some(other) => {
                    return Err(ConfigError::Env {
                        name: "PUSHI_LOG_FORMAT",
                        value: other.into(),
                        reason: "use text or json".into(),
                    });
                }
                None => None,
            })
            .or(file.log_format)
            .unwrap_or(LogFormat::Text);

        let admin_token = env("PUSHI_ADMIN_TOKEN")
            .or(file.admin_token)
            .filter(|t| !t.is_empty());
        let admin_addr = flags
            .admin_addr
            .clone()
            .or_else(|| env("PUSHI_ADMIN_ADDR"))
            .or(file.admin_addr)
            .filter(|a| !a.is_empty());
        let open_apps = env_bool(env, "PUSHI_OPEN_APPS")?
            .or(file.open_apps)
            .unwrap_or(false);

        let cluster = match flags
            .cluster
            .clone()
            .or_else(|| env("PUSHI_CLUSTER"))
            .or(file.cluster)
        {
            Some(url) => {
                let mut cluster = ClusterConfig::new(url);
                if let Some(id) = flags
                    .node_id
                    .clone()
                    .or_else(|| env("PUSHI_NODE_ID"))
                    .or(file.node_id)
                {
                    cluster.node_id = id;
                }
                if let Some(ns) = flags
                    .cluster_namespace
                    .clone()
                    .or_else(|| env("PUSHI_CLUSTER_NAMESPACE"))
                    .or(file.cluster_namespace)
                {
                    cluster.namespace = ns;
                }
                if let Some(secs) = flags
                    .node_timeout
                    .or(env_parse::<u64>(env, "PUSHI_NODE_TIMEOUT")?)
                    .or(file.node_timeout)
                {
                    cluster.node_timeout =
                        Duration::from_secs(in_range("node_timeout", secs, 2, 3600)?);
                }
                Some(cluster)
            }
            None => None,
        };

        if http_host == ws_host
            && http_port == ws_port
            && let (Some(a), Some(b)) = (&http_tls, &ws_tls)
            && a != b
        {
            return Err(ConfigError::Invalid(
                "the HTTP API and WebSocket share one port but name different TLS \
                 certificates; give one pair (APP_SSL_* or SERVER_SSL_*)"
                    .into(),
            ));
        }

        Ok(Self {
            http_tls,
            ws_tls,
            listener,
            cluster,
            notify,
            admin_token,
            admin_addr,
            open_apps,
            http_host,
            http_port,
            ws_host,
            ws_port,
            database_url,
            hub,
            static_apps,
            log_format,
            housekeeping: HousekeepingConfig::default(),
        })
    }
}

/// Reads a boolean the way Pushi's environment does: 1/0, true/false, yes/no.
fn env_bool(env: EnvSource<'_>, name: &'static str) -> Result<Option<bool>, ConfigError> {
    match env(name).as_deref() {
        None => Ok(None),
        Some("1" | "true" | "True" | "yes") => Ok(Some(true)),
        Some("0" | "false" | "False" | "no") => Ok(Some(false)),
        Some(other) => Err(ConfigError::Env {
            name,
            value: other.into(),
            reason: "use 1 or 0".into(),
        }),
    }
}

/// A listener's TLS files: on when `enabled` says so, or when both files are given and
/// `enabled` does not say no.
fn tls_files(
    name: &str,
    enabled: Option<bool>,
    key: Option<PathBuf>,
    cert: Option<PathBuf>,
) -> Result<Option<TlsFiles>, ConfigError> {
    match (enabled, key, cert) {
        (Some(false), _, _) | (None, None, None) => Ok(None),
        (_, Some(key), Some(cert)) => Ok(Some(TlsFiles { cert, key })),
        (_, key, _) => Err(ConfigError::Invalid(format!(
            "{name}: TLS needs both {name}_KEY and {name}_CER (missing {})",
            if key.is_none() {
                "the key"
            } else {
                "the certificate"
            }
        ))),
    }
}

/// Connection caps and timeouts at the listeners.
fn listener_limits(
    flags: &Flags,
    env: EnvSource<'_>,
    file: &FileConfig,
) -> Result<ListenerLimits, ConfigError> {
    let mut limits = ListenerLimits::default();
    if let Some(n) = flags
        .max_connections
        .or(env_parse(env, "PUSHI_MAX_CONNECTIONS")?)
        .or(file.max_connections)
    {
        limits.max_connections = in_range("max_connections", n, 1, 100_000_000)?;
    }
    if let Some(n) = flags
        .max_connections_per_ip
        .or(env_parse(env, "PUSHI_MAX_CONNECTIONS_PER_IP")?)
        .or(file.max_connections_per_ip)
    {
        limits.max_connections_per_ip = in_range("max_connections_per_ip", n, 1, 100_000_000)?;
    }
    if let Some(secs) = flags
        .header_timeout
        .or(env_parse(env, "PUSHI_HEADER_TIMEOUT")?)
        .or(file.header_timeout)
    {
        limits.header_timeout = Duration::from_secs(in_range("header_timeout", secs, 1, 3600)?);
    }
    if let Some(secs) = flags
        .handshake_timeout
        .or(env_parse(env, "PUSHI_HANDSHAKE_TIMEOUT")?)
        .or(file.handshake_timeout)
    {
        limits.handshake_timeout =
            Duration::from_secs(in_range("handshake_timeout", secs, 1, 3600)?);
    }
    let proxies = list_setting(
        flags.trusted_proxies.as_ref(),
        env,
        "PUSHI_TRUSTED_PROXIES",
        file.trusted_proxies.as_ref(),
    );
    limits.trusted_proxies = ip_nets("trusted_proxies", &proxies)?;
    Ok(limits)
}

/// A list setting: the flag's values, else the environment variable's comma-separated ones,
/// else the file's.
fn list_setting(
    flag: Option<&Vec<String>>,
    env: EnvSource<'_>,
    name: &str,
    file: Option<&Vec<String>>,
) -> Vec<String> {
    flag.cloned()
        .or_else(|| env(name).map(|v| v.split(',').map(|p| p.trim().to_owned()).collect()))
        .or_else(|| file.cloned())
        .unwrap_or_default()
}

/// Addresses and CIDR ranges (`10.0.0.0/8`, `::1`), refused with the setting named; empty
/// entries are skipped.
fn ip_nets(name: &str, entries: &[String]) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    entries
        .iter()
        .map(|entry| entry.trim())
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    ConfigError::Invalid(format!(
                        "{name}: {entry:?} is not an address or a CIDR range"
                    ))
                })
        })
        .collect()
}

/// Offline delivery settings: `handlers` (`PUSHI_HANDLERS`), `smtp_url` (`SMTP_URL`, or
/// Pushi's separate `SMTP_*` variables), `web_push_ttl`, `apns_url`, the retry policy,
/// `outbound_allow` and `max_targets_per_request`, each from flags < env < TOML < defaults
/// like every other setting. A bad SMTP URL stops the start, rather than the first e-mail.
fn notify_config(
    flags: &Flags,
    env: EnvSource<'_>,
    file: &FileConfig,
) -> Result<NotifyConfig, ConfigError> {
    let mut notify = NotifyConfig::default();
    if let Some(enabled) = flags
        .handlers
        .or(env_bool(env, "PUSHI_HANDLERS")?)
        .or(file.handlers)
    {
        notify.enabled = enabled;
    }
    notify.smtp_url = flags
        .smtp_url
        .clone()
        .or_else(|| env("SMTP_URL"))
        .or_else(|| smtp_url_from_parts(env))
        .or_else(|| file.smtp_url.clone());
    if let Some(url) = &notify.smtp_url {
        crate::notify::email::parse_smtp_url(url)
            .map_err(|reason| ConfigError::Invalid(format!("smtp_url: {reason}")))?;
    }
    if let Some(ttl) = flags
        .web_push_ttl
        .or(env_parse::<u64>(env, "WEB_PUSH_TTL")?)
        .or(file.web_push_ttl)
    {
        notify.web_push_ttl = in_range("web_push_ttl", ttl, 1, 28 * 86_400)?;
    }
    notify.apns_url = flags
        .apns_url
        .clone()
        .or_else(|| env("PUSHI_APNS_URL"))
        .or_else(|| file.apns_url.clone());
    if let Some(n) = flags
        .delivery_max_attempts
        .or(env_parse::<u32>(env, "PUSHI_DELIVERY_MAX_ATTEMPTS")?)
        .or(file.delivery_max_attempts)
    {
        notify.max_attempts = in_range("delivery_max_attempts", n, 1, 100)?;
    }
    if let Some(secs) = flags
        .delivery_timeout
        .or(env_parse::<u64>(env, "PUSHI_DELIVERY_TIMEOUT")?)
        .or(file.delivery_timeout)
    {
        notify.request_timeout = Duration::from_secs(in_range("delivery_timeout", secs, 1, 300)?);
    }
    if let Some(ms) = flags
        .delivery_backoff_ms
        .or(env_parse::<u64>(env, "PUSHI_DELIVERY_BACKOFF_MS")?)
        .or(file.delivery_backoff_ms)
    {
        notify.base_backoff =
            Duration::from_millis(in_range("delivery_backoff_ms", ms, 1, 3_600_000)?);
    }
    if let Some(secs) = flags
        .webhook_hold
        .or(env_parse::<u64>(env, "PUSHI_WEBHOOK_HOLD")?)
        .or(file.webhook_hold)
    {
        notify.webhook_hold = Duration::from_secs(in_range("webhook_hold", secs, 0, 3600)?);
    }
    let allow = list_setting(
        flags.outbound_allow.as_ref(),
        env,
        "PUSHI_OUTBOUND_ALLOW",
        file.outbound_allow.as_ref(),
    );
    notify.outbound_allow = ip_nets("outbound_allow", &allow)?;
    if let Some(n) = flags
        .max_targets_per_request
        .or(env_parse::<usize>(env, "PUSHI_MAX_TARGETS_PER_REQUEST")?)
        .or(file.max_targets_per_request)
    {
        notify.max_targets_per_request = in_range("max_targets_per_request", n, 1, 10_000)?;
    }
    Ok(notify)
}

/// Pushi's `SMTP_HOST`/`SMTP_PORT`/`SMTP_USER`/`SMTP_PASSWORD`/`SMTP_STARTTLS`/`SMTP_SENDER`
/// as one SMTP URL.
fn smtp_url_from_parts(env: EnvSource<'_>) -> Option<String> {
    let host = env("SMTP_HOST")?;
    let encode = |s: String| {
        percent_encoding::utf8_percent_encode(&s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let starttls = matches!(env("SMTP_STARTTLS").as_deref(), Some("1" | "true" | "True"));
    let mut url = format!("{}://", if starttls { "smtp+tls" } else { "smtp" });
    if let Some(user) = env("SMTP_USER") {
        url.push_str(&encode(user));
        if let Some(password) = env("SMTP_PASSWORD") {
            url.push(':');
            url.push_str(&encode(password));
        }
        url.push('@');
    }
    url.push_str(&host);
    if let Some(port) = env("SMTP_PORT") {
        url.push(':');
        url.push_str(&port);
    }
    if let Some(sender) = env("SMTP_SENDER") {
        url.push_str("?sender=");
        url.push_str(&encode(sender));
    }
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(flags: Flags, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(&flags, &move |k: &str| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_pushi() {
        let c = load(Flags::default(), &[]).unwrap();
        assert_eq!((c.http_host.as_str(), c.http_port), ("127.0.0.1", 8080));
        assert_eq!((c.ws_host.as_str(), c.ws_port), ("127.0.0.1", 9090));
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert!(c.static_apps.is_empty());
    }

    #[test]
    fn precedence_is_defaults_file_env_flags() {
        let dir = std::env::temp_dir().join(format!("pushi-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pushi.toml");
        std::fs::write(
            &path,
            "http_port = 1000\nws_port = 2000\nactivity_timeout = 30\n\
             [[apps]]\nid = \"7\"\nkey = \"k\"\nsecret = \"s\"\nclient_events = false\n",
        )
        .unwrap();
        let flags = Flags {
            config: Some(path.clone()),
            ..Flags::default()
        };
        let c = load(flags.clone(), &[]).unwrap();
        assert_eq!((c.http_port, c.ws_port), (1000, 2000));
        assert_eq!(c.hub.activity_timeout, Duration::from_secs(30));
        assert_eq!(c.static_apps.len(), 1);
        assert!(!c.static_apps[0].settings.client_events);

        let c = load(flags.clone(), &[("APP_PORT", "3000")]).unwrap();
        assert_eq!((c.http_port, c.ws_port), (3000, 2000));

        let c = load(
            Flags {
                http_port: Some(4000),
                ..flags
            },
            &[("APP_PORT", "3000")],
        )
        .unwrap();
        assert_eq!(c.http_port, 4000);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn env_app_and_bad_values() {
        let c = load(
            Flags::default(),
            &[
                ("PUSHI_APP_ID", "1"),
                ("PUSHI_APP_KEY", "k"),
                ("PUSHI_APP_SECRET", "s"),
            ],
        )
        .unwrap();
        assert_eq!(c.static_apps[0].id, "1");
        assert!(c.static_apps[0].settings.client_events);
        assert!(load(Flags::default(), &[("PUSHI_APP_ID", "1")]).is_err());
        assert!(load(Flags::default(), &[("APP_PORT", "eighty")]).is_err());
    }

    #[test]
    fn one_port_flag_sets_both() {
        let c = load(
            Flags {
                port: Some(5555),
                ..Flags::default()
            },
            &[("SERVER_PORT", "9999")],
        )
        .unwrap();
        assert_eq!((c.http_port, c.ws_port), (5555, 5555));
    }

    fn with_file(toml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!(
            "pushi-config-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pushi.toml");
        std::fs::write(&path, toml).unwrap();
        let result = load(
            Flags {
                config: Some(path),
                ..Flags::default()
            },
            vars,
        );
        std::fs::remove_dir_all(dir).ok();
        result
    }

    fn message(result: Result<Config, ConfigError>) -> String {
        match result {
            Ok(_) => panic!("the configuration should have been refused"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn legacy_auth_flag_over_env_over_file() {
        assert!(!load(Flags::default(), &[]).unwrap().hub.legacy_auth);
        assert!(
            with_file("legacy_auth = true\n", &[])
                .unwrap()
                .hub
                .legacy_auth
        );
        let c = with_file("legacy_auth = true\n", &[("PUSHI_LEGACY_AUTH", "0")]).unwrap();
        assert!(!c.hub.legacy_auth);
        let c = load(
            Flags {
                legacy_auth: Some(true),
                ..Flags::default()
            },
            &[("PUSHI_LEGACY_AUTH", "0")],
        )
        .unwrap();
        assert!(c.hub.legacy_auth);
        assert!(load(Flags::default(), &[("PUSHI_LEGACY_AUTH", "perhaps")]).is_err());
        // `--legacy-auth` alone means true.
        use clap::Parser as _;
        let cli = crate::cli::Cli::try_parse_from(["pushi", "--legacy-auth"]).unwrap();
        assert_eq!(cli.flags.legacy_auth, Some(true));
        let cli = crate::cli::Cli::try_parse_from(["pushi", "--legacy-auth", "false"]).unwrap();
        assert_eq!(cli.flags.legacy_auth, Some(false));
    }

    #[test]
    fn configured_apps_get_a_stable_ident_that_is_not_the_key() {
        let env = [
            ("PUSHI_APP_ID", "3"),
            ("PUSHI_APP_KEY", "the-key"),
            ("PUSHI_APP_SECRET", "s"),
        ];
        let a = load(Flags::default(), &env).unwrap().static_apps[0].clone();
        let b = load(Flags::default(), &env).unwrap().static_apps[0].clone();
        assert_eq!(a.ident, b.ident, "the same on every start");
        assert_eq!(a.ident.len(), 64);
        assert!(a.ident.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.ident, a.key);
        let mut with_ident = env.to_vec();
        with_ident.push(("PUSHI_APP_IDENT", "my-ident"));
        let c = load(Flags::default(), &with_ident).unwrap();
        assert_eq!(c.static_apps[0].ident, "my-ident");
        with_ident.pop();
        with_ident.push(("PUSHI_APP_IDENT", "has/slash"));
        assert!(message(load(Flags::default(), &with_ident)).contains("ident"));
        assert!(load(Flags::default(), &[("PUSHI_APP_IDENT", "x")]).is_err());
        let app = "[[apps]]\nid = \"7\"\nkey = \"k\"\nsecret = \"s\"\n";
        let c = with_file(&format!("{app}ident = \"{}\"\n", "a".repeat(64)), &[]).unwrap();
        assert_eq!(c.static_apps[0].ident, "a".repeat(64));
        let c = with_file(app, &[]).unwrap();
        assert_eq!(c.static_apps[0].ident, crate::app::derived_ident("7", "k"));
    }

    #[test]
    fn app_tables_refuse_unknown_keys_and_bad_values() {
        let app = "[[apps]]\nid = \"7\"\nkey = \"k\"\nsecret = \"s\"\n";
        let m = message(with_file(&format!("{app}client_event = false\n"), &[]));
        assert!(m.contains("apps[0].client_event"), "{m}");
        let m = message(with_file(&format!("{app}max_payload_bytes = 0\n"), &[]));
        assert!(
            m.contains("max_payload_bytes") && m.contains("allowed"),
            "{m}"
        );
        let m = message(with_file(
            &format!("{app}smtp_url = \"mail.example.com\"\n"),
            &[],
        ));
        assert!(m.contains("smtp_url"), "{m}");
        let m = message(with_file("[[apps]]\nid = \"7\"\nkey = \"k\"\n", &[]));
        assert!(m.contains("apps[0].secret"), "{m}");
        let c = with_file(
            &format!("{app}enabled = false\nmax_payload_bytes = 20000\n"),
            &[],
        )
        .unwrap();
        assert!(!c.static_apps[0].enabled);
        assert_eq!(c.static_apps[0].settings.max_payload_bytes, 20000);
    }

    #[test]
    fn out_of_range_values_are_refused_not_clamped() {
        let m = message(load(Flags::default(), &[("PUSHI_QUEUE_LEN", "0")]));
        assert!(m.contains("queue_len") && m.contains("allowed 1"), "{m}");
        let m = message(load(
            Flags::default(),
            &[("PUSHI_DELIVERY_MAX_ATTEMPTS", "0")],
        ));
        assert!(m.contains("delivery_max_attempts"), "{m}");
        let m = message(with_file("activity_timeout = 0\n", &[]));
        assert!(m.contains("activity_timeout"), "{m}");
    }

    #[test]
    fn a_bad_smtp_url_fails_at_start() {
        let m = message(load(
            Flags::default(),
            &[("SMTP_URL", "ftp://mail.example.com")],
        ));
        assert!(m.contains("smtp_url"), "{m}");
    }

    #[test]
    fn outbound_allow_and_the_targets_cap_follow_the_precedence() {
        let c = load(Flags::default(), &[]).unwrap();
        assert!(
            c.notify.outbound_allow.is_empty(),
            "nothing allowed by default"
        );
        assert_eq!(
            c.notify.max_targets_per_request,
            crate::notify::DEFAULT_MAX_TARGETS_PER_REQUEST
        );
        let file = "outbound_allow = [\"10.0.0.0/8\"]\nmax_targets_per_request = 20\n";
        let c = with_file(file, &[]).unwrap();
        assert_eq!(c.notify.outbound_allow, ["10.0.0.0/8".parse().unwrap()]);
        assert_eq!(c.notify.max_targets_per_request, 20);
        let c = with_file(
            file,
            &[
                ("PUSHI_OUTBOUND_ALLOW", "127.0.0.1, ::1"),
                ("PUSHI_MAX_TARGETS_PER_REQUEST", "30"),
            ],
        )
        .unwrap();
        let nets: Vec<ipnet::IpNet> =
            vec!["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()];
        assert_eq!(c.notify.outbound_allow, nets);
        assert_eq!(c.notify.max_targets_per_request, 30);
        let c = load(
            Flags {
                outbound_allow: Some(vec!["192.168.0.0/16".into()]),
                max_targets_per_request: Some(40),
                ..Flags::default()
            },
            &[
                ("PUSHI_OUTBOUND_ALLOW", "127.0.0.1"),
                ("PUSHI_MAX_TARGETS_PER_REQUEST", "30"),
            ],
        )
        .unwrap();
        assert_eq!(c.notify.outbound_allow, ["192.168.0.0/16".parse().unwrap()]);
        assert_eq!(c.notify.max_targets_per_request, 40);

        let m = message(load(
            Flags::default(),
            &[("PUSHI_OUTBOUND_ALLOW", "intranet")],
        ));
        assert!(
            m.contains("outbound_allow") && m.contains("intranet"),
            "{m}"
        );
        let m = message(load(
            Flags::default(),
            &[("PUSHI_MAX_TARGETS_PER_REQUEST", "0")],
        ));
        assert!(m.contains("max_targets_per_request"), "{m}");
    }

    #[test]
    fn delivery_settings_come_from_file_env_and_flags() {
        let c = with_file(
            "smtp_url = \"smtp://file.example.com\"\ndelivery_max_attempts = 3\nhandlers = false\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            c.notify.smtp_url.as_deref(),
            Some("smtp://file.example.com")
        );
        assert_eq!(c.notify.max_attempts, 3);
        assert!(!c.notify.enabled);
        let c = with_file(
            "delivery_max_attempts = 3\n",
            &[("PUSHI_DELIVERY_MAX_ATTEMPTS", "5")],
        )
        .unwrap();
        assert_eq!(c.notify.max_attempts, 5);
        let c = load(
            Flags {
                delivery_max_attempts: Some(7),
                smtp_url: Some("smtps://flag.example.com".into()),
                ..Flags::default()
            },
            &[
                ("PUSHI_DELIVERY_MAX_ATTEMPTS", "5"),
                ("SMTP_URL", "smtp://env.example.com"),
            ],
        )
        .unwrap();
        assert_eq!(c.notify.max_attempts, 7);
        assert_eq!(
            c.notify.smtp_url.as_deref(),
            Some("smtps://flag.example.com")
        );
    }
}
