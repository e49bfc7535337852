//! Pusher protocol 7: what each client event means.
//!
//! Every rejected message gets a reply (`pusher:error`, or `pusher:subscription_error` for a
//! subscription) and the connection stays open: one bad frame must not cost a client its
//! other subscriptions.

use std::sync::Arc;

use serde_json::value::RawValue;

use super::connection::Connection;
use crate::auth;
use crate::hub::channel::PresenceJoin;
use crate::hub::{Publish, SignedIn, SubscribeRefusal};
use crate::logs::clip;
use crate::notify::pusher_webhooks::HookEvent;
use crate::protocol::channel::NameRules;
use crate::protocol::inbound::{
    Envelope, PresenceData, SigninData, SubscribeData, UnsubscribeData, UserData, user_id_string,
};
use crate::protocol::{ChannelKind, ChannelName, Dialect, MAX_WATCHLIST, codes, frames};

impl Connection {
    pub(super) async fn handle_pusher(&mut self, text: &str) {
        let envelope = match Envelope::parse(text) {
            Ok(e) => e,
            Err(e) => return self.send_error(None, &e.to_string()),
        };
        match envelope.event.as_str() {
            "pusher:ping" => self.send(frames::pong()),
            "pusher:pong" => {}
            "pusher:subscribe" => self.subscribe(&envelope),
            "pusher:unsubscribe" => self.unsubscribe(&envelope),
            "pusher:signin" => self.signin(&envelope),
            name if name.starts_with("client-") => self.client_event(envelope).await,
            name => self.send_error(
                None,
                &format!(
                    "unknown event {:?}: clients may send pusher:* protocol events and client-* events",
                    clip(name)
                ),
            ),
        }
    }

    fn subscription_error(&self, channel: &str, kind: &str, error: &str, status: u16) {
        metrics::counter!(crate::metrics::CLIENT_ERRORS).increment(1);
        tracing::debug!(
            socket_id = %self.socket_id,
            channel = %clip(channel),
            error = %clip(error),
            "subscription refused"
        );
        self.send(frames::subscription_error(channel, kind, error, status));
    }

    fn subscribe(&mut self, envelope: &Envelope) {
        let data: SubscribeData = match envelope.data_as() {
            Ok(d) => d,
            Err(e) => return self.send_error(None, &e.to_string()),
        };
        let channel = match ChannelName::parse(&data.channel, NameRules::Pusher) {
            Ok(c) => c,
            Err(e) => {
                return self.subscription_error(
                    &clip(&data.channel),
                    "InvalidChannel",
                    &e.to_string(),
                    400,
                );
            }
        };
        // Before any signature is checked: the cheapest refusal first.
        if !self.within_subscription_limit(&channel) {
            return;
        }
        let app = self.app();
        let channel_data = data.channel_data_text();
        let presence = match channel.kind() {
            ChannelKind::Public => None,
            ChannelKind::ServerToUser => {
                let signed_in_as = self.signed_in.as_ref().map(|u| &*u.user_id);
                if signed_in_as != channel.server_to_user_id() {
                    return self.subscription_error(
                        channel.as_str(),
                        "AuthError",
                        "only the socket signed in as this user may subscribe to its #server-to-user- channel",
                        403,
                    );
                }
                None
            }
            kind => {
                let signed = channel_data
                    .as_deref()
                    .filter(|_| kind == ChannelKind::Presence);
                let message = auth::channel_auth_message(&self.socket_id, channel.as_str(), signed);
                let auth = data.auth.as_deref().unwrap_or_default();
                if !auth::verify_auth_string(&app.key, &app.secret, &message, auth) {
                    let error = if auth.is_empty() {
                        format!("{channel} needs an auth signature")
                    } else {
                        format!("invalid signature for {channel}")
                    };
                    return self.subscription_error(channel.as_str(), "AuthError", &error, 401);
                }
                if kind == ChannelKind::Presence {
                    match presence_join(channel_data.as_deref(), &app) {
                        Ok(join) => Some(join),
                        Err(error) => {
                            return self.subscription_error(
                                channel.as_str(),
                                "InvalidChannelData",
                                &error,
                                400,
                            );
                        }
                    }
                } else {
                    None
                }
            }
        };
        let state = self.state.clone();
        let reply = |ch: &crate::hub::channel::Channel| {
            Some(if channel.is_presence() {
                state.presence_frame(ch, channel.as_str())
            } else {
                frames::subscription_succeeded(channel.as_str())
            })
        };
        match self
            .state
            .subscribe(&self.handle, Dialect::Pusher, &channel, presence, reply)
        {
            Ok(_) => {
                self.channels.insert(channel.clone());
                if channel.is_cache() {
                    match self.state.cached(&channel, self.hub.config.cache_ttl) {
                        Some((frame, _)) => self.send(frame),
                        None => {
                            self.send(frames::cache_miss(channel.as_str()));
                            self.state.report(|| HookEvent::CacheMiss {
                                channel: channel.to_string(),
                            });
                        }
                    }
                }
            }
            Err(refusal @ SubscribeRefusal::PresenceFull { .. }) => {
                self.subscription_error(
                    channel.as_str(),
                    "LimitReached",
                    &refusal.to_string(),
                    403,
                );
            }
        }
    }

