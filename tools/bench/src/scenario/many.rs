//! many-channels: N channels with one subscriber each, publishes to random channels;
//! deliveries/s and latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::{Ctx, Report, finish, pct_line, wait_until};
use crate::load::{Pool, Ticker, lane_errors, lane_http, open_lanes, run_lanes};
use crate::procfs::CpuMark;
use crate::track::{DeliveryTotals, Percentiles, Recorder, now_ns};

#[derive(Debug, clap::Args, serde::Serialize)]
pub struct Args {
    /// Channels (one subscriber each)
    #[arg(long, default_value_t = 10_000)]
    pub channels: usize,
    /// Seconds of publishing
    #[arg(long, default_value_t = 10.0)]
    pub duration_secs: f64,
    /// Total publish rate, messages/s (0: as fast as the lanes go)
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Concurrent publishers (keep-alive HTTP connections)
    #[arg(long, default_value_t = 8)]
    pub lanes: usize,
    /// Seconds to wait for stragglers
    #[arg(long, default_value_t = 10.0)]
    pub drain_secs: f64,
    /// Extra payload bytes per message
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,
}

/// xorshift64*: picks channels; not for anything secret.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) % n as u64) as usize
    }
}

pub async fn run(ctx: &Ctx, args: &Args) -> Result<Report> {
    let mut report = Report::default();
    let recorder = Arc::new(Recorder::default());
    let names: Arc<Vec<String>> = Arc::new((0..args.channels).map(|i| format!("mc-{i}")).collect());
    let pool = Pool::spawn(
        ctx.target.clone(),
        recorder.clone(),
        names.to_vec(),
        ctx.connect_concurrency,
    );
    let setup = pool.wait_ready("many-channels", ctx.progress).await;
    let ready = pool.ready.load(std::sync::atomic::Ordering::Relaxed);
    report.line(
        "channels",
        format!(
            "{ready} of {} subscribed ({:.1} s)",
            args.channels,
            setup.as_secs_f64()
        ),
    );
    report.set("channels", ready);
    if ready == 0 {
        bail!("no subscriber could connect: {:?}", pool.errors());
    }
    let lanes = open_lanes(
        &ctx.target,
        args.lanes,
        ctx.target.dialect,
        args.channels,
        args.payload_bytes,
    )
    .await?;
    let cpu = CpuMark::now(ctx.server_pid);
    let start = Instant::now();
    let start_ns = now_ns();
    let deadline = start + Duration::from_secs_f64(args.duration_secs);
    let _ticker = Ticker::start(ctx.progress, {
        let rec = recorder.clone();
        move || format!("many-channels: {} deliveries", rec.count(0))
    });
    let rate = args.rate;
    let lanes = run_lanes(lanes, move |mut lane, n| {
        let names = names.clone();
        async move {
            let mut rng =
                Rng(0x9e37_79b9_7f4a_7c15 ^ (u64::from(lane.id) + 1).wrapping_mul(0x1000_0001));
            let mut k = u64::from(lane.id);
            loop {
                if rate > 0.0 {
                    let at = start + Duration::from_secs_f64(k as f64 / rate);
                    if at >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(at.into()).await;
                    k += n as u64;
                } else if Instant::now() >= deadline {
                    break;
                }
                let ch = rng.below(names.len());
                lane.publish(ch, &names[ch], 0).await;
            }
            lane
        }
    })
    .await;
    let publish_secs = start.elapsed().as_secs_f64();
    let published: u64 = lanes.iter().map(|l| l.attempted()).sum();
    // Only channels whose subscriber is connected can deliver.
    let live = ready as u64;
    let expected_upper = published;
    wait_until(Duration::from_secs_f64(args.drain_secs), || {
        recorder.count(0) >= expected_upper || live < args.channels as u64
    })
    .await;
    if live < args.channels as u64 {
        tokio::time::sleep(Duration::from_secs_f64(args.drain_secs.min(2.0))).await;
    }
    let wall = start.elapsed().as_secs_f64();
    let (server_cpu, client_cpu) = cpu.since(ctx.server_pid);
    let acc = recorder.step(0);
    let window = acc.last_ns.saturating_sub(start_ns).max(1) as f64 / 1e9;
    let latency = Percentiles::of(&acc.hist);
    let http = Percentiles::of(&lane_http(&lanes));
    let (errors, outcomes) = finish(pool).await;

    let publish_rate = published as f64 / publish_secs;
    let deliveries_per_sec = acc.count as f64 / window;
    report.line(
        "published",
        format!(
            "{published} in {publish_secs:.1} s = {publish_rate:.0} msg/s ({} lanes)",
            args.lanes
        ),
    );
    report.line("deliveries/s", format!("{deliveries_per_sec:.0}"));
    report.line("delivery latency", pct_line(&latency));
    report.line("HTTP round trip", pct_line(&http));
    if let (Some(s), Some(c)) = (server_cpu, client_cpu) {
        report.line(
            "cpu",
            format!(
                "server {:.0}%, client {:.0}%",
                s / wall * 100.0,
                c / wall * 100.0
            ),
        );
        report.set("server_cpu", s / wall);
        report.set("client_cpu", c / wall);
    }
    report.set("published", published);
    report.set("publish_rate", publish_rate);
    report.set("deliveries_per_sec", deliveries_per_sec);
    report.set("latency", latency);
    report.set("http", http);

    let mut totals = DeliveryTotals::default();
    for o in outcomes.iter().filter(|o| o.setup_error.is_none()) {
        totals.add(&o.track, lanes.len(), |l| {
            lanes.get(l).map_or(0, |l| l.sent(o.index))
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
