//! Starting and stopping: open the store, bind the listeners, serve until told to stop, then
//! shut down gracefully.
//!
//! Graceful shutdown closes the listening sockets first (so a reconnecting client lands on
//! another node, never on this dying one), then closes every socket with 4200 (clients
//! reconnect), waits briefly for connection tasks to flush and finish, stops the background
//! tasks, and closes the store last (the writes in flight finish, SQLite's log is folded into
//! the database file). A second signal during that exits at once.

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
use crate::listener::{Admission, Listener, ListenerRole};
use crate::protocol::codes;
use crate::registry::AppRegistry;
use crate::store::{self, Housekeeper, Store};
use crate::tls::CertResolver;

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

/// Sweeps the store every `housekeeper.config().every` (first one interval after the start)
/// until stopped; stopping interrupts a sweep between two statements.
async fn keep_house(
    apps: Arc<AppRegistry>,
    housekeeper: Housekeeper,
    mut stopped: watch::Receiver<bool>,
) {
    let every = housekeeper.config().every;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let sweep = async {
            let apps = apps.all().await?;
            housekeeper.sweep(&apps, crate::clock::now_unix()).await
        };
        tokio::select! {
            result = sweep => match result {
                Ok(swept) if !swept.is_empty() => tracing::info!(
                    expired_events = swept.expired_events,
                    trimmed_events = swept.trimmed_events,
                    deliveries = swept.deliveries,
                    sessions = swept.sessions,
                    "housekeeping: deleted what retention lets go"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "housekeeping failed; trying again next time"),
            },
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
    /// The operator's listener (`admin_addr`), if configured.
    pub admin_addr: Option<SocketAddr>,
    /// The whole HTTP side, as the listeners serve it (for tests and fuzzing without sockets).
    pub router: axum::Router,
    /// Connection counts shared by the listeners.
    pub admission: Arc<Admission>,
    stop_accepting: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Closes the listening sockets, closes every socket with 4200 and waits for them
    /// (bounded), stops the background tasks, then closes the store (bounded).
    pub async fn shutdown(self) {
        let _ = self.stop_accepting.send(true);
        for listener in self.listeners {
            let _ = listener.await;
        }
        tracing::info!("shutting down: listeners closed, closing sockets with 4200");
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
        self.hub.apps.store().close().await;
        tracing::info!("shutdown complete");
    }
}

/// Opens the store, makes sure there is an app to use, binds and starts serving.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    crate::install_crypto_provider();
    // Certificates first: a broken file should stop the start before anything else happens.
    let same_listener = config.ws_host == config.http_host && config.ws_port == config.http_port;
    let http_tls = config
        .http_tls
        .clone()
        .or_else(|| same_listener.then(|| config.ws_tls.clone()).flatten());
    let http_resolver = http_tls.map(CertResolver::new).transpose()?;
    let ws_resolver = match (&config.ws_tls, same_listener) {
        (Some(files), false) => Some(CertResolver::new(files.clone())?),
        _ => None,
    };
    let store: Arc<dyn Store> = Arc::new(store::open(&config.database_url).await?);
    let apps = Arc::new(AppRegistry::new(store.clone(), config.static_apps.clone()));
    let clashes = apps.clashes().await?;
    if !clashes.is_empty() {
        store.close().await;
        anyhow::bail!("{}", clashes.join("; "));
    }
    let (stop, stopped) = watch::channel(false);
    let delivery = crate::notify::start(apps.clone(), config.notify.clone(), stopped.clone());
    let mut tasks = delivery.tasks;
    tasks.push(tokio::spawn(keep_house(
        apps.clone(),
        Housekeeper::new(store, config.housekeeping.clone()),
        stopped.clone(),
    )));
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
    let ws_listener = if same_listener {
        None
    } else {
        Some(bind(&config.ws_host, config.ws_port).await?)
    };
    let ws_addr = match &ws_listener {
        Some(l) => l.local_addr()?,
        None => http_addr,
    };
    let operator_listener = match &config.admin_addr {
        Some(addr) => Some(
            TcpListener::bind(addr.as_str())
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (admin_addr): {e}"))?,
        ),
        None => None,
    };
    let admin_addr = match &operator_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    ensure_an_app(
        &hub,
        (http_resolver.is_some(), http_addr),
        (
            ws_resolver.is_some() || (same_listener && http_resolver.is_some()),
            ws_addr,
        ),
    )
    .await?;

    // Every app's series exist from the start, at zero (in the recorder, so it goes first).
    let metrics = crate::metrics::install();
    for app in hub.apps.all().await? {
        crate::metrics::AppMetrics::new(&app.id);
    }
    let admission = Admission::new(config.listener.clone());
    let ctx = ServerContext::new(http::ServerParts {
        admission: admission.clone(),
        hub: hub.clone(),
        notifier: delivery.notifier.clone(),
        metrics,
        cluster: cluster.clone(),
        admin: http::pushi_api::AdminPolicy {
            token: config.admin_token.as_deref().map(std::sync::Arc::from),
            open_apps: config.open_apps,
        },
    });
    tasks.push(tokio::spawn(send_subscription_counts(
        hub.clone(),
        stopped.clone(),
    )));
    let router = http::router(ctx);
    let (stop_accepting, accepting) = watch::channel(false);
    // The API listener offers HTTP/2 where TLS lets it negotiate; WebSocket upgrades are
    // HTTP/1.1, so the WebSocket listener offers only that.
    let api_alpn: &[&[u8]] = &[b"h2", b"http/1.1"];
    let ws_alpn: &[&[u8]] = &[b"http/1.1"];
    let listeners = [
        Some((
            http_listener,
            http_resolver.clone(),
            api_alpn,
            ListenerRole::Public,
        )),
        ws_listener.map(|l| (l, ws_resolver.clone(), ws_alpn, ListenerRole::Public)),
        operator_listener.map(|l| (l, None, api_alpn, ListenerRole::Operator)),
    ]
    .into_iter()
    .flatten()
    .map(|(tcp, resolver, alpn, role)| {
        let listener = Listener {
            tcp,
            tls: resolver
                .map(|r| tokio_rustls::TlsAcceptor::from(crate::tls::server_config(r, alpn))),
            role,
        };
        tokio::spawn(crate::listener::serve(
            listener,
            router.clone(),
            admission.clone(),
            accepting.clone(),
        ))
    })
    .collect();
    tasks.push(tokio::spawn(crate::tls::watch_renewals(
        [http_resolver, ws_resolver].into_iter().flatten().collect(),
        stopped.clone(),
    )));
    let scheme = |tls: bool| if tls { "https/wss" } else { "http/ws" };
    tracing::info!(
        %http_addr,
        http = scheme(config.http_tls.is_some() || (same_listener && config.ws_tls.is_some())),
        %ws_addr,
        admin_addr = ?admin_addr,
        ws = scheme(config.ws_tls.is_some() || (same_listener && config.http_tls.is_some())),
        database = %redact(&config.database_url),
        "pushi listening"
    );
    Ok(RunningServer {
        cluster,
        hub,
        http_addr,
        ws_addr,
        admin_addr,
        router,
        admission,
        stop_accepting,
        listeners,
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

/// Runs until SIGTERM or SIGINT, then shuts down gracefully; a second signal while shutting
/// down exits at once.
pub async fn run_until_signalled(config: Config) -> anyhow::Result<()> {
    let server = start(config).await?;
    shutdown_signal().await;
    tokio::spawn(async {
        shutdown_signal().await;
        eprintln!("pushi: second signal, exiting without finishing the shutdown");
        std::process::exit(130);
    });
    server.shutdown().await;
    Ok(())
}

async fn bind(host: &str, port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind((host, port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {host}:{port}: {e}"))
}

/// On a first start with no apps at all, creates one and prints how to use it.
async fn ensure_an_app(
    hub: &Hub,
    (http_tls, http): (bool, SocketAddr),
    (ws_tls, ws): (bool, SocketAddr),
) -> anyhow::Result<()> {
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
         \x20 WebSocket:  {ws_scheme}://{ws}/app/{key}?protocol=7\n\
         \x20 HTTP API:   {http_scheme}://{http}/apps/{id}/events\n\
         Keep the secret private; `pushi apps show {id}` prints it again.\n",
        name = app.name,
        id = app.id,
        key = app.key,
        secret = app.secret,
        ws_scheme = if ws_tls { "wss" } else { "ws" },
        http_scheme = if http_tls { "https" } else { "http" },
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
