//! Close and error codes of Pusher protocol 7, in one place.
//!
//! The ranges carry meaning to clients: 4000–4099 "do not reconnect unchanged", 4100–4199
//! "reconnect with backoff", 4200–4299 "reconnect now", 4300–4399 errors that leave the
//! connection open. pusher-js acts on the range, so the choice of code is part of the protocol,
//! not decoration. Violations of WebSocket framing itself close with RFC 6455's codes.

/// RFC 6455: the client broke the WebSocket protocol (unknown opcode, unmasked frame, …).
pub const PROTOCOL_ERROR: u16 = 1002;
/// RFC 6455: a text message that is not UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// RFC 6455: a frame or message larger than the server accepts.
pub const MESSAGE_TOO_BIG: u16 = 1009;

/// The app key in the URL names no app.
pub const APP_NOT_FOUND: u16 = 4001;
/// The app exists but is disabled.
pub const APP_DISABLED: u16 = 4003;
/// The app is at its connection limit.
pub const OVER_QUOTA: u16 = 4004;
/// The URL path is not a WebSocket endpoint.
pub const PATH_NOT_FOUND: u16 = 4005;
/// `?protocol=` is not a number.
pub const BAD_VERSION_STRING: u16 = 4006;
/// `?protocol=` is not a version this server speaks.
pub const UNSUPPORTED_PROTOCOL: u16 = 4007;
/// `?protocol=` is missing.
pub const NO_PROTOCOL: u16 = 4008;
/// The connection was closed because it is not (or no longer) authorised, e.g. by
/// `terminate_connections`.
pub const UNAUTHORIZED: u16 = 4009;
/// The socket could not take its frames: its outbound queue overflowed, or a write did not
/// finish within the write deadline. A "reconnect with backoff" code, since a slow link will
/// likely still be slow.
pub const OVER_CAPACITY: u16 = 4100;
/// Generic "reconnect now"; sent to every socket on graceful shutdown.
pub const GOING_AWAY: u16 = 4200;
/// The client did not answer the server's ping in time.
pub const PONG_NOT_RECEIVED: u16 = 4201;
/// Client events arrive faster than the per-connection rate limit.
pub const CLIENT_EVENT_RATE_LIMIT: u16 = 4301;
/// A sign-in watchlist is longer than allowed.
pub const WATCHLIST_TOO_LONG: u16 = 4302;
/// A subscription would take the socket past the app's `max_subscriptions_per_socket`; the
/// subscription is refused and the connection stays open.
pub const SUBSCRIPTION_LIMIT: u16 = 4303;
