//! Payload encoding, the shared clock, per-subscriber delivery accounting and latency recording.
//!
//! Every published message's `data` is `{"bseq":SEQ,"l":LANE,"s":STEP,"t":SENT_NS}` (plus an
//! optional `"p"` padding string). A *lane* is one sequential publisher (one keep-alive HTTP
//! connection): within a lane, a request is only sent after the previous one was answered, so a
//! correct server delivers a lane's messages to each subscriber in sequence order. Loss,
//! duplication and reordering are counted per (subscriber, lane).

use std::ops::Range;
use std::sync::OnceLock;
use std::time::Instant;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

/// Nanoseconds on the process-wide monotonic clock (publisher and subscribers live in this
/// process, so send and receive times come from the same clock).
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Appends the `data` string of a benchmark message to `out`.
pub fn encode_data(out: &mut String, seq: u64, lane: u32, step: u32, sent_ns: u64, pad: &str) {
    use std::fmt::Write;
    let _ = write!(
        out,
        "{{\"bseq\":{seq},\"l\":{lane},\"s\":{step},\"t\":{sent_ns}"
    );
    if !pad.is_empty() {
        let _ = write!(out, ",\"p\":\"{pad}\"");
    }
    out.push('}');
}

/// One received benchmark message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub seq: u64,
    pub lane: u32,
    pub step: u32,
    pub sent_ns: u64,
}

