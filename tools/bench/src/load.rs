//! Subscriber pools (many WebSocket connections, one task each) and publisher lanes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::net::{self, Dialect, Publisher, Target, Ws};
use crate::track::{Recorder, SubTrack, encode_data, new_histogram, now_ns, parse_sample};

/// Prints a progress line to stderr every `interval` until dropped (interval zero: never).
pub struct Ticker(Option<JoinHandle<()>>);

impl Ticker {
    pub fn start(interval: Duration, line: impl Fn() -> String + Send + 'static) -> Ticker {
        if interval.is_zero() {
            return Ticker(None);
        }
        Ticker(Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!("  .. {}", line());
            }
        })))
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// What became of one subscriber connection.
pub struct ConnOutcome {
    pub index: usize,
    pub track: SubTrack,
    /// Could not connect or subscribe.
    pub setup_error: Option<String>,
    /// Lost the connection while receiving (e.g. closed by the server as too slow).
    pub runtime_error: Option<String>,
}

/// N subscriber connections, each on its own channel list, each in its own task.
pub struct Pool {
    handles: Vec<JoinHandle<ConnOutcome>>,
    pub ready: Arc<AtomicUsize>,
    pub failed: Arc<AtomicUsize>,
    pub dropped: Arc<AtomicUsize>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: watch::Sender<bool>,
    started: Instant,
}

impl Pool {
    /// Starts one connection per entry of `channels` (its channel), at most `concurrency`
    /// handshakes in flight. Deliveries are timed into `recorder`.
    pub fn spawn(
        target: Arc<Target>,
        recorder: Arc<Recorder>,
        channels: Vec<String>,
        concurrency: usize,
    ) -> Pool {
        let (stop, stop_rx) = watch::channel(false);
        let gate = Arc::new(Semaphore::new(concurrency.max(1)));
        let ready = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let handles = channels
            .into_iter()
            .enumerate()
            .map(|(index, channel)| {
                let target = target.clone();
                let recorder = recorder.clone();
                let gate = gate.clone();
                let ready = ready.clone();
                let failed = failed.clone();
                let dropped = dropped.clone();
                let errors = errors.clone();
                let mut stop = stop_rx.clone();
                tokio::spawn(async move {
                    let mut outcome = ConnOutcome {
                        index,
                        track: SubTrack::default(),
                        setup_error: None,
                        runtime_error: None,
                    };
                    let permit = gate.acquire_owned().await.expect("gate never closes");
                    let ws = async {
                        let (mut ws, socket_id) = net::open(&target).await?;
                        net::subscribe(&mut ws, &target, &socket_id, &channel, None).await?;
                        anyhow::Ok(ws)
                    }
                    .await;
                    drop(permit);
                    let mut ws = match ws {
                        Ok(ws) => ws,
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            let text = format!("connection {index}: {e:#}");
                            note(&errors, &text);
                            outcome.setup_error = Some(text);
                            return outcome;
                        }
                    };
                    ready.fetch_add(1, Ordering::Relaxed);
                    match receive(&mut ws, index, &recorder, &mut outcome.track, &mut stop).await {
                        Ok(()) => net::close(ws).await,
                        Err(e) => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            let text = format!("connection {index} on {channel}: {e:#}");
                            note(&errors, &text);
                            outcome.runtime_error = Some(text);
                        }
                    }
                    outcome
                })
            })
            .collect();
        Pool {
            handles,
            ready,
            failed,
            dropped,
            errors,
            stop,
            started: Instant::now(),
        }
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Waits until every connection is subscribed or has failed; returns the time since spawn.
    pub async fn wait_ready(&self, label: &str, progress: Duration) -> Duration {
        let n = self.len();
        let ready = self.ready.clone();
        let failed = self.failed.clone();
        let started = self.started;
        let label = label.to_string();
        let _ticker = Ticker::start(progress, move || {
            let r = ready.load(Ordering::Relaxed);
            let secs = started.elapsed().as_secs_f64();
            format!(
                "{label}: {r}/{n} subscribed, {} failed, {:.0}/s",
                failed.load(Ordering::Relaxed),
                r as f64 / secs
            )
        });
        while self.ready.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.started.elapsed()
    }

    /// First few error messages.
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().clone()
    }

    /// Closes every connection and returns what each saw.
    pub async fn stop(self) -> Vec<ConnOutcome> {
        let _ = self.stop.send(true);
        let mut out = Vec::with_capacity(self.handles.len());
        for h in self.handles {
            match h.await {
                Ok(o) => out.push(o),
                Err(e) => note(&self.errors, &format!("connection task failed: {e}")),
            }
        }
        out
    }
}

