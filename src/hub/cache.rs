//! Cache channels: the last event of each, for a while, so a new subscriber gets it at once.
//!
//! The fan-out keeps the event here (the frame it already built, so a cache hit costs no
//! serialisation); subscribing replays it or answers `pusher:cache_miss`; the HTTP API reads
//! it for channel info. Entries expire after the hub's `cache_ttl`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use super::app_state::AppState;
use crate::protocol::ChannelName;
use crate::protocol::frames::Frame;

/// An event kept for a cache channel.
pub struct CachedEvent {
    pub frame: Frame,
    pub event: String,
    pub data: Box<RawValue>,
    pub stored: Instant,
}

impl AppState {
    /// Keeps `event` as `channel`'s last one.
    pub(super) fn keep_cached(&self, channel: &Arc<str>, event: CachedEvent, ttl: Duration) {
        self.cache.insert(channel.clone(), event);
        self.expire_cache(ttl);
    }

    /// The cached last event of a cache channel, if still fresh.
    pub fn cached(&self, channel: &ChannelName, ttl: Duration) -> Option<(Frame, Duration)> {
        let entry = self.cache.get(channel.as_str())?;
        let age = entry.stored.elapsed();
        if age >= ttl {
            drop(entry);
            self.cache.remove(channel.as_str());
            return None;
        }
        Some((entry.frame.clone(), ttl - age))
    }

    /// Cache info for the HTTP API: event name, data and remaining TTL.
    pub fn cached_event(
        &self,
        channel: &str,
        ttl: Duration,
    ) -> Option<(String, Box<RawValue>, Duration)> {
        let entry = self.cache.get(channel)?;
        let age = entry.stored.elapsed();
        (age < ttl).then(|| (entry.event.clone(), entry.data.clone(), ttl - age))
    }

    /// Drops expired cache entries so the cache cannot grow without bound.
    fn expire_cache(&self, ttl: Duration) {
        // Cheap amortisation: sweep only when the cache has grown past a power of two.
        let len = self.cache.len();
        if len >= 64 && len.is_power_of_two() {
            self.cache.retain(|_, e| e.stored.elapsed() < ttl);
        }
    }
}