/// Finds the benchmark payload in a raw frame without parsing the JSON: the four numbers after
/// the `bseq` marker, in order (the field names between them hold no digits, and whatever
/// escaping the server applied to the `data` string does not matter).
pub fn parse_sample(frame: &[u8]) -> Option<Sample> {
    let start = find(frame, b"bseq")? + 4;
    let mut rest = &frame[start..];
    let mut numbers = [0u64; 4];
    for slot in &mut numbers {
        let digits_at = rest.iter().position(u8::is_ascii_digit)?;
        // Only punctuation and one-letter names may stand between the numbers.
        if digits_at > 16 {
            return None;
        }
        rest = &rest[digits_at..];
        let len = rest
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(rest.len());
        let mut value = 0u64;
        for &b in &rest[..len] {
            value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        }
        *slot = value;
        rest = &rest[len..];
    }
    Some(Sample {
        seq: numbers[0],
        lane: u32::try_from(numbers[1]).ok()?,
        step: u32::try_from(numbers[2]).ok()?,
        sent_ns: numbers[3],
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What one subscriber saw of one lane.
#[derive(Debug, Default, Clone)]
pub struct LaneTrack {
    next: u64,
    /// Sequence numbers skipped so far (sorted, disjoint); a late arrival is removed.
    missing: Vec<Range<u64>>,
    pub unique: u64,
    pub duplicates: u64,
    pub reordered: u64,
}

impl LaneTrack {
    pub fn observe(&mut self, seq: u64) {
        if seq == self.next {
            self.next += 1;
            self.unique += 1;
        } else if seq > self.next {
            self.missing.push(self.next..seq);
            self.next = seq + 1;
            self.unique += 1;
        } else if self.take_missing(seq) {
            self.reordered += 1;
            self.unique += 1;
        } else {
            self.duplicates += 1;
        }
    }

    fn take_missing(&mut self, seq: u64) -> bool {
        let Some(i) = self.missing.iter().position(|r| r.contains(&seq)) else {
            return false;
        };
        let r = self.missing.remove(i);
        if seq + 1 < r.end {
            self.missing.insert(i, seq + 1..r.end);
        }
        if r.start < seq {
            self.missing.insert(i, r.start..seq);
        }
        true
    }
}

/// What one subscriber saw, per lane.
#[derive(Debug, Default, Clone)]
pub struct SubTrack {
    pub lanes: Vec<LaneTrack>,
}

impl SubTrack {
    pub fn observe(&mut self, sample: &Sample) {
        let lane = sample.lane as usize;
        if lane >= self.lanes.len() {
            self.lanes.resize_with(lane + 1, LaneTrack::default);
        }
        self.lanes[lane].observe(sample.seq);
    }

    pub fn lane(&self, lane: usize) -> Option<&LaneTrack> {
        self.lanes.get(lane)
    }
}

/// Totals over all subscribers.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct DeliveryTotals {
    /// Deliveries a correct server makes (publishes × subscribers of their channel).
    pub expected: u64,
    /// Distinct messages received.
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
}

impl DeliveryTotals {
    /// Adds one subscriber's account; `sent(lane)` is how many messages that lane published to
    /// this subscriber's channel.
    pub fn add(&mut self, track: &SubTrack, lanes: usize, sent: impl Fn(usize) -> u64) {
        for lane in 0..lanes.max(track.lanes.len()) {
            let sent = sent(lane);
            let (unique, dups, reordered) = track
                .lane(lane)
                .map_or((0, 0, 0), |t| (t.unique, t.duplicates, t.reordered));
            self.expected += sent;
            self.received += unique;
            self.lost += sent.saturating_sub(unique);
            self.duplicates += dups;
            self.reordered += reordered;
        }
    }
}

/// Latency values are kept in microseconds, 1 µs to 100 s, 3 significant figures.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// Per-step accumulator.
pub struct StepAcc {
    pub hist: Histogram<u64>,
    pub count: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

impl StepAcc {
    fn new() -> Self {
        StepAcc {
            hist: new_histogram(),
            count: 0,
            first_ns: u64::MAX,
            last_ns: 0,
        }
    }

    fn merge(&mut self, other: &StepAcc) {
        let _ = self.hist.add(&other.hist);
        self.count += other.count;
        self.first_ns = self.first_ns.min(other.first_ns);
        self.last_ns = self.last_ns.max(other.last_ns);
    }
}

const SHARDS: usize = 32;

/// Delivery latencies from all subscribers, sharded so connection tasks rarely contend.
pub struct Recorder {
    shards: Vec<Mutex<Vec<StepAcc>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            shards: (0..SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }
}

impl Recorder {
    pub fn record(&self, conn: usize, sample: &Sample, now: u64) {
        let mut shard = self.shards[conn % SHARDS].lock();
        let step = sample.step as usize;
        while shard.len() <= step {
            shard.push(StepAcc::new());
        }
        let acc = &mut shard[step];
        let micros = now.saturating_sub(sample.sent_ns) / 1000;
        acc.hist.saturating_record(micros.max(1));
        acc.count += 1;
        acc.first_ns = acc.first_ns.min(now);
        acc.last_ns = acc.last_ns.max(now);
    }

    /// Deliveries recorded so far for `step`.
    pub fn count(&self, step: u32) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().get(step as usize).map_or(0, |a| a.count))
            .sum()
    }

    /// Everything recorded for `step`, merged.
    pub fn step(&self, step: u32) -> StepAcc {
        let mut total = StepAcc::new();
        for shard in &self.shards {
            if let Some(acc) = shard.lock().get(step as usize) {
                total.merge(acc);
            }
        }
        total
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(hist: &Histogram<u64>) -> Self {
        if hist.is_empty() {
            return Percentiles::default();
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Percentiles {
            count: hist.len(),
            p50_ms: ms(hist.value_at_quantile(0.50)),
            p90_ms: ms(hist.value_at_quantile(0.90)),
            p99_ms: ms(hist.value_at_quantile(0.99)),
            max_ms: ms(hist.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_pusher_and_pushi_escaping() {
        let mut data = String::new();
        encode_data(&mut data, 42, 3, 7, 123_456_789, "xx");
        assert_eq!(data, r#"{"bseq":42,"l":3,"s":7,"t":123456789,"p":"xx"}"#);
        let expected = Sample {
            seq: 42,
            lane: 3,
            step: 7,
            sent_ns: 123_456_789,
        };
        let pusher = serde_json::json!({"event": "bench", "channel": "c-1", "data": data});
        assert_eq!(parse_sample(pusher.to_string().as_bytes()), Some(expected));
        // The original Pushi's json.dumps spacing.
        let pushi =
            r#"{"data": "{\"bseq\": 42, \"l\": 3, \"s\": 7, \"t\": 123456789}", "channel": "c-1"}"#;
        assert_eq!(parse_sample(pushi.as_bytes()), Some(expected));
        assert_eq!(
            parse_sample(br#"{"event":"pusher:pong","data":"{}"}"#),
            None
        );
    }

    #[test]
    fn lane_accounting() {
        let mut t = LaneTrack::default();
        for seq in [0, 1, 3, 2, 2, 6, 4] {
            t.observe(seq);
        }
        assert_eq!(t.unique, 6);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.reordered, 2);
        assert_eq!(t.missing, vec![5..6]);
        let mut sub = SubTrack::default();
        sub.lanes.push(t);
        let mut totals = DeliveryTotals::default();
        totals.add(&sub, 2, |lane| if lane == 0 { 8 } else { 1 });
        assert_eq!(totals.expected, 9);
        assert_eq!(totals.received, 6);
        assert_eq!(totals.lost, 3);
    }
}
