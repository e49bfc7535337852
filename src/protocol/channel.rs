//! Channel names and what their prefix means.
//!
//! A channel's behaviour (needs a signature, keeps presence, caches its last event, belongs to
//! one signed-in user) is decided by its name alone, so the name is parsed once into a
//! [`ChannelName`] and everything else asks it.

use std::fmt;
use std::sync::Arc;

use super::{Dialect, MAX_CHANNEL_NAME_LEN};

/// The prefix of the per-user channel a signed-in socket may join without a signature.
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

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
        } else if n.starts_with("personal-") {
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
    #[error("channel name is longer than {MAX_CHANNEL_NAME_LEN} characters")]
    TooLong,
    #[error("channel name {0:?} contains a character outside [A-Za-z0-9_-=@,.;]")]
    BadCharacter(String),
}

/// Which character set names may use: Pusher's, or Pushi's (which adds `:` and `&` for peer
/// channels and is otherwise the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRules {
    Pusher,
    Pushi,
}

impl ChannelName {
    pub fn parse(name: &str, rules: NameRules) -> Result<Self, ChannelNameError> {
        if name.is_empty() {
            return Err(ChannelNameError::Empty);
        }
        if name.len() > MAX_CHANNEL_NAME_LEN {
            return Err(ChannelNameError::TooLong);
        }
        let body = name.strip_prefix(SERVER_TO_USER_PREFIX).unwrap_or(name);
        let allowed = |c: char| {
            c.is_ascii_alphanumeric()
                || matches!(c, '_' | '-' | '=' | '@' | ',' | '.' | ';')
                || (rules == NameRules::Pushi && matches!(c, ':' | '&'))
        };
        if body.is_empty() || !body.chars().all(allowed) {
            return Err(ChannelNameError::BadCharacter(name.to_owned()));
        }
        Ok(Self(Arc::from(name)))
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
    pub fn peer_parts(&self) -> Option<(String, &str, &str)> {
        let rest = self.as_str().strip_prefix("peer-")?;
        let (base, tail) = rest.rsplit_once(':')?;
        let (a, b) = tail.split_once('&')?;
        (!base.is_empty() && !a.is_empty() && !b.is_empty())
            .then(|| (format!("presence-{base}"), a, b))
    }

    /// The peer channel pairing `a` and `b` in `presence_channel` (ids sorted, as Pushi does).
    pub fn peer_of(presence_channel: &str, a: &str, b: &str) -> Option<Self> {
        let base = presence_channel.strip_prefix("presence-")?;
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

/// Event names: non-empty, at most 200 bytes.
pub fn validate_event_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("event name is empty".into())
    } else if name.len() > super::MAX_EVENT_NAME_LEN {
        Err(format!(
            "event name is longer than {} characters",
            super::MAX_EVENT_NAME_LEN
        ))
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
    }
}
