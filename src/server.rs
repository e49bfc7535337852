//! Starting and stopping: open the store, bind the listeners, serve until told to stop, then
//! shut down gracefully.
//!
//! Graceful shutdown stops accepting, closes every socket with 4200 (clients reconnect,
//! possibly to another node), waits briefly for connection tasks to finish, and returns.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::NewApp;
use crate::cluster::{Cluster, ClusterView};
use crate::config::Config;
use crate::http::{self, ServerContext};
use crate::hub::Hub;
use crate::protocol::codes;
use crate::registry::AppRegistry;
use crate::store::{self, Store};

/// How long shutdown waits for sockets to close before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often changed subscription counts go out (Pusher's subscription counting): often
/// enough to feel live, rarely enough that a crowd joining a channel is one message per
/// subscriber per tick.
const SUBSCRIPTION_COUNT_EVERY: Duration = Duration::from_millis(500);

async fn send_subscription_counts(hub: Arc<Hub>, mut stopped: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SUBSCRIPTION_COUNT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => hub.flush_subscription_counts(),
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}

/// A server that is accepting connections.
pub struct RunningServer {
    pub hub: Arc<Hub>,
    pub cluster: Option<Arc<Cluster>>,
    pub http_addr: SocketAddr,
    pub ws_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting, closes every socket with 4200 and waits for them (bounded).
    pub async fn shutdown(self) {
        tracing::info!("shutting down: closing sockets with 4200");
        self.hub.close_all(codes::GOING_AWAY);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while self.hub.live_sockets() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(cluster) = &self.cluster {
            cluster.leave().await;
        }
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, task).await;
        }
        tracing::info!("shutdown complete");
    }
}

/// Opens the store, makes sure there is an app to use, binds and starts serving.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    crate::install_crypto_provider();
    let store: Arc<dyn Store> = Arc::new(store::open(&config.database_url).await?);
    let apps = Arc::new(AppRegistry::new(store, config.static_apps.clone()));
    let (stop, stopped) = watch::channel(false);
    let delivery = crate::notify::start(apps.clone(), config.notify.clone(), stopped.clone());
    let mut tasks = delivery.tasks;
    let cluster = match config.cluster.clone() {
        Some(cluster_config) => Some(
            Cluster::open(cluster_config)
                .await
                .map_err(|e| anyhow::anyhow!(e))?,
        ),
        None => None,
    };
    let hub = Arc::new(Hub::new(
        apps,
        config.hub.clone(),
        Some(delivery.notifier.clone()),
        Some(delivery.hooks.clone()),
        cluster.clone().map(|c| c as Arc<dyn ClusterView>),
    ));
    if let Some(cluster) = &cluster {
        tasks.extend(cluster.start(hub.clone(), stopped.clone()));
    }
    let http_listener = bind(&config.http_host, config.http_port).await?;
    let http_addr = http_listener.local_addr()?;
    let same_listener = config.ws_host == config.http_host && config.ws_port == config.http_port;
    let ws_listener = if same_listener {
        None
    } else {
        Some(bind(&config.ws_host, config.ws_port).await?)
    };
    let ws_addr = match &ws_listener {
        Some(l) => l.local_addr()?,
        None => http_addr,
    };
    ensure_an_app(&hub, http_addr, ws_addr).await?;

    let ctx = ServerContext {
        hub: hub.clone(),
        metrics: crate::metrics::install(),
        cluster: cluster.clone(),
        admin: http::pushi_api::AdminPolicy {
            token: config.admin_token.as_deref().map(std::sync::Arc::from),
            open_apps: config.open_apps,
        },
    };
    tasks.push(tokio::spawn(send_subscription_counts(
        hub.clone(),
        stopped.clone(),
    )));
    let router = http::router(ctx);
    for listener in std::iter::once(http_listener).chain(ws_listener) {
        let router = router.clone();
        let mut stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "listener failed");
            }
        }));
    }
    tracing::info!(%http_addr, %ws_addr, database = %redact(&config.database_url), "pushi listening");
    Ok(RunningServer {
        cluster,
        hub,
        http_addr,
        ws_addr,
        stop,
        tasks,
    })
}

/// Runs until `shutdown` resolves, then shuts down gracefully.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let server = start(config).await?;
    shutdown.await;
    server.shutdown().await;
    Ok(())
}

async fn bind(host: &str, port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind((host, port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {host}:{port}: {e}"))
}

/// On a first start with no apps at all, creates one and prints how to use it.
async fn ensure_an_app(hub: &Hub, http: SocketAddr, ws: SocketAddr) -> anyhow::Result<()> {
    if hub.apps.has_static_apps() || !hub.apps.store().list_apps().await?.is_empty() {
        return Ok(());
    }
    let app = hub
        .apps
        .create(NewApp {
            name: "default".into(),
            ..NewApp::default()
        })
        .await?;
    println!(
        "\nCreated app {name:?} (first start, no apps configured):\n\
         \x20 app id:     {id}\n\
         \x20 key:        {key}\n\
         \x20 secret:     {secret}\n\
         \x20 WebSocket:  ws://{ws}/app/{key}?protocol=7\n\
         \x20 HTTP API:   http://{http}/apps/{id}/events\n\
         Keep the secret private; `pushi apps show {id}` prints it again.\n",
        name = app.name,
        id = app.id,
        key = app.key,
        secret = app.secret,
    );
    Ok(())
}

/// A database URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("sqlite://pushi.db"), "sqlite://pushi.db");
    }
}
