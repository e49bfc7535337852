//! Channel names and what their prefix means.
//!
//! A channel's behaviour (needs a signature, keeps presence, caches its last event, belongs to
//! one signed-in user) is decided by its name alone, so the name is parsed once into a
//! [`ChannelName`] and everything else asks it.

use std::fmt;
use std::sync::Arc;

use super::{Dialect, MAX_CHANNEL_NAME_LEN, MAX_PUSHI_NAME_LEN};

/// The prefix of the per-user channel a signed-in socket may join without a signature.
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

/// The prefix of Pushi's per-user channel, which expands to the user's subscriptions.
pub const PERSONAL_PREFIX: &str = "personal-";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    Public,
    Private,
    PrivateEncrypted,
    Presence,
    /// `#server-to-user-{id}`: only the socket signed in as `{id}` may join.
    ServerToUser,
    /// Pushi: `personal-{user}` expands to every channel that user subscribed to.
    Personal,
    /// Pushi: `peer-{base}:{u1}&{u2}` pairs two members of a presence channel.
    Peer,
}

impl ChannelKind {
    /// The kind a channel name denotes (names are classified by prefix).
    pub fn of(n: &str) -> Self {
        if n.starts_with(SERVER_TO_USER_PREFIX) {
            Self::ServerToUser
        } else if n.starts_with("private-encrypted-") {
            Self::PrivateEncrypted
        } else if n.starts_with("private-") {
            Self::Private
        } else if n.starts_with("presence-") {
            Self::Presence
        } else if n.starts_with(PERSONAL_PREFIX) {
            Self::Personal
        } else if n.starts_with("peer-") {
            Self::Peer
        } else {
            Self::Public
        }
    }

    /// Whether Pusher's subscription counting covers this kind: presence channels have member
    /// events instead, and a user's own channel has no audience to count.
    pub fn has_subscription_count(self) -> bool {
        !matches!(self, Self::Presence | Self::ServerToUser)
    }
}

/// A validated channel name. Cheap to clone (shared string).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelNameError {
    #[error("channel name is empty")]
    Empty,
    #[error("channel name is longer than {0} bytes")]
    TooLong(usize),
    #[error("channel name {0:?} contains a character outside [A-Za-z0-9_-=@,.;]")]
    BadCharacter(String),
    /// Pushi's rules: a control character, or a line or paragraph separator (`U+XXXX`), at
    /// this byte offset. The name itself is not repeated: it is what could not be printed.
    #[error("channel name contains an unprintable character ({0}) at byte {1}")]
    Unprintable(String, usize),
}

/// Which names a dialect accepts.
///
/// - **Pusher** (Pusher-protocol sockets, Pusher's HTTP API): Pusher's documented rules, at
///   most 200 characters of `[A-Za-z0-9_-=@,.;]`, plus `#server-to-user-{id}`.
/// - **Pushi** (Pushi-dialect sockets, Pushi's REST API, the operator's own tools): what the
///   original Pushi served, any printable text (letters of any script, `/`, spaces, `#`, `+`,
///   `:`, `&`, ...) up to [`MAX_PUSHI_NAME_LEN`] bytes. Refused is only what could break a
///   frame, a log line or a statement: control characters (NUL, newlines, tabs, escape, C1),
///   the Unicode line and paragraph separators, and longer names. Names are Rust strings, so
///   invalid UTF-8 never gets this far (a WebSocket text frame that is not UTF-8 is closed
///   with 1007, a JSON body with 400; query and form values have it replaced by U+FFFD).
///
/// Every Pusher name is a Pushi name, so a channel named under Pusher's rules is reachable
/// from both dialects; a Pushi-only name (`news/eu`) can never be subscribed to by a Pusher
/// socket and so never matches one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRules {
    Pusher,
    Pushi,
}

impl NameRules {
    /// The longest name these rules accept, in bytes.
    pub fn max_len(self) -> usize {
        match self {
            Self::Pusher => MAX_CHANNEL_NAME_LEN,
            Self::Pushi => MAX_PUSHI_NAME_LEN,
        }
    }

