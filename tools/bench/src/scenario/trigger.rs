//! trigger: HTTP API publish throughput (requests/s, round-trip percentiles) over keep-alive
//! connections, to a channel with one subscriber that checks every delivery. `persist` reuses
//! this with the Pushi dialect's `POST /events` and `persist: true`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::{Ctx, Report, finish, pct_line, wait_until};
use crate::load::{Pool, Ticker, lane_errors, lane_http, open_lanes, run_lanes};
use crate::net::Dialect;
use crate::procfs::CpuMark;
use crate::track::{DeliveryTotals, Percentiles, Recorder};

#[derive(Debug, clap::Args, serde::Serialize)]
pub struct Args {
    /// Concurrent keep-alive connections, each sending requests back to back
    #[arg(long, default_value_t = 16)]
    pub lanes: usize,
    /// Seconds of publishing
    #[arg(long, default_value_t = 10.0)]
    pub duration_secs: f64,
    /// Seconds to wait for stragglers
    #[arg(long, default_value_t = 10.0)]
    pub drain_secs: f64,
    /// Extra payload bytes per message
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,
}

/// Runs the closed-loop publish test; `persist` selects the Pushi dialect's persisted events.
pub async fn run(ctx: &Ctx, args: &Args, persist: bool) -> Result<Report> {
    let mut report = Report::default();
    let recorder = Arc::new(Recorder::default());
    let channel = if persist { "persist-0" } else { "trigger-0" }.to_string();
    let pool = Pool::spawn(
        ctx.target.clone(),
        recorder.clone(),
        vec![channel.clone()],
        1,
    );
    pool.wait_ready("subscriber", ctx.progress).await;
    if pool.ready.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        bail!("the subscriber could not connect: {:?}", pool.errors());
    }
    let dialect = if persist {
        Dialect::Pushi
    } else {
        ctx.target.dialect
    };
    let mut lanes = open_lanes(&ctx.target, args.lanes, dialect, 1, args.payload_bytes).await?;
    for l in &mut lanes {
        l.persist = persist;
    }
    let cpu = CpuMark::now(ctx.server_pid);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration_secs);
    let _ticker = Ticker::start(ctx.progress, {
        let rec = recorder.clone();
        move || {
            let n = rec.count(0);
            format!(
                "{n} delivered, {:.0}/s",
                n as f64 / start.elapsed().as_secs_f64()
            )
        }
    });
    let ch = channel.clone();
    let lanes = run_lanes(lanes, move |mut lane, _| {
        let ch = ch.clone();
        async move {
            while Instant::now() < deadline {
                lane.publish(0, &ch, 0).await;
            }
            lane
        }
    })
    .await;
    let secs = start.elapsed().as_secs_f64();
    let (server_cpu, client_cpu) = cpu.since(ctx.server_pid);
    let attempted: u64 = lanes.iter().map(|l| l.attempted()).sum();
    let (ok, publish_errors, first) = lane_errors(&lanes);
    wait_until(Duration::from_secs_f64(args.drain_secs), || {
        recorder.count(0) >= attempted
    })
    .await;
    let http = Percentiles::of(&lane_http(&lanes));
    let latency = Percentiles::of(&recorder.step(0).hist);
    let (errors, outcomes) = finish(pool).await;

    let rps = ok as f64 / secs;
    let what = if persist { "events/s" } else { "requests/s" };
    report.line(
        what,
        format!(
            "{rps:.0} ({ok} ok in {secs:.1} s, {} connections)",
            args.lanes
        ),
    );
    report.line("HTTP round trip", pct_line(&http));
    report.line("delivery latency", pct_line(&latency));
    if let (Some(s), Some(c)) = (server_cpu, client_cpu) {
        report.line(
            "cpu",
            format!(
                "server {:.0}%, client {:.0}%, server {:.1} µs CPU/request",
                s / secs * 100.0,
                c / secs * 100.0,
                s * 1e6 / ok.max(1) as f64
            ),
        );
        report.set("server_cpu", s / secs);
        report.set("client_cpu", c / secs);
        report.set("server_cpu_us_per_request", s * 1e6 / ok.max(1) as f64);
    }
    report.set("requests_per_sec", rps);
    report.set("requests", ok);
    report.set("http", http);
    report.set("latency", latency);
    report.set("publish_errors", publish_errors);
    if publish_errors > 0 {
        report.problem(format!(
            "{publish_errors} publishes failed, e.g. {}",
            first.unwrap_or_default()
        ));
    }
    let mut totals = DeliveryTotals::default();
    for o in outcomes.iter().filter(|o| o.setup_error.is_none()) {
        totals.add(&o.track, lanes.len(), |l| {
            lanes.get(l).map_or(0, |l| l.sent(0))
        });
    }
    report.delivery(&totals);
    report.pool_problems(&errors, &outcomes);
    Ok(report)
}
