//! Putting one event on this node's sockets: the hot path.
//!
//! Both ways an event reaches this node end here — [`Hub::publish`](super::Hub::publish) for
//! its own publishes, [`LocalNode::deliver`](crate::cluster::LocalNode::deliver) for another
//! node's — so there is one definition of who receives what. Each channel's frame is built at
//! most once per dialect and shared by reference count; a recipient costs one pointer clone
//! and one `try_send`, never a serialisation or an allocation of its own.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::app_state::AppState;
use super::cache::CachedEvent;
use super::channel::{Channel, DialectFrames, Subscriber};
use super::publish::{EventData, Publish, no_extra};
use super::socket::SocketId;
use crate::protocol::frames;
use crate::protocol::pushi::{self, Stamp};
use crate::protocol::{ChannelKind, Dialect};

impl AppState {
    /// Delivers one publish to this node's sockets and keeps cache channels' last server event.
    /// `stamps` are the stored events' ids and times, one per channel, when it was persisted.
    /// Pushi sockets get each event once per publish even when several of their channels
    /// match (Pushi's rule); Pusher sockets get one frame per channel, as Pusher clients
    /// expect. Returns the number of frames queued.
    pub(super) fn fan_out(
        &self,
        publish: &Publish<'_>,
        data: &EventData<'_>,
        stamps: Option<&[Stamp]>,
        ttl: Duration,
    ) -> usize {
        let dedup = publish.channels.len() > 1
            || publish
                .channels
                .iter()
                .any(|c| c.kind() == ChannelKind::Peer);
        let mut pushi_seen: HashSet<SocketId> = HashSet::new();
        let extra: &Map<String, Value> = match publish.extra {
            Some(extra) => extra,
            None => no_extra(),
        };
        let mut sent = 0;
        let mut bytes = 0;
        for (i, channel) in publish.channels.iter().enumerate() {
            let stamp = stamps.and_then(|s| s.get(i));
            let pusher = || {
                frames::channel_event(publish.event, channel.as_str(), data.raw(), publish.user_id)
            };
            let pushi = || {
                pushi::Message {
                    channel: channel.as_str(),
                    event: publish.event,
                    data: data.text(),
                    extra,
                    stamp,
                }
                .to_frame()
            };
            let frames = DialectFrames::new(&pusher, &pushi);
            // Only the server fills a cache channel: a client event is delivered, not kept,
            // so clients cannot pin memory in the cache or replace what the server put there.
            if channel.is_cache() && publish.sender.is_none() {
                self.keep_cached(
                    channel.shared(),
                    CachedEvent {
                        frame: frames.get(Dialect::Pusher).clone(),
                        event: publish.event.to_owned(),
                        data: data.raw().to_owned(),
                        stored: Instant::now(),
                    },
                    ttl,
                );
            }
            let mut deliver = |sub: &Subscriber| {
                let id = sub.handle.id();
                if Some(id) == publish.exclude
                    || (dedup && sub.dialect == Dialect::Pushi && !pushi_seen.insert(id))
                {
                    return;
                }
                let frame = frames.get(sub.dialect);
                let len = frame.len();
                if sub.handle.send(frame.clone()) {
                    sent += 1;
                    bytes += len;
                }
            };
            if let Some(ch) = self.channels.get(channel.as_str()) {
                ch.subscribers.values().for_each(&mut deliver);
            }
            if let Some((presence, a, b)) = channel.peer_parts()
                && let Some(ch) = self.channels.get(presence.as_str())
            {
                let elsewhere = |u: &str| self.remote_user_present(presence.as_str(), u);
                peer_members(&ch, a, b, elsewhere, self.cluster.is_some())
                    .into_iter()
                    .for_each(&mut deliver);
            }
        }
        self.metrics.frames_sent.increment(sent as u64);
        self.frames_sent
            .fetch_add(sent as u64, std::sync::atomic::Ordering::Relaxed);
        self.metrics.bytes_sent.increment(bytes as u64);
        sent
    }
}

/// The sockets a peer channel reaches: those of its two users in the presence channel, if
/// both are present and at least one of them joined with `peer: true`. In a cluster the other
/// user (and their flag) may be on another node, so there only presence is required; the
/// sender was checked to be one of the pair on its own node.
fn peer_members<'c>(
    ch: &'c Channel,
    a: &str,
    b: &str,
    present_elsewhere: impl Fn(&str) -> bool,
    clustered: bool,
) -> Vec<&'c Subscriber> {
    let present = |u: &str| ch.members.contains_key(u) || present_elsewhere(u);
    if a == b || !present(a) || !present(b) {
        return Vec::new();
    }
    let pair: Vec<&Subscriber> = ch
        .subscribers
        .values()
        .filter(|s| s.user_id.as_deref().is_some_and(|u| u == a || u == b))
        .collect();
    if clustered || pair.iter().any(|s| s.peer) {
        pair
    } else {
        Vec::new()
    }
}