    /// Whether `name` is a valid channel name under these rules.
    pub fn check(self, name: &str) -> Result<(), ChannelNameError> {
        if name.is_empty() {
            return Err(ChannelNameError::Empty);
        }
        if name.len() > self.max_len() {
            return Err(ChannelNameError::TooLong(self.max_len()));
        }
        match self {
            Self::Pusher => {
                let body = name.strip_prefix(SERVER_TO_USER_PREFIX).unwrap_or(name);
                let allowed = |c: char| {
                    c.is_ascii_alphanumeric()
                        || matches!(c, '_' | '-' | '=' | '@' | ',' | '.' | ';')
                };
                if body.is_empty() || !body.chars().all(allowed) {
                    return Err(ChannelNameError::BadCharacter(name.to_owned()));
                }
            }
            Self::Pushi => {
                if let Some((at, c)) = name.char_indices().find(|(_, c)| !is_printable(*c)) {
                    return Err(ChannelNameError::Unprintable(
                        format!("U+{:04X}", u32::from(c)),
                        at,
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Pushi's notion of printable: anything but control characters and the two Unicode
/// separators that end a line in logs and JavaScript.
fn is_printable(c: char) -> bool {
    !c.is_control() && !matches!(c, '\u{2028}' | '\u{2029}')
}

impl ChannelName {
    pub fn parse(name: &str, rules: NameRules) -> Result<Self, ChannelNameError> {
        rules.check(name)?;
        Ok(Self(Arc::from(name)))
    }

    /// `personal-{user}`, the channel Pushi expands to every channel `user` subscribed to
    /// (`POST /subscriptions`). Fails only for ids that cannot make a channel name.
    pub fn personal(user: &str) -> Result<Self, ChannelNameError> {
        Self::parse(&format!("{PERSONAL_PREFIX}{user}"), NameRules::Pushi)
    }

    /// For `personal-{user}`, the user.
    pub fn personal_user(&self) -> Option<&str> {
        self.as_str().strip_prefix(PERSONAL_PREFIX)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn shared(&self) -> &Arc<str> {
        &self.0
    }

    pub fn kind(&self) -> ChannelKind {
        ChannelKind::of(self.as_str())
    }

    /// Cache channels keep their last event and replay it to new subscribers.
    pub fn is_cache(&self) -> bool {
        let n = self.as_str();
        [
            "cache-",
            "private-cache-",
            "private-encrypted-cache-",
            "presence-cache-",
        ]
        .iter()
        .any(|p| n.starts_with(p))
    }

    /// Subscribing needs an HMAC signature from the app's auth endpoint.
    pub fn needs_signature(&self) -> bool {
        matches!(
            self.kind(),
            ChannelKind::Private
                | ChannelKind::PrivateEncrypted
                | ChannelKind::Presence
                | ChannelKind::Personal
                | ChannelKind::Peer
        )
    }

    pub fn is_presence(&self) -> bool {
        self.kind() == ChannelKind::Presence
    }

    /// Whether a socket of `dialect` may publish client events here without the app's leave:
    /// only where every subscriber was authenticated. Pusher: private and presence channels;
    /// Pushi also its own signed kinds (`personal-`, `peer-`). Public channels need the app's
    /// `public_client_events` (Pushi only), which the caller checks.
    pub fn allows_client_events(&self, dialect: Dialect) -> bool {
        match self.kind() {
            ChannelKind::Private | ChannelKind::PrivateEncrypted | ChannelKind::Presence => true,
            ChannelKind::Personal | ChannelKind::Peer => dialect == Dialect::Pushi,
            ChannelKind::Public | ChannelKind::ServerToUser => false,
        }
    }

    /// For `peer-{base}:{a}&{b}`: the presence channel it pairs members of, and the two ids.
    ///
    /// A name has exactly one reading, so it always pairs the same two users: the base ends
    /// at the last `:` and the ids are split at the only `&`. The base may hold any character
    /// (`presence-room:1` pairs as `peer-room:1:{a}&{b}`); ids holding `:` or `&` have no
    /// peer channel (a name with a second `&` pairs nobody), where the original split on the
    /// first `&` and could read one name as two different pairs.
    pub fn peer_parts(&self) -> Option<(String, &str, &str)> {
        let rest = self.as_str().strip_prefix("peer-")?;
        let (base, tail) = rest.rsplit_once(':')?;
        let (a, b) = tail.split_once('&')?;
        (!base.is_empty() && !a.is_empty() && !b.is_empty() && !b.contains('&'))
            .then(|| (format!("presence-{base}"), a, b))
    }

    /// The peer channel pairing `a` and `b` in `presence_channel` (ids sorted, as Pushi does);
    /// `None` for ids that cannot be paired (see [`ChannelName::peer_parts`]) or a name over
    /// the length limit.
    pub fn peer_of(presence_channel: &str, a: &str, b: &str) -> Option<Self> {
        let base = presence_channel.strip_prefix("presence-")?;
        if [a, b].iter().any(|id| id.contains([':', '&'])) {
            return None;
        }
        let (first, second) = if a <= b { (a, b) } else { (b, a) };
        Self::parse(&format!("peer-{base}:{first}&{second}"), NameRules::Pushi).ok()
    }

    /// For `#server-to-user-{id}`, the id.
    pub fn server_to_user_id(&self) -> Option<&str> {
        self.as_str().strip_prefix(SERVER_TO_USER_PREFIX)
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::borrow::Borrow<str> for ChannelName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Prefixes of the events only the server sends (subscription replies, member events,
/// subscription counts, errors). A client event may never carry one, in either dialect: a
/// subscriber could not tell it from the server's own.
pub const RESERVED_EVENT_PREFIXES: [&str; 2] = ["pusher:", "pusher_internal:"];

/// Whether `name` is an event only the server may send.
pub fn is_reserved_event_name(name: &str) -> bool {
    RESERVED_EVENT_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Event names: non-empty, at most `max_len` bytes (the app's `max_event_name_len`).
pub fn validate_event_name(name: &str, max_len: usize) -> Result<(), String> {
    if name.is_empty() {
        Err("event name is empty".into())
    } else if name.len() > max_len {
        Err(format!("event name is longer than {max_len} bytes"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pusher(n: &str) -> Result<ChannelName, ChannelNameError> {
        ChannelName::parse(n, NameRules::Pusher)
    }

    #[test]
    fn kinds_follow_prefixes() {
        assert_eq!(pusher("news").unwrap().kind(), ChannelKind::Public);
        assert_eq!(pusher("private-a").unwrap().kind(), ChannelKind::Private);
        assert_eq!(
            pusher("private-encrypted-a").unwrap().kind(),
            ChannelKind::PrivateEncrypted
        );
        assert_eq!(pusher("presence-a").unwrap().kind(), ChannelKind::Presence);
        assert_eq!(
            pusher("#server-to-user-42").unwrap().kind(),
            ChannelKind::ServerToUser
        );
        assert!(pusher("presence-cache-x").unwrap().is_cache());
        assert!(pusher("cache-x").unwrap().is_cache());
        assert!(!pusher("private-x").unwrap().is_cache());
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(pusher(""), Err(ChannelNameError::Empty));
        assert!(matches!(
            pusher("has space"),
            Err(ChannelNameError::BadCharacter(_))
        ));
        assert!(pusher("#other").is_err());
        assert!(pusher(&"a".repeat(201)).is_err());
        assert!(pusher(&"a".repeat(200)).is_ok());
        assert!(pusher("peer-chat:alice&bob").is_err());
        assert!(ChannelName::parse("peer-chat:alice&bob", NameRules::Pushi).is_ok());
        assert!(pusher("a-_=@,.;Z9").is_ok());
        assert_eq!(
            pusher(&"a".repeat(201)),
            Err(ChannelNameError::TooLong(200))
        );
    }

    #[test]
    fn pushi_names_are_any_printable_text() {
        let pushi = |n: &str| ChannelName::parse(n, NameRules::Pushi);
        for name in [
            "news/eu",
            "canal-ação",
            "with space",
            "hash#tag",
            "a+b@example.com",
            "personal-john+1@example.com",
            "peer-chat:ann lee&bob",
            "日本語のチャンネル",
            "emoji 🎉",
            "#other",
            "#server-to-user-42",
        ] {
            assert!(pushi(name).is_ok(), "{name}");
            assert_eq!(pusher(name).is_ok(), name == "#server-to-user-42", "{name}");
        }
        assert!(pushi(&"a".repeat(250)).is_ok());
        assert!(pushi(&"a".repeat(1_000)).is_ok());
        assert_eq!(
            pushi(&"a".repeat(1_001)),
            Err(ChannelNameError::TooLong(1_000))
        );
        // Multi-byte characters count in bytes: 334 × 3 bytes is over.
        assert!(pushi(&"ç".repeat(500)).is_ok());
        assert!(pushi(&"€".repeat(334)).is_err());
        assert_eq!(pushi(""), Err(ChannelNameError::Empty));
        assert!(pusher("#server-to-user-").is_err());
        for (name, code, at) in [
            ("a\nb", "U+000A", 1),
            ("a\rb", "U+000D", 1),
            ("\0", "U+0000", 0),
            ("tab\there", "U+0009", 3),
            ("esc\u{1b}[31m", "U+001B", 3),
            ("del\u{7f}", "U+007F", 3),
            ("c1\u{85}", "U+0085", 2),
            ("ls\u{2028}", "U+2028", 2),
            ("ps\u{2029}", "U+2029", 2),
        ] {
            assert_eq!(
                pushi(name),
                Err(ChannelNameError::Unprintable(code.into(), at)),
                "{name:?}"
            );
        }
    }

    #[test]
    fn personal_channels_take_any_user_id() {
        for user in ["john+1@example.com", "ann lee", "personal-x", "ação"] {
            let channel = ChannelName::personal(user).unwrap();
            assert_eq!(channel.kind(), ChannelKind::Personal);
            assert_eq!(channel.personal_user(), Some(user));
        }
        assert!(ChannelName::personal("a\nb").is_err());
        assert!(ChannelName::personal(&"u".repeat(991)).is_ok());
        assert!(ChannelName::personal(&"u".repeat(992)).is_err());
    }

    #[test]
    fn client_events_only_where_subscribers_are_authenticated() {
        let pushi = |n: &str| ChannelName::parse(n, NameRules::Pushi).unwrap();
        for name in ["private-a", "private-encrypted-a", "presence-a"] {
            assert!(pushi(name).allows_client_events(Dialect::Pusher), "{name}");
            assert!(pushi(name).allows_client_events(Dialect::Pushi), "{name}");
        }
        for name in ["personal-u", "peer-chat:a&b"] {
            assert!(!pushi(name).allows_client_events(Dialect::Pusher), "{name}");
            assert!(pushi(name).allows_client_events(Dialect::Pushi), "{name}");
        }
        for name in ["news", "cache-news", "#server-to-user-1"] {
            assert!(!pushi(name).allows_client_events(Dialect::Pusher), "{name}");
            assert!(!pushi(name).allows_client_events(Dialect::Pushi), "{name}");
        }
    }

    #[test]
    fn server_event_names_are_reserved() {
        assert!(is_reserved_event_name("pusher:error"));
        assert!(is_reserved_event_name("pusher_internal:member_added"));
        assert!(!is_reserved_event_name("client-pusher:error"));
        assert!(!is_reserved_event_name("pusher_member_added"));
        assert!(!is_reserved_event_name("message"));
    }

    #[test]
    fn peer_names_round_trip() {
        let peer = ChannelName::peer_of("presence-chat", "bob", "alice").unwrap();
        assert_eq!(peer.as_str(), "peer-chat:alice&bob");
        assert_eq!(
            peer.peer_parts(),
            Some(("presence-chat".to_owned(), "alice", "bob"))
        );
        assert_eq!(
            ChannelName::parse("peer-x", NameRules::Pushi)
                .unwrap()
                .peer_parts(),
            None
        );
        let peer = ChannelName::peer_of("presence-room:1", "bob", "ann lee").unwrap();
        assert_eq!(peer.as_str(), "peer-room:1:ann lee&bob");
        assert_eq!(
            peer.peer_parts(),
            Some(("presence-room:1".to_owned(), "ann lee", "bob"))
        );
        let peer = ChannelName::peer_of("presence-chat", "john+1@example.com", "ann").unwrap();
        assert_eq!(
            peer.peer_parts(),
            Some(("presence-chat".to_owned(), "ann", "john+1@example.com"))
        );
        // Ids with ':' or '&' would make a name readable as two pairs: none is built, and a
        // name with a second '&' pairs nobody.
        assert_eq!(ChannelName::peer_of("presence-chat", "a&b", "c"), None);
        assert_eq!(ChannelName::peer_of("presence-chat", "a", "b:c"), None);
        let ambiguous = ChannelName::parse("peer-chat:a&b&c", NameRules::Pushi).unwrap();
        assert_eq!(ambiguous.peer_parts(), None);
    }
}