fn note(errors: &Mutex<Vec<String>>, text: &str) {
    let mut errors = errors.lock();
    if errors.len() < 10 {
        errors.push(text.to_string());
    }
}

/// Reads until told to stop: benchmark messages are accounted, `pusher:ping` answered.
async fn receive(
    ws: &mut Ws,
    index: usize,
    recorder: &Recorder,
    track: &mut SubTrack,
    stop: &mut watch::Receiver<bool>,
) -> Result<()> {
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return Ok(()),
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let bytes = text.as_str().as_bytes();
                    if let Some(sample) = parse_sample(bytes) {
                        let now = now_ns();
                        track.observe(&sample);
                        recorder.record(index, &sample, now);
                    } else if text.as_str().contains("\"pusher:ping\"") {
                        net::pong(ws).await?;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(anyhow!("closed by the server: {frame:?}"));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(anyhow!("read error: {e}")),
                None => return Err(anyhow!("connection ended")),
            }
        }
    }
}

/// One sequential publisher: a keep-alive HTTP connection and its sequence counters.
pub struct Lane {
    pub id: u32,
    publisher: Publisher,
    /// Next sequence number per channel index (a single entry for one-channel scenarios).
    pub seqs: Vec<u64>,
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Request round-trip times in µs.
    pub http: Histogram<u64>,
    pub persist: bool,
    pad: String,
    buf: String,
}

impl Lane {
    pub async fn open(
        target: &Target,
        id: u32,
        dialect: Dialect,
        channels: usize,
        pad_bytes: usize,
    ) -> Result<Lane> {
        Ok(Lane {
            id,
            publisher: Publisher::connect(target, dialect).await?,
            seqs: vec![0; channels],
            ok: 0,
            errors: 0,
            first_error: None,
            http: new_histogram(),
            persist: false,
            pad: "x".repeat(pad_bytes),
            buf: String::new(),
        })
    }

    /// Publishes the next message of `channel` (index `ch`) tagged with `step`.
    pub async fn publish(&mut self, ch: usize, channel: &str, step: u32) {
        let seq = self.seqs[ch];
        self.seqs[ch] += 1;
        self.buf.clear();
        let sent = now_ns();
        encode_data(&mut self.buf, seq, self.id, step, sent, &self.pad);
        let result = self
            .publisher
            .publish(channel, &self.buf, self.persist)
            .await;
        self.http
            .saturating_record(((now_ns() - sent) / 1000).max(1));
        match result {
            Ok(()) => self.ok += 1,
            Err(e) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(format!("lane {}: {e:#}", self.id));
                }
            }
        }
    }

    /// Messages attempted on channel index `ch`.
    pub fn sent(&self, ch: usize) -> u64 {
        self.seqs[ch]
    }

    pub fn attempted(&self) -> u64 {
        self.seqs.iter().sum()
    }
}

/// Opens `n` lanes.
pub async fn open_lanes(
    target: &Target,
    n: usize,
    dialect: Dialect,
    channels: usize,
    pad_bytes: usize,
) -> Result<Vec<Lane>> {
    let mut lanes = Vec::with_capacity(n);
    for id in 0..n {
        lanes.push(Lane::open(target, id as u32, dialect, channels, pad_bytes).await?);
    }
    Ok(lanes)
}

/// Runs `f` on every lane concurrently (one task per lane) and gives the lanes back.
pub async fn run_lanes<F, Fut>(lanes: Vec<Lane>, f: F) -> Vec<Lane>
where
    F: Fn(Lane, usize) -> Fut,
    Fut: std::future::Future<Output = Lane> + Send + 'static,
{
    let n = lanes.len();
    let handles: Vec<_> = lanes
        .into_iter()
        .map(|lane| tokio::spawn(f(lane, n)))
        .collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.expect("lane task panicked"));
    }
    out.sort_by_key(|l| l.id);
    out
}

/// Total of the lanes' counters.
pub fn lane_errors(lanes: &[Lane]) -> (u64, u64, Option<String>) {
    let ok = lanes.iter().map(|l| l.ok).sum();
    let errors = lanes.iter().map(|l| l.errors).sum();
    let first = lanes.iter().find_map(|l| l.first_error.clone());
    (ok, errors, first)
}

/// All lanes' HTTP round trips merged.
pub fn lane_http(lanes: &[Lane]) -> Histogram<u64> {
    let mut h = new_histogram();
    for l in lanes {
        let _ = h.add(&l.http);
    }
    h
}
