//! What `pushi trigger` and `pushi tail` share: which running server to call, and the app's
//! key and secret to sign with.
//!
//! The server is `--url`, or this configuration's own listener (the same file, environment
//! and flags the server reads). The credentials are `--key` and `--secret`, or the app as
//! `pushi apps show` finds it (configuration first, then the store), so on the server's own
//! machine `--app ID` is enough.

use std::sync::Arc;

use clap::Args;

use crate::app::App;
use crate::config::Config;
use crate::registry::AppRegistry;
use crate::store;

/// The flags naming the app and the server.
#[derive(Debug, Args)]
pub struct Remote {
    /// The app's id
    #[arg(long)]
    pub app: String,
    /// The server's base URL (default: this configuration's listener)
    #[arg(long)]
    pub url: Option<String>,
    /// The app's key (default: read from the configuration or the store)
    #[arg(long, requires = "secret")]
    pub key: Option<String>,
    /// The app's secret (default: read from the configuration or the store)
    #[arg(long, requires = "key")]
    pub secret: Option<String>,
}

/// An app's credentials for signing.
pub struct Credentials {
    pub id: String,
    pub key: String,
    pub secret: String,
}

impl Remote {
    pub async fn credentials(&self, config: &Config) -> anyhow::Result<Credentials> {
        if let (Some(key), Some(secret)) = (&self.key, &self.secret) {
            return Ok(Credentials {
                id: self.app.clone(),
                key: key.clone(),
                secret: secret.clone(),
            });
        }
        let app: Arc<App> = match config.static_apps.iter().find(|a| a.id == self.app) {
            Some(app) => Arc::new(app.clone()),
            None => {
                let store = Arc::new(store::open(&config.database_url).await?);
                let registry = AppRegistry::new(store, Vec::new());
                registry.by_id(&self.app).await?.ok_or_else(|| {
                    anyhow::anyhow!(
                        "no app with id {:?} in the configuration or in {}; pass --key and --secret",
                        self.app,
                        config.database_url
                    )
                })?
            }
        };
        Ok(Credentials {
            id: app.id.clone(),
            key: app.key.clone(),
            secret: app.secret.clone(),
        })
    }

    /// The HTTP API's base URL, without a trailing slash.
    pub fn http_base(&self, config: &Config) -> String {
        match &self.url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let scheme = if config.http_tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!(
                    "{scheme}://{}",
                    reachable(&config.http_host, config.http_port)
                )
            }
        }
    }

    /// The WebSocket base URL (`ws://` or `wss://`), without a trailing slash. An `http(s)`
    /// `--url` is taken as the same server's WebSocket address.
    pub fn ws_base(&self, config: &Config) -> String {
        match &self.url {
            Some(url) => {
                let url = url.trim_end_matches('/');
                if let Some(rest) = url.strip_prefix("http://") {
                    format!("ws://{rest}")
                } else if let Some(rest) = url.strip_prefix("https://") {
                    format!("wss://{rest}")
                } else {
                    url.to_owned()
                }
            }
            None => {
                let scheme = if config.ws_tls.is_some() { "wss" } else { "ws" };
                format!("{scheme}://{}", reachable(&config.ws_host, config.ws_port))
            }
        }
    }
}

/// `host:port` a local client can reach: a wildcard bind address means this machine.
fn reachable(host: &str, port: u16) -> String {
    match host {
        "0.0.0.0" | "" => format!("127.0.0.1:{port}"),
        "::" | "[::]" => format!("[::1]:{port}"),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]:{port}"),
        h => format!("{h}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_are_reached_on_loopback() {
        assert_eq!(reachable("0.0.0.0", 8080), "127.0.0.1:8080");
        assert_eq!(reachable("::", 1), "[::1]:1");
        assert_eq!(reachable("::1", 1), "[::1]:1");
        assert_eq!(reachable("push.example.com", 443), "push.example.com:443");
    }

    #[test]
    fn an_http_url_names_the_same_servers_websocket() {
        let remote = |url: &str| Remote {
            app: "1".into(),
            url: Some(url.into()),
            key: None,
            secret: None,
        };
        let config = Config::load(&crate::config::Flags::default(), &|_| None).unwrap();
        assert_eq!(remote("http://h:1/").ws_base(&config), "ws://h:1");
        assert_eq!(remote("https://h").ws_base(&config), "wss://h");
        assert_eq!(remote("wss://h:2").ws_base(&config), "wss://h:2");
        assert_eq!(remote("http://h:1/").http_base(&config), "http://h:1");
    }
}
