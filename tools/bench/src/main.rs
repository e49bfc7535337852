//! pushi-bench: a load generator for Pusher-protocol servers (pushi, Sockudo, Soketi) and the
//! original Pushi's dialect. See tools/bench/README.md.

mod load;
mod net;
mod procfs;
mod scenario;
mod sign;
mod track;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;

use net::{Dialect, Target};
use scenario::{Ctx, Report};

#[derive(Debug, Parser)]
#[command(
    name = "pushi-bench",
    version,
    about = "Load generator for Pusher-protocol servers"
)]
struct Cli {
    /// Server host
    #[arg(long, default_value = "127.0.0.1", global = true)]
    host: String,
    /// Port serving both WebSocket and HTTP API
    #[arg(long, default_value_t = 8080, global = true)]
    port: u16,
    /// WebSocket port, if not --port
    #[arg(long, global = true)]
    ws_port: Option<u16>,
    /// HTTP API port, if not --port
    #[arg(long, global = true)]
    http_port: Option<u16>,
    /// App id (Pusher: numeric id in /apps/{id}; Pushi: the app's ident for /login)
    #[arg(long, default_value = "1", global = true)]
    app_id: String,
    #[arg(long, default_value = "benchkey", global = true)]
    key: String,
    #[arg(long, default_value = "benchsecret", global = true)]
    secret: String,
    /// Wire protocol
    #[arg(long, value_enum, default_value = "pusher", global = true)]
    dialect: Dialect,
    /// Server process id, for memory and CPU readings from /proc
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Write the results as JSON here
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Name of the server under test, copied into the JSON
    #[arg(long, default_value = "", global = true)]
    label: String,
    /// Most WebSocket handshakes in flight at once
    #[arg(long, default_value_t = 64, global = true)]
    connect_concurrency: usize,
    /// Upgrade requests carry a browser's headers (Origin, User-Agent, cookies, a
    /// permessage-deflate offer)
    #[arg(long, global = true)]
    browser_headers: bool,
    /// Spread client sockets over this many loopback source addresses (127.0.0.1..)
    #[arg(long, default_value_t = 8, global = true)]
    source_ips: u8,
    /// Seconds between progress lines on stderr (0: none)
    #[arg(long, default_value_t = 2.0, global = true)]
    progress_secs: f64,
    /// Runtime worker threads [default: number of CPUs]
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand, serde::Serialize)]
#[serde(untagged)]
enum Scenario {
    /// N idle connections on their own channels: server memory per connection, connect rate
    Idle(scenario::idle::Args),
    /// One channel, many subscribers, rising publish rate: deliveries/s and latency per step
    Fanout(scenario::fanout::Args),
    /// Many channels with one subscriber each, random publishes: deliveries/s and latency
    ManyChannels(scenario::many::Args),
    /// HTTP API publish throughput with keep-alive, one subscriber checking deliveries
    Trigger(scenario::trigger::Args),
    /// Connect, subscribe private + presence, close, over and over: cycles/s and memory
    Churn(scenario::churn::Args),
    /// Pushi-dialect publishes with persist: true: events/s (server picks SQLite/PostgreSQL)
    Persist(scenario::trigger::Args),
}

impl Scenario {
    fn name(&self) -> &'static str {
        match self {
            Scenario::Idle(_) => "idle",
            Scenario::Fanout(_) => "fanout",
            Scenario::ManyChannels(_) => "many-channels",
            Scenario::Trigger(_) => "trigger",
            Scenario::Churn(_) => "churn",
            Scenario::Persist(_) => "persist",
        }
    }
}

fn raise_fd_limit() -> u64 {
    // Root may raise the hard limit too; otherwise take the soft limit up to the hard one.
    let want = 1 << 20;
    if rlimit::setrlimit(rlimit::Resource::NOFILE, want, want).is_ok() {
        return want;
    }
    rlimit::increase_nofile_limit(want).unwrap_or(0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = cli.threads {
        builder.worker_threads(n);
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pushi-bench: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("pushi-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the scenario; `Ok(false)` when it saw delivery errors.
async fn run(cli: Cli) -> Result<bool> {
    let nofile = raise_fd_limit();
    let mut target = Target::new(
        &cli.host,
        cli.ws_port.unwrap_or(cli.port),
        cli.http_port.unwrap_or(cli.port),
        &cli.app_id,
        &cli.key,
        &cli.secret,
        cli.dialect,
        cli.source_ips,
    )?;
    target.browser_headers = cli.browser_headers;
    let name = cli.scenario.name();
    eprintln!(
        "pushi-bench {name}: ws {} http {} ({:?} dialect{}), fd limit {nofile}",
        target.ws_addr,
        target.http_addr,
        cli.dialect,
        if cli.label.is_empty() {
            String::new()
        } else {
            format!(", {}", cli.label)
        },
    );
    let ctx = Ctx {
        target: Arc::new(target),
        server_pid: cli.server_pid,
        connect_concurrency: cli.connect_concurrency,
        progress: Duration::from_secs_f64(cli.progress_secs.max(0.0)),
    };
    if let Some(pid) = ctx.server_pid
        && crate::procfs::rss_kib(pid).is_none()
    {
        anyhow::bail!("no process {pid} to read memory from (--server-pid)");
    }
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let started = Instant::now();
    let report: Report = match &cli.scenario {
        Scenario::Idle(a) => scenario::idle::run(&ctx, a).await?,
        Scenario::Fanout(a) => scenario::fanout::run(&ctx, a).await?,
        Scenario::ManyChannels(a) => scenario::many::run(&ctx, a).await?,
        Scenario::Trigger(a) => scenario::trigger::run(&ctx, a, false).await?,
        Scenario::Churn(a) => scenario::churn::run(&ctx, a).await?,
        Scenario::Persist(a) => scenario::persist::run(&ctx, a).await?,
    };
    let ok = report.problems.is_empty();
    println!(
        "\n== {name}{} ==",
        if cli.label.is_empty() {
            String::new()
        } else {
            format!(" — {}", cli.label)
        }
    );
    report.print();
    if let Some(path) = &cli.json {
        let doc = json!({
            "tool": "pushi-bench",
            "version": env!("CARGO_PKG_VERSION"),
            "scenario": name,
            "label": cli.label,
            "ok": ok,
            "started_unix": started_unix,
            "duration_secs": started.elapsed().as_secs_f64(),
            "target": {
                "host": cli.host,
                "ws_port": ctx.target.ws_addr.port(),
                "http_port": ctx.target.http_addr.port(),
                "dialect": cli.dialect,
                "app_id": cli.app_id,
                "server_pid": cli.server_pid,
            },
            "params": cli.scenario,
            "results": report.json,
            "problems": report.problems,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ok)
}
