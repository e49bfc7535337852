//! idle: N connections, each subscribed to its own public channel; server memory per connection
//! and connect rate.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use super::{Ctx, Report, finish, kib};
use crate::load::Pool;
use crate::procfs;
use crate::track::Recorder;

#[derive(Debug, clap::Args, serde::Serialize)]
pub struct Args {
    /// Connections to open (each subscribes to its own channel)
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Seconds to wait after the last subscription before reading memory
    #[arg(long, default_value_t = 3)]
    pub settle_secs: u64,
    /// Seconds to keep the connections open after measuring
    #[arg(long, default_value_t = 0)]
    pub hold_secs: u64,
    /// A reconnect storm: every connection's handshake in flight at once (as after a
    /// deploy), instead of --connect-concurrency at a time
    #[arg(long)]
    pub storm: bool,
}

pub async fn run(ctx: &Ctx, args: &Args) -> Result<Report> {
    let mut report = Report::default();
    let rss_before = ctx.server_rss();
    let client_before = procfs::self_rss_kib();
    let channels = (0..args.connections).map(|i| format!("idle-{i}")).collect();
    let pool = Pool::spawn(
        ctx.target.clone(),
        Arc::new(Recorder::default()),
        channels,
        if args.storm {
            args.connections.max(1)
        } else {
            ctx.connect_concurrency
        },
    );
    let elapsed = pool.wait_ready("idle", ctx.progress).await;
    let ready = pool.ready.load(std::sync::atomic::Ordering::Relaxed);
    let rate = ready as f64 / elapsed.as_secs_f64();
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    let rss_after = ctx.server_rss();
    let client_after = procfs::self_rss_kib();
    if args.hold_secs > 0 {
        tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
    }
    let (errors, outcomes) = finish(pool).await;

    report.line("connections", format!("{ready} of {}", args.connections));
    report.line(
        "connect rate",
        format!(
            "{rate:.0} connections/s (open + subscribe, {:.2} s)",
            elapsed.as_secs_f64()
        ),
    );
    report.set("connections", ready);
    report.set("connect_secs", elapsed.as_secs_f64());
    report.set("connects_per_sec", rate);
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        let per_conn = after.saturating_sub(before) as f64 / ready.max(1) as f64;
        report.line(
            "server RSS",
            format!("{} before, {} after", kib(before), kib(after)),
        );
        report.line("server memory / connection", format!("{per_conn:.2} KiB"));
        report.set("server_rss_before_kib", before);
        report.set("server_rss_after_kib", after);
        report.set("server_kib_per_conn", per_conn);
    } else {
        report.line("server memory / connection", "(no --server-pid)");
    }
    if let (Some(before), Some(after)) = (client_before, client_after) {
        let per_conn = after.saturating_sub(before) as f64 / ready.max(1) as f64;
        report.line("client memory / connection", format!("{per_conn:.2} KiB"));
        report.set("client_kib_per_conn", per_conn);
    }
    report.pool_problems(&errors, &outcomes);
    Ok(report)
}
