//! The wire: what clients may send, what the server answers, and the rules on names and sizes.
//!
//! Everything here is pure (no I/O, no state) so both dialects (Pusher protocol 7 and Pushi's
//! older dialect) and the HTTP API share one definition of a channel name, an error code or a
//! frame, and the rules can be unit-tested without a server.

pub mod channel;
pub mod codes;
pub mod frames;
pub mod inbound;
pub mod pushi;

pub use channel::{ChannelKind, ChannelName};
pub use inbound::{ClientMessage, InboundError};

/// Which wire dialect a connection speaks, decided by the URL it connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Pusher protocol 7 (`/app/{key}?protocol=7`).
    Pusher,
    /// Pushi's dialect (`/{key}`), as pushi.js and the `pushi` Python client speak it.
    Pushi,
}

/// The protocol versions a Pusher client may announce in `?protocol=`; pusher-js sends 7.
pub const SUPPORTED_PROTOCOLS: std::ops::RangeInclusive<u32> = 5..=7;

/// Longest event name accepted (Pusher's documented limit): the default of the per-app
/// `max_event_name_len`.
pub const MAX_EVENT_NAME_LEN: usize = 200;

/// Longest channel name Pusher's rules accept. Pusher documents 164 but its SDKs allow 200;
/// accept 200.
pub const MAX_CHANNEL_NAME_LEN: usize = 200;

/// Longest channel name Pushi's rules accept, in bytes: the original had no limit, and real
/// names (paths, e-mail addresses, titles) fit well within this. Also the ceiling of the
/// per-app `max_event_name_len`, so every name the server handles fits one bound.
pub const MAX_PUSHI_NAME_LEN: usize = 1_000;

/// Most channels one publish may address (Pusher's limit): the default of the per-app
/// `max_channels_per_publish`.
pub const MAX_TRIGGER_CHANNELS: usize = 100;

/// Most events one batch trigger may carry.
pub const MAX_BATCH_EVENTS: usize = 10;

/// Most user ids a sign-in watchlist may carry.
pub const MAX_WATCHLIST: usize = 100;
