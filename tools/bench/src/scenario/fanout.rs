//! fanout: one channel, S subscribers, a publisher triggering over the HTTP API at a rising
//! rate (or one burst); delivered messages/s and latency per step, and the highest rate whose
//! p99 stays under the target.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::{Ctx, Report, Table, finish, pct_line, wait_until};
use crate::load::{Pool, lane_errors, lane_http, open_lanes, run_lanes};
use crate::procfs::CpuMark;
use crate::track::{DeliveryTotals, Percentiles, Recorder, now_ns};

#[derive(Debug, clap::Args, serde::Serialize)]
pub struct Args {
    /// Subscribers on the channel
    #[arg(long, default_value_t = 2_000)]
    pub subscribers: usize,
    /// Publish rates to step through, messages/s
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10,20,50,100,200,500,1000,2000"
    )]
    pub rates: Vec<f64>,
    /// Seconds per step
    #[arg(long, default_value_t = 5.0)]
    pub step_secs: f64,
    /// Instead of steps: publish this many messages as fast as the lanes allow
    #[arg(long)]
    pub burst: Option<u64>,
    /// Concurrent publishers (keep-alive HTTP connections)
    #[arg(long, default_value_t = 4)]
    pub lanes: usize,
    /// Seconds to wait for stragglers after a step's last publish
    #[arg(long, default_value_t = 10.0)]
    pub drain_secs: f64,
    /// p99 latency a step must stay under to count
    #[arg(long, default_value_t = 100.0)]
    pub p99_target_ms: f64,
    /// Go on after a step misses the target (default: stop there)
    #[arg(long)]
    pub keep_going: bool,
    /// Extra payload bytes per message
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,
}

#[derive(Debug, serde::Serialize)]
struct Step {
    step: u32,
    target_rate: Option<f64>,
    published: u64,
    publish_errors: u64,
    publish_rate: f64,
    deliveries: u64,
    missing: u64,
    deliveries_per_sec: f64,
    latency: Percentiles,
    http: Percentiles,
    server_cpu: Option<f64>,
    client_cpu: Option<f64>,
    ok: bool,
}

