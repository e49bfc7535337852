//! The command line: `serve` (the default), app management, and `trigger` / `tail` against a
//! running server.
//!
//! App commands open the store directly, so they work whether or not a server is running;
//! a running server finds new apps on their first use. `trigger` and `tail` (one file each)
//! talk to a running server over HTTP and WebSocket, signing with the app's secret.

mod remote;
mod tail;
mod trigger;

use clap::{Parser, Subcommand};

use crate::app::{AppSettings, NewApp, typed_setting};
use crate::config::{Config, Flags, LogFormat, process_env};
use crate::registry::AppRegistry;
use crate::store::{self, Store};

#[derive(Debug, Parser)]
#[command(
    name = "pushi",
    version,
    about = "Self-hosted realtime push server (Pusher protocol 7 and Pushi)"
)]
pub struct Cli {
    #[command(flatten)]
    pub flags: Flags,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no command is given)
    Serve,
    /// Manage apps in the store
    #[command(subcommand)]
    Apps(AppsCommand),
    /// Publish an event through a running server's HTTP API, signed with the app's secret
    Trigger(trigger::Trigger),
    /// Subscribe to channels of a running server and print one JSON line per event
    Tail(tail::Tail),
}

#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Create an app and print its credentials
    Create {
        #[arg(long)]
        name: String,
        /// Refuse client-* events from sockets
        #[arg(long)]
        no_client_events: bool,
        /// Most simultaneous connections
        #[arg(long)]
        max_connections: Option<u32>,
        /// Largest event data in bytes
        #[arg(long)]
        max_payload_bytes: Option<usize>,
    },
    /// List apps (id, name, key, enabled)
    List,
    /// Show one app, secret included
    Show { id: String },
    /// Change an app's name, enabled flag or settings: `pushi apps set 2 client_events=false
    /// max_payload_bytes=20000 'webhooks=[{"url":"https://example.com/hook"}]'`. Every
    /// setting `PUT /apps/{ident}` takes; values are read in the setting's type (numbers,
    /// booleans, JSON lists; text for text settings; empty text clears).
    Set {
        id: String,
        #[arg(required = true, value_name = "KEY=VALUE")]
        changes: Vec<String>,
    },
}

/// `key=value` pairs as a JSON object, each value read in its setting's type as the Pushi
/// REST API reads form fields ([`typed_setting`]): `false`, `20000` and `[...]` for the
/// settings that take them, text for text settings.
fn parse_changes(pairs: &[String]) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let mut changes = serde_json::Map::new();
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("{pair:?}: expected KEY=VALUE"))?;
        let key = key.trim();
        let value = typed_setting(key, serde_json::Value::String(value.to_owned()));
        changes.insert(key.to_owned(), value);
    }
    Ok(changes)
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(&cli.flags, &process_env)?;
    init_logging(config.log_format);
    crate::install_crypto_provider();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => crate::server::run_until_signalled(config).await,
        Command::Apps(cmd) => apps(config, cmd).await,
        Command::Trigger(args) => trigger::run(config, args).await,
        Command::Tail(args) => tail::run(config, args).await,
    }
}

async fn apps(config: Config, cmd: AppsCommand) -> anyhow::Result<()> {
    let store = std::sync::Arc::new(store::open(&config.database_url).await?);
    let registry = AppRegistry::new(store.clone(), config.static_apps.clone());
    // Warn, not refuse: these commands are how the operator looks into it.
    for clash in registry.clashes().await? {
        eprintln!("warning: {clash}");
    }
    let outcome = run_apps_command(&registry, cmd).await;
    // A clean close leaves the SQLite file complete without its write-ahead log.
    store.close().await;
    outcome
}

async fn run_apps_command(registry: &AppRegistry, cmd: AppsCommand) -> anyhow::Result<()> {
    match cmd {
        AppsCommand::Create {
            name,
            no_client_events,
            max_connections,
            max_payload_bytes,
        } => {
            let defaults = AppSettings::default();
            let settings = AppSettings {
                client_events: !no_client_events,
                max_connections,
                max_payload_bytes: max_payload_bytes.unwrap_or(defaults.max_payload_bytes),
                ..defaults
            };
            settings.validate()?;
            let app = registry
                .create(NewApp {
                    name,
                    settings,
                    description: None,
                })
                .await?;
            println!(
                "app id:  {}\nname:    {}\nkey:     {}\nsecret:  {}",
                app.id, app.name, app.key, app.secret
            );
        }
        AppsCommand::List => {
            println!("{:<8} {:<24} {:<66} enabled", "id", "name", "key");
            for app in registry.all().await? {
                println!(
                    "{:<8} {:<24} {:<66} {}",
                    app.id, app.name, app.key, app.enabled
                );
            }
        }
        AppsCommand::Show { id } => match registry.by_id(&id).await? {
            Some(app) => println!("{}", serde_json::to_string_pretty(&*app)?),
            None => anyhow::bail!("no app with id {id:?}"),
        },
        AppsCommand::Set { id, changes } => {
            let Some(app) = registry.by_id(&id).await? else {
                anyhow::bail!("no app with id {id:?}");
            };
            if registry.is_static(&id) {
                anyhow::bail!("app {id} is declared in the configuration: change it there");
            }
            let changed = app.with_changes(&parse_changes(&changes)?)?;
            let app = registry.update(changed).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&app.settings.public_view())?
            );
        }
    }
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PUSHI_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let filter = crate::logs::without_frame_contents(filter);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