    fn unsubscribe(&mut self, envelope: &Envelope) {
        let data: UnsubscribeData = match envelope.data_as() {
            Ok(d) => d,
            Err(e) => return self.send_error(None, &e.to_string()),
        };
        let Some(channel) = self.channels.get(data.channel.as_str()).cloned() else {
            return self.send_error(
                None,
                &format!(
                    "not subscribed to {:?}; nothing to unsubscribe",
                    clip(&data.channel)
                ),
            );
        };
        self.channels.remove(&channel);
        self.state.unsubscribe(self.handle.id(), &channel);
    }

    fn signin(&mut self, envelope: &Envelope) {
        let data: SigninData = match envelope.data_as() {
            Ok(d) => d,
            Err(e) => return self.send_error(None, &e.to_string()),
        };
        let app = self.app();
        let message = auth::signin_message(&self.socket_id, &data.user_data);
        if !auth::verify_auth_string(&app.key, &app.secret, &message, &data.auth) {
            return self.send_error(Some(codes::UNAUTHORIZED), "invalid sign-in signature");
        }
        let user: UserData = match serde_json::from_str(&data.user_data) {
            Ok(u) => u,
            Err(e) => {
                return self
                    .send_error(None, &format!("user_data is not a valid user object: {e}"));
            }
        };
        let Some(user_id) = user_id_string(&user.id) else {
            return self.send_error(None, "user_data.id must be a non-empty string");
        };
        let watchlist: Vec<Arc<str>> = user
            .watchlist
            .unwrap_or_default()
            .iter()
            .filter_map(user_id_string)
            .map(Arc::from)
            .collect();
        if watchlist.len() > MAX_WATCHLIST {
            return self.send_error(
                Some(codes::WATCHLIST_TOO_LONG),
                &format!(
                    "watchlist has {} ids; at most {MAX_WATCHLIST}",
                    watchlist.len()
                ),
            );
        }
        if let Some(current) = &self.signed_in {
            if *current.user_id != *user_id {
                return self.send_error(
                    None,
                    &format!("already signed in as {:?}", &*current.user_id),
                );
            }
            // Signing in again as the same user only repeats the confirmation.
            return self.send(frames::signin_success(&data.user_data));
        }
        let signed_in = SignedIn {
            user_id: Arc::from(user_id),
            watchlist,
        };
        self.send(frames::signin_success(&data.user_data));
        self.state.sign_in(&self.handle, &signed_in);
        self.signed_in = Some(signed_in);
    }

    async fn client_event(&mut self, envelope: Envelope) {
        let app = self.app();
        if !app.settings.client_events {
            return self.send_error(None, "client events are disabled for this app");
        }
        let Some(name) = envelope.channel.as_deref() else {
            return self.send_error(None, "client event without a channel");
        };
        let Some(channel) = self.channels.get(name).cloned() else {
            return self.send_error(
                None,
                &format!("client event rejected: not subscribed to {:?}", clip(name)),
            );
        };
        if !channel.allows_client_events(Dialect::Pusher) {
            return self.send_error(
                None,
                "client event rejected: only supported on private and presence channels",
            );
        }
        if !self.client_event_allowed() {
            return;
        }
        let data = envelope.data.unwrap_or_else(null);
        let user_id = self.state.presence_user_of(self.handle.id(), &channel);
        let publish = Publish {
            exclude: Some(self.handle.id()),
            user_id: user_id.as_deref(),
            sender: Some(self.handle.id()),
            ..Publish::new(std::slice::from_ref(&channel), &envelope.event, &data)
        };
        if let Err(e) = self.hub.publish(&self.state, &publish).await {
            self.send_error(None, &format!("client event rejected: {e}"));
        }
    }
}

/// Reads and checks presence `channel_data` against the app's limits.
pub(super) fn presence_join(
    channel_data: Option<&str>,
    app: &crate::app::App,
) -> Result<PresenceJoin, String> {
    let text = channel_data.ok_or("presence channels need channel_data")?;
    let data: PresenceData =
        serde_json::from_str(text).map_err(|e| format!("channel_data is not valid: {e}"))?;
    let user_id = user_id_string(&data.user_id)
        .ok_or("channel_data.user_id must be a non-empty string or a number")?;
    if user_id.len() > app.settings.max_presence_user_id_len {
        return Err(format!(
            "user_id is longer than {} characters",
            app.settings.max_presence_user_id_len
        ));
    }
    let user_info: Arc<RawValue> = match data.user_info {
        Some(info) => Arc::from(info),
        None => Arc::from(empty_object()),
    };
    if user_info.get().len() > app.settings.max_presence_user_info_bytes {
        return Err(format!(
            "user_info is larger than {} bytes",
            app.settings.max_presence_user_info_bytes
        ));
    }
    let channel_data = RawValue::from_string(text.to_owned())
        .map(Arc::from)
        .map_err(|e| format!("channel_data is not valid JSON: {e}"))?;
    Ok(PresenceJoin {
        user_id: Arc::from(user_id),
        user_info,
        channel_data,
        peer: data.peer,
    })
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| null())
}

pub(super) fn null() -> Box<RawValue> {
    // `null` is valid JSON; this cannot fail.
    RawValue::from_string("null".to_owned()).expect("null is valid JSON")
}
