//! churn: connections opening, subscribing (a signed private and a signed presence channel) and
//! closing continuously; sustained cycles/s and server memory before, during and after.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use parking_lot::Mutex;

use super::{Ctx, Report, Table, kib};
use crate::load::Ticker;
use crate::net::{self, Target};

#[derive(Debug, clap::Args, serde::Serialize)]
pub struct Args {
    /// Connect / subscribe / disconnect cycles
    #[arg(long, default_value_t = 100_000)]
    pub cycles: u64,
    /// Concurrent clients cycling
    #[arg(long, default_value_t = 64)]
    pub workers: usize,
    /// Stop after this many seconds even if cycles remain
    #[arg(long, default_value_t = 900.0)]
    pub max_secs: f64,
    /// Cycles before the "warm" memory reading (allocator and maps reach their working size)
    #[arg(long, default_value_t = 2_000)]
    pub warmup_cycles: u64,
    /// Seconds to wait after the last cycle before the final memory reading
    #[arg(long, default_value_t = 5)]
    pub settle_secs: u64,
    /// Presence channels the clients spread over (0: private only)
    #[arg(long, default_value_t = 10)]
    pub presence_channels: u64,
    /// Growth after warm-up (KiB) above which the run fails, with --fail-on-growth
    #[arg(long, default_value_t = 4096)]
    pub growth_tolerance_kib: u64,
    /// Treat memory growth beyond the tolerance as a failure
    #[arg(long)]
    pub fail_on_growth: bool,
}

async fn cycle(target: &Target, worker: usize, n: u64, presence_channels: u64) -> Result<()> {
    let (mut ws, socket_id) = net::open(target).await?;
    net::subscribe(
        &mut ws,
        target,
        &socket_id,
        &format!("private-churn-{worker}"),
        None,
    )
    .await?;
    if presence_channels > 0 {
        let channel = format!("presence-churn-{}", n % presence_channels);
        net::subscribe(
            &mut ws,
            target,
            &socket_id,
            &channel,
            Some(&format!("u{n}")),
        )
        .await?;
    }
    net::close(ws).await;
    Ok(())
}

pub async fn run(ctx: &Ctx, args: &Args) -> Result<Report> {
    let mut report = Report::default();
    let rss_before = ctx.server_rss();
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let samples: Arc<Mutex<Vec<(f64, u64, u64)>>> = Arc::default();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.max_secs);

    let sampler = {
        let done = done.clone();
        let samples = samples.clone();
        let pid = ctx.server_pid;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Some(rss) = pid.and_then(crate::procfs::rss_kib) {
                    samples.lock().push((
                        start.elapsed().as_secs_f64(),
                        done.load(Ordering::Relaxed),
                        rss,
                    ));
                }
            }
        })
    };
    let _ticker = Ticker::start(ctx.progress, {
        let done = done.clone();
        let failed = failed.clone();
        let pid = ctx.server_pid;
        let total = args.cycles;
        move || {
            let d = done.load(Ordering::Relaxed);
            format!(
                "churn: {d}/{total} cycles, {} failed, {:.0}/s, server RSS {}",
                failed.load(Ordering::Relaxed),
                d as f64 / start.elapsed().as_secs_f64(),
                pid.and_then(crate::procfs::rss_kib).map_or("?".into(), kib)
            )
        }
    });
    let workers: Vec<_> = (0..args.workers)
        .map(|w| {
            let target = ctx.target.clone();
            let (next, done, failed, errors) =
                (next.clone(), done.clone(), failed.clone(), errors.clone());
            let (cycles, presence) = (args.cycles, args.presence_channels);
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= cycles || Instant::now() >= deadline {
                        break;
                    }
                    match cycle(&target, w, n, presence).await {
                        Ok(()) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            let mut errors = errors.lock();
                            if errors.len() < 10 {
                                errors.push(format!("cycle {n}: {e:#}"));
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let mut warm_rss = None;
    for w in workers {
        let _ = w.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let cycles = done.load(Ordering::Relaxed);
    let rss_end = ctx.server_rss();
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    let rss_settled = ctx.server_rss();
    sampler.abort();
    let samples = samples.lock().clone();
    if let Some(&(_, _, rss)) = samples.iter().find(|s| s.1 >= args.warmup_cycles) {
        warm_rss = Some(rss);
    }

    let rate = cycles as f64 / secs;
    report.line(
        "cycles",
        format!(
            "{cycles} in {secs:.1} s = {rate:.0} cycles/s ({} workers; connect, private + {} subscribe, close)",
            args.workers,
            if args.presence_channels > 0 { "presence" } else { "no presence" }
        ),
    );
    report.set("cycles", cycles);
    report.set("secs", secs);
    report.set("cycles_per_sec", rate);
    if let (Some(before), Some(settled)) = (rss_before, rss_settled) {
        report.line(
            "server RSS",
            format!(
                "before {}, warm {}, at end {}, settled {}",
                kib(before),
                warm_rss.map_or("?".into(), kib),
                rss_end.map_or("?".into(), kib),
                kib(settled)
            ),
        );
        report.set("server_rss_before_kib", before);
        report.set("server_rss_warm_kib", warm_rss);
        report.set("server_rss_end_kib", rss_end);
        report.set("server_rss_settled_kib", settled);
        let growth = settled as i64 - warm_rss.unwrap_or(before) as i64;
        report.line(
            "growth after warm-up",
            format!(
                "{growth} KiB ({:+.3} KiB per 1000 cycles)",
                growth as f64 * 1000.0 / cycles.max(1) as f64
            ),
        );
        report.set("growth_after_warmup_kib", growth);
        report.set("growth_vs_before_kib", settled as i64 - before as i64);
        if growth > args.growth_tolerance_kib as i64 && args.fail_on_growth {
            report.problem(format!(
                "server memory grew {growth} KiB after warm-up (tolerance {} KiB)",
                args.growth_tolerance_kib
            ));
        }
        // About ten points of the memory curve.
        let stride = (samples.len() / 10).max(1);
        report.table = Some(Table {
            headers: vec!["secs", "cycles", "server RSS"],
            rows: samples
                .iter()
                .step_by(stride)
                .chain(samples.last())
                .map(|(t, c, r)| vec![format!("{t:.0}"), c.to_string(), kib(*r)])
                .collect(),
        });
        report.set("rss_samples", &samples);
    }
    let failures = failed.load(Ordering::Relaxed);
    report.set("failed_cycles", failures);
    if failures > 0 {
        report.problem(format!("{failures} cycles failed"));
        for e in errors.lock().iter().take(5) {
            report.problem(format!("  e.g. {e}"));
        }
    }
    if cycles + failures < args.cycles {
        report.line(
            "note",
            format!("stopped after {} s (--max-secs)", args.max_secs),
        );
    }
    Ok(report)
}
