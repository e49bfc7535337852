//! Log hygiene for input an attacker controls.
//!
//! A client chooses what it sends, so anything it sends can end up in a log line. Two rules
//! keep the log from becoming the attacker's disk-filling tool: client-supplied strings are
//! clipped ([`clip`]), and a rejection that can repeat at network speed is logged at most once
//! per period with a count of what was suppressed ([`Throttle`]). And no log level shows what
//! a client sends over its WebSocket ([`without_frame_contents`]): frames carry auth strings.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The longest client-supplied string a log line carries.
pub const CLIP: usize = 64;

/// `text` cut to at most [`CLIP`] bytes (on a character boundary), with control characters
/// replaced so a client cannot forge log lines.
pub fn clip(text: &str) -> Cow<'_, str> {
    let needs_escape = text.chars().any(char::is_control);
    if text.len() <= CLIP && !needs_escape {
        return Cow::Borrowed(text);
    }
    let mut end = text.len().min(CLIP);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out: String = text[..end]
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if end < text.len() {
        out.push_str(&format!("…(+{} bytes)", text.len() - end));
    }
    Cow::Owned(out)
}

/// Lets one log line through per period and counts the rest.
#[derive(Debug)]
pub struct Throttle {
    period_ms: u64,
    origin: Instant,
    /// Milliseconds since `origin` when the last line went out (`u64::MAX`: never).
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    pub fn new(period: Duration) -> Self {
        Self {
            period_ms: period.as_millis() as u64,
            origin: Instant::now(),
            last_ms: AtomicU64::new(u64::MAX),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line may be written now (`n` lines were suppressed since the last
    /// one), `None` when this one should be dropped.
    pub fn ready(&self) -> Option<u64> {
        let now = self.origin.elapsed().as_millis() as u64;
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == u64::MAX || now.saturating_sub(last) >= self.period_ms;
        if due
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::AcqRel));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Crates that log whole WebSocket frames, client messages with their auth strings included,
/// at trace level.
const FRAME_LOGGING_TARGETS: [&str; 2] = ["tungstenite", "tokio_tungstenite"];

/// `filter` with the crates that log frame contents held to `debug` at most, whatever level it
/// asks for, so no log level (`PUSHI_LOG=trace` included) writes what a client sent.
///
/// A filter that enables nothing below `debug` is returned as it is: adding `tungstenite=debug`
/// to an `info` filter would *raise* those crates to a line or two per closed socket.
pub fn without_frame_contents(
    filter: tracing_subscriber::EnvFilter,
) -> tracing_subscriber::EnvFilter {
    let may_trace = filter
        .max_level_hint()
        .is_none_or(|max| max >= tracing::level_filters::LevelFilter::TRACE);
    if !may_trace {
        return filter;
    }
    FRAME_LOGGING_TARGETS.iter().fold(filter, |filter, target| {
        match format!("{target}=debug").parse() {
            Ok(directive) => filter.add_directive(directive),
            Err(_) => filter,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_long_and_escapes_control_characters() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(100);
        let clipped = clip(&long);
        assert!(clipped.len() < 100, "{clipped}");
        assert!(clipped.contains("bytes)"));
        assert_eq!(clip("a\nb"), "a\u{fffd}b");
    }

    /// What `filter` (after [`without_frame_contents`]) lets through from the frame-logging
    /// crates at debug and at trace level.
    fn frame_crate_lines(filter: &str) -> String {
        use std::sync::{Arc, Mutex};
        let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(without_frame_contents(tracing_subscriber::EnvFilter::new(
                filter,
            )))
            .with_ansi(false)
            .with_writer(move || SharedWriter(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "tungstenite::protocol", "a debug line");
            tracing::trace!(target: "tungstenite::protocol", "a frame with its contents");
            tracing::info!(target: "pushi", "an info line");
        });
        let bytes = buffer.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[derive(Clone)]
    struct SharedWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for SharedWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut b) = self.0.lock() {
                b.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn frame_crates_are_capped_at_debug_and_never_raised() {
        let info = frame_crate_lines("info");
        assert!(info.contains("an info line"), "{info}");
        assert!(
            !info.contains("a debug line"),
            "info must not raise tungstenite: {info}"
        );
        let trace = frame_crate_lines("trace");
        assert!(trace.contains("a debug line"), "{trace}");
        assert!(!trace.contains("a frame with its contents"), "{trace}");
        let targeted = frame_crate_lines("info,tungstenite=trace");
        assert!(
            !targeted.contains("a frame with its contents"),
            "{targeted}"
        );
    }

    #[test]
    fn throttle_lets_one_through_per_period() {
        let t = Throttle::new(Duration::from_secs(3600));
        assert_eq!(t.ready(), Some(0));
        assert_eq!(t.ready(), None);
        assert_eq!(t.ready(), None);
        let t = Throttle::new(Duration::ZERO);
        assert_eq!(t.ready(), Some(0));
        assert_eq!(t.ready(), Some(0));
    }
}
