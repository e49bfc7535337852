//! Everything a WebSocket client's text frame goes through before the hub sees it, in both
//! dialects: the envelope, each kind of `data`, presence `channel_data`, sign-in `user_data`,
//! user ids and channel names under Pusher's and Pushi's rules, and the auth string's shape.
//! Any panic is a bug; errors are the expected answer to garbage.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pushi::protocol::ChannelName;
use pushi::protocol::channel::NameRules;
use pushi::protocol::inbound::{
    Envelope, PresenceData, SigninData, SubscribeData, UnsubscribeData, UserData, user_id_string,
};

fuzz_target!(|text: &str| {
    for rules in [NameRules::Pusher, NameRules::Pushi] {
        if let Ok(name) = ChannelName::parse(text, rules) {
            let _ = (name.kind(), name.is_cache(), name.needs_signature(), name.peer_parts());
            let _ = name.server_to_user_id();
        }
    }
    for max_len in [200, 1000] {
        let _ = pushi::protocol::channel::validate_event_name(text, max_len);
    }
    let Ok(envelope) = Envelope::parse(text) else {
        return;
    };
    if let Ok(subscribe) = envelope.data_as::<SubscribeData>() {
        let _ = ChannelName::parse(&subscribe.channel, NameRules::Pusher);
        if let Some(channel_data) = subscribe.channel_data_text()
            && let Ok(presence) = serde_json::from_str::<PresenceData>(&channel_data)
        {
            let _ = user_id_string(&presence.user_id);
        }
    }
    let _ = envelope.data_as::<UnsubscribeData>();
    if let Ok(signin) = envelope.data_as::<SigninData>()
        && let Ok(user) = serde_json::from_str::<UserData>(&signin.user_data)
    {
        let _ = user_id_string(&user.id);
        for watched in user.watchlist.iter().flatten() {
            let _ = user_id_string(watched);
        }
    }
    let _ = envelope.data_as::<serde_json::Value>();
});