pub async fn run(ctx: &Ctx, args: &Args) -> Result<Report> {
    let mut report = Report::default();
    let recorder = Arc::new(Recorder::default());
    let channel = "fanout-0".to_string();
    let pool = Pool::spawn(
        ctx.target.clone(),
        recorder.clone(),
        vec![channel.clone(); args.subscribers],
        ctx.connect_concurrency,
    );
    let setup = pool.wait_ready("fanout", ctx.progress).await;
    let subscribers = pool.ready.load(std::sync::atomic::Ordering::Relaxed) as u64;
    report.line(
        "subscribers",
        format!(
            "{subscribers} of {} on {channel} ({:.1} s to connect)",
            args.subscribers,
            setup.as_secs_f64()
        ),
    );
    report.set("subscribers", subscribers);
    if subscribers == 0 {
        bail!("no subscriber could connect: {:?}", pool.errors());
    }
    let mut lanes = open_lanes(
        &ctx.target,
        args.lanes,
        ctx.target.dialect,
        1,
        args.payload_bytes,
    )
    .await?;

    let plan: Vec<(Option<f64>, u64)> = match args.burst {
        Some(n) => vec![(None, n)],
        None => args
            .rates
            .iter()
            .map(|&r| (Some(r), (r * args.step_secs).round().max(1.0) as u64))
            .collect(),
    };
    let mut steps: Vec<Step> = Vec::new();
    for (i, &(rate, total)) in plan.iter().enumerate() {
        let step = i as u32;
        let before: u64 = lanes.iter().map(|l| l.attempted()).sum();
        let errors_before = lane_errors(&lanes).1;
        for l in &mut lanes {
            l.http.reset();
        }
        let cpu = CpuMark::now(ctx.server_pid);
        let start = Instant::now();
        let start_ns = now_ns();
        let rec = recorder.clone();
        let expected_so_far = move || rec.count(step);
        let _ticker = crate::load::Ticker::start(ctx.progress, {
            let rec = recorder.clone();
            let label = match rate {
                Some(r) => format!("fanout step {step} ({r} msg/s)"),
                None => format!("fanout burst of {total}"),
            };
            move || format!("{label}: {} deliveries", rec.count(step))
        });
        let ch = channel.clone();
        lanes = run_lanes(lanes, move |mut lane, n| {
            let ch = ch.clone();
            async move {
                let mut k = lane.id as u64;
                while k < total {
                    if let Some(rate) = rate {
                        let at = start + Duration::from_secs_f64(k as f64 / rate);
                        tokio::time::sleep_until(at.into()).await;
                    }
                    lane.publish(0, &ch, step).await;
                    k += n as u64;
                }
                lane
            }
        })
        .await;
        let publish_secs = start.elapsed().as_secs_f64();
        let published = lanes.iter().map(|l| l.attempted()).sum::<u64>() - before;
        let publish_errors = lane_errors(&lanes).1 - errors_before;
        let expected = published * subscribers;
        wait_until(Duration::from_secs_f64(args.drain_secs), || {
            expected_so_far() >= expected
        })
        .await;
        let (server_cpu, client_cpu) = cpu.since(ctx.server_pid);
        let acc = recorder.step(step);
        let window = acc.last_ns.saturating_sub(start_ns).max(1) as f64 / 1e9;
        let latency = Percentiles::of(&acc.hist);
        let missing = expected.saturating_sub(acc.count);
        let ok = missing == 0 && publish_errors == 0 && latency.p99_ms < args.p99_target_ms;
        let wall = start.elapsed().as_secs_f64();
        steps.push(Step {
            step,
            target_rate: rate,
            published,
            publish_errors,
            publish_rate: published as f64 / publish_secs,
            deliveries: acc.count,
            missing,
            deliveries_per_sec: acc.count as f64 / window,
            latency,
            http: Percentiles::of(&lane_http(&lanes)),
            server_cpu: server_cpu.map(|c| c / wall),
            client_cpu: client_cpu.map(|c| c / wall),
            ok,
        });
        if !ok && !args.keep_going {
            break;
        }
        if pool.dropped.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            break;
        }
    }
    let (errors, outcomes) = finish(pool).await;

    let pct = |v: Option<f64>| v.map_or("-".into(), |c| format!("{:.0}%", c * 100.0));
    report.table = Some(Table {
        headers: vec![
            "step", "target/s", "sent/s", "deliv/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
            "missing", "srv cpu", "cli cpu", "ok",
        ],
        rows: steps
            .iter()
            .map(|s| {
                vec![
                    s.step.to_string(),
                    s.target_rate.map_or("burst".into(), |r| format!("{r}")),
                    format!("{:.0}", s.publish_rate),
                    format!("{:.0}", s.deliveries_per_sec),
                    format!("{:.2}", s.latency.p50_ms),
                    format!("{:.2}", s.latency.p90_ms),
                    format!("{:.2}", s.latency.p99_ms),
                    format!("{:.2}", s.latency.max_ms),
                    s.missing.to_string(),
                    pct(s.server_cpu),
                    pct(s.client_cpu),
                    if s.ok { "yes".into() } else { "no".into() },
                ]
            })
            .collect(),
    });
    let best = steps
        .iter()
        .filter(|s| s.ok)
        .max_by(|a, b| a.deliveries_per_sec.total_cmp(&b.deliveries_per_sec));
    match best {
        Some(b) => {
            report.line(
                "best step under target",
                format!(
                    "{:.0} deliveries/s at {:.0} msg/s (p99 {:.2} ms < {} ms)",
                    b.deliveries_per_sec, b.publish_rate, b.latency.p99_ms, args.p99_target_ms
                ),
            );
            report.set("best_deliveries_per_sec", b.deliveries_per_sec);
            report.set("best_rate", b.publish_rate);
            report.set("best_p99_ms", b.latency.p99_ms);
        }
        None => {
            report.line("best step under target", "none");
            report.set("best_deliveries_per_sec", serde_json::Value::Null);
        }
    }
    if let Some(b) = steps.last().filter(|_| args.burst.is_some()) {
        report.line("burst", pct_line(&b.latency));
        report.set("burst_deliveries_per_sec", b.deliveries_per_sec);
        report.set("burst_p99_ms", b.latency.p99_ms);
    }
    report.set("steps", &steps);

    let mut totals = DeliveryTotals::default();
    for o in outcomes.iter().filter(|o| o.setup_error.is_none()) {
        totals.add(&o.track, lanes.len(), |l| {
            lanes.get(l).map_or(0, |l| l.sent(0))
        });
    }
    report.delivery(&totals);
    let (_, publish_errors, first) = lane_errors(&lanes);
    report.set("publish_errors", publish_errors);
    if publish_errors > 0 {
        report.problem(format!(
            "{publish_errors} publishes failed, e.g. {}",
            first.unwrap_or_default()
        ));
    }
    report.pool_problems(&errors, &outcomes);
    Ok(report)
}
