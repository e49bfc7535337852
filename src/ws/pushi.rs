//! Pushi's dialect: what each client event means for pushi.js and the `pushi` Python client.
//!
//! Pushi answers subscribe, unsubscribe and `pusher:latest` with `{name, members, alias,
//! events}`; expands `personal-{user}` to every channel that user subscribed to; treats any
//! other event as a client event with `echo` (default false) and `persist` (default true).
//! Where the original dropped the connection on bad input, this replies `pusher:error` and
//! keeps it open.
//!
//! Unlike the original, a client event is held to the same rules as a Pusher one, because the
//! app key is public and Pusher clients may share the channel: never a server event's name
//! (the hub refuses `pusher:*` and `pusher_internal:*`), public channels only when the app
//! sets `public_client_events`, at most `client_event_rate` per second, stored and sent to
//! offline targets only when the app sets `persist_client_events`.

use serde::Deserialize;

use super::connection::Connection;
use super::pusher::{null, presence_join};
use crate::auth;
use crate::hub::channel::PresenceJoin;
use crate::hub::{Publish, SubscribeRefusal};
use crate::logs::clip;
use crate::protocol::channel::NameRules;
use crate::protocol::inbound::{Envelope, SubscribeData, UnsubscribeData};
use crate::protocol::pushi::{self, ChannelView, StoredEvent, events_json};
use crate::protocol::{ChannelKind, ChannelName, Dialect, frames};
use crate::store::EventRecord;

/// How many history events a `personal-` subscription reply carries.
const PERSONAL_REPLY_EVENTS: u32 = 10;

/// Most events one `pusher:latest` may ask for (a count of 0 means "this many").
const MAX_LATEST: u32 = 1000;

/// A stored event's fields as Pushi's wire shape takes them. Lives with the Pushi dialect, the
/// layer that reads history from the store and sends it (here and in `http::pushi_api`), so
/// neither the wire types nor the store depend on each other.
impl<'a> From<&'a EventRecord> for StoredEvent<'a> {
    fn from(event: &'a EventRecord) -> Self {
        Self {
            id: event.id,
            mid: &event.mid,
            channel: &event.channel,
            owner_id: event.owner_id.as_deref(),
            timestamp: event.timestamp,
            data: &event.data,
            created: event.created,
        }
    }
}

#[derive(Deserialize)]
struct LatestData {
    channel: String,
    #[serde(default)]
    skip: u32,
    #[serde(default = "default_count")]
    count: u32,
}

fn default_count() -> u32 {
    10
}

impl Connection {
    pub(super) async fn handle_pushi(&mut self, text: &str) {
        let envelope = match Envelope::parse(text) {
            Ok(e) => e,
            Err(e) => return self.send_error(None, &e.to_string()),
        };
        // Pushi dispatches on the name with ':' read as '_', so both spellings work.
        match envelope.event.replace(':', "_").as_str() {
            "pusher_ping" => self.send(frames::pong()),
            "pusher_pong" => {}
            "pusher_subscribe" => self.pushi_subscribe(&envelope).await,
            "pusher_unsubscribe" => self.pushi_unsubscribe(&envelope),
            "pusher_latest" => self.pushi_latest(&envelope).await,
            _ => self.pushi_client_event(envelope).await,
        }
    }

    fn parse_pushi_channel(&self, name: &str) -> Option<ChannelName> {
        match ChannelName::parse(name, NameRules::Pushi) {
            Ok(c) => Some(c),
            Err(e) => {
                self.send_error(None, &e.to_string());
                None
            }
        }
    }

    /// Pusher's formula always; Pushi's older one (no channel_data) when the app or the
    /// whole server accepts it (`legacy_auth`). A refusal of a signature made with the older
    /// formula says which switches would accept it.
    fn pushi_signature_check(
        &self,
        channel: &ChannelName,
        channel_data: Option<&str>,
        auth: &str,
    ) -> Result<(), String> {
        let app = self.app();
        let presence_data = channel_data.filter(|_| channel.is_presence());
        let message = auth::channel_auth_message(&self.socket_id, channel.as_str(), presence_data);
        if auth::verify_auth_string(&app.key, &app.secret, &message, auth) {
            return Ok(());
        }
        let legacy_formula = presence_data.is_some() && {
            let legacy = auth::channel_auth_message(&self.socket_id, channel.as_str(), None);
            auth::verify_auth_string(&app.key, &app.secret, &legacy, auth)
        };
        match legacy_formula {
            true if app.settings.legacy_auth || self.hub.config.legacy_auth => Ok(()),
            true => Err(format!(
                "the signature for {channel} uses Pushi's older formula, which leaves channel_data \
                 unsigned; sign socket_id:channel:channel_data, or accept the older formula for \
                 this app (setting legacy_auth, e.g. PUT /apps/{{ident}} legacy_auth=1) or for \
                 the whole server (PUSHI_LEGACY_AUTH=1, --legacy-auth, TOML legacy_auth = true)"
            )),
            false => Err(format!("invalid or missing signature for {channel}")),
        }
    }

    async fn pushi_subscribe(&mut self, envelope: &Envelope) {
        let data: SubscribeData = match envelope.data_as() {
            Ok(d) => d,
            Err(e) => return self.send_error(None, &e.to_string()),
        };
        let Some(channel) = self.parse_pushi_channel(&data.channel) else {
            return;
        };
        let channel_data = data.channel_data_text();
        if channel.needs_signature() {
            let auth = data.auth.as_deref().unwrap_or_default();
            if let Err(error) = self.pushi_signature_check(&channel, channel_data.as_deref(), auth)
            {
                metrics::counter!(crate::metrics::CLIENT_ERRORS).increment(1);
                return self.send(frames::subscription_error(
                    channel.as_str(),
                    "AuthError",
                    &error,
                    401,
                ));
            }
        }
        if channel.kind() == ChannelKind::ServerToUser {
            return self.send_error(
                None,
                "#server-to-user- channels need a Pusher connection and sign-in",
            );
        }
        let presence = match channel_data.as_deref().filter(|_| channel.is_presence()) {
            Some(text) => match presence_join(Some(text), &self.app()) {
                Ok(join) => Some(join),
                Err(error) => {
                    return self.send(frames::subscription_error(
                        channel.as_str(),
                        "InvalidChannelData",
                        &error,
                        400,
                    ));
                }
            },
            None => None,
        };
        if channel.kind() == ChannelKind::Personal {
            return self.subscribe_personal(channel, presence).await;
        }
        let state = self.state.clone();
        let reply = |ch: &crate::hub::channel::Channel| {
            let members = state.members_in(ch, channel.as_str());
            Some(pushi::channel_reply(
                pushi::SUBSCRIBED,
                &ChannelView {
                    name: channel.as_str(),
                    members: members.channel_data(),
                    alias: &[],
                    events: &[],
                },
            ))
        };
        self.join(&channel, presence, reply);
    }

    /// Joins one channel as a Pushi socket and records it for cleanup.
    fn join(
        &mut self,
        channel: &ChannelName,
        presence: Option<PresenceJoin>,
        reply: impl FnOnce(&crate::hub::channel::Channel) -> Option<frames::Frame>,
    ) -> bool {
        if !self.within_subscription_limit(channel) {
            return false;
        }
        match self
            .state
            .subscribe(&self.handle, Dialect::Pushi, channel, presence, reply)
        {
            Ok(_) => {
                self.channels.insert(channel.clone());
                true
            }
            Err(refusal @ SubscribeRefusal::PresenceFull { .. }) => {
                self.send(frames::subscription_error(
                    channel.as_str(),
                    "LimitReached",
                    &refusal.to_string(),
                    403,
                ));
                false
            }
        }
    }

    /// `personal-{user}`: joins every channel the user has a stored subscription to, and the
    /// personal channel itself (so direct triggers and `pusher:latest` work on it too).
    async fn subscribe_personal(&mut self, channel: ChannelName, presence: Option<PresenceJoin>) {
        if !self.within_subscription_limit(&channel) {
            return;
        }
        let app = self.app();
        let Some(user) = channel.personal_user() else {
            return;
        };
        let store = self.hub.apps.store().clone();
        let aliases = match store.subscribed_channels(&app.id, user).await {
            Ok(list) => list,
            Err(e) => return self.send_error(None, &format!("could not load subscriptions: {e}")),
        };
        let history = match store
            .personal_history(&app.id, user, 0, PERSONAL_REPLY_EVENTS)
            .await
        {
            Ok(events) => events,
            Err(e) => return self.send_error(None, &format!("could not load history: {e}")),
        };
        let mut joined = Vec::new();
        let limit = app.settings.max_subscriptions_per_socket;
        // A slot stays free for the personal channel itself, joined last.
        let own_slot = usize::from(!self.channels.contains(&channel));
        for alias in &aliases {
            let Ok(target) = ChannelName::parse(alias, NameRules::Pushi) else {
                continue;
            };
            if !self.channels.contains(&target) && self.channels.len() + own_slot >= limit {
                self.refuse_over_limit(&target, limit);
                break;
            }
            let join = presence
                .as_ref()
                .filter(|_| target.is_presence())
                .map(|p| PresenceJoin {
                    user_id: p.user_id.clone(),
                    user_info: p.user_info.clone(),
                    channel_data: p.channel_data.clone(),
                    peer: p.peer,
                });
            if self.join(&target, join, |_| None) {
                joined.push(target);
            }
        }
        let events = events_json(history.iter().map(StoredEvent::from), &app.ident);
        let reply = |_: &crate::hub::channel::Channel| {
            Some(pushi::channel_reply(
                pushi::SUBSCRIBED,
                &ChannelView {
                    name: channel.as_str(),
                    members: Vec::new(),
                    alias: &aliases,
                    events: &events,
                },
            ))
        };
        if self.join(&channel, None, reply) {
            self.personal.insert(channel, joined);
        }
    }

    fn pushi_unsubscribe(&mut self, envelope: &Envelope) {
        let data: UnsubscribeData = match envelope.data_as() {
            Ok(d) => d,
            Err(e) => return self.send_error(None, &e.to_string()),
        };
        let Some(channel) = self.parse_pushi_channel(&data.channel) else {
            return;
        };
        let mut alias = Vec::new();
        if let Some(expanded) = self.personal.remove(&channel) {
            for target in expanded {
                self.channels.remove(&target);
                self.state.unsubscribe(self.handle.id(), &target);
                alias.push(target.to_string());
            }
        } else if !self.channels.contains(&channel)
            && !self.state.peer_eligible(self.handle.id(), &channel)
        {
            return self.send_error(
                None,
                &format!("not subscribed to {channel:?}; nothing to unsubscribe"),
            );
        }
        self.channels.remove(&channel);
        self.state.unsubscribe(self.handle.id(), &channel);
        let members = self.state.members(channel.as_str());
        self.send(pushi::channel_reply(
            pushi::UNSUBSCRIBED,
            &ChannelView {
                name: channel.as_str(),
                members: members.channel_data(),
                alias: &alias,
                events: &[],
            },
        ));
    }

    async fn pushi_latest(&mut self, envelope: &Envelope) {
        let data: LatestData = match envelope.data_as() {
            Ok(d) => d,
            Err(e) => return self.send_error(None, &e.to_string()),
        };
        let Some(channel) = self.parse_pushi_channel(&data.channel) else {
            return;
        };
        if !self.channels.contains(&channel)
            && !self.state.peer_eligible(self.handle.id(), &channel)
        {
            return self.send_error(
                None,
                &format!("pusher:latest needs a subscription to {channel:?}"),
            );
        }
        let app = self.app();
        let count = if data.count == 0 {
            MAX_LATEST
        } else {
            data.count.min(MAX_LATEST)
        };
        let store = self.hub.apps.store().clone();
        let history = match channel.personal_user() {
            Some(user) => {
                store
                    .personal_history(&app.id, user, data.skip, count)
                    .await
            }
            None => {
                store
                    .channel_history(&app.id, channel.as_str(), data.skip, count)
                    .await
            }
        };
        let history = match history {
            Ok(h) => h,
            Err(e) => return self.send_error(None, &format!("could not load history: {e}")),
        };
        let events = events_json(history.iter().map(StoredEvent::from), &app.ident);
        let alias: Vec<String> = self
            .personal
            .get(&channel)
            .map(|list| list.iter().map(|c| c.to_string()).collect())
            .unwrap_or_default();
        let members = self.state.members(channel.as_str());
        self.send(pushi::channel_reply(
            pushi::LATEST,
            &ChannelView {
                name: channel.as_str(),
                members: members.channel_data(),
                alias: &alias,
                events: &events,
            },
        ));
    }

    async fn pushi_client_event(&mut self, envelope: Envelope) {
        let app = self.app();
        if !app.settings.client_events {
            return self.send_error(None, "client events are disabled for this app");
        }
        let Some(name) = envelope.channel.as_deref() else {
            return self.send_error(
                None,
                &format!("{}: missing field \"channel\"", clip(&envelope.event)),
            );
        };
        let Some(channel) = self.parse_pushi_channel(name) else {
            return;
        };
        if !self.channels.contains(&channel)
            && !self.state.peer_eligible(self.handle.id(), &channel)
        {
            return self.send_error(
                None,
                &format!("event rejected: not subscribed to {:?}", clip(name)),
            );
        }
        if envelope.data.is_none() {
            return self.send_error(
                None,
                &format!("{}: missing field \"data\"", clip(&envelope.event)),
            );
        }
        let public_allowed =
            channel.kind() == ChannelKind::Public && app.settings.public_client_events;
        if !channel.allows_client_events(Dialect::Pushi) && !public_allowed {
            return self.send_error(
                None,
                "event rejected: this app takes client events only on private, presence, personal and peer channels",
            );
        }
        if !self.client_event_allowed() {
            return;
        }
        let data = envelope.data.clone().unwrap_or_else(null);
        let echo = envelope.echo.unwrap_or(false);
        let publish = Publish {
            exclude: (!echo).then(|| self.handle.id()),
            persist: envelope.persist.unwrap_or(true),
            sender: Some(self.handle.id()),
            ..Publish::new(std::slice::from_ref(&channel), &envelope.event, &data)
        };
        if let Err(e) = self.hub.publish(&self.state, &publish).await {
            self.send_error(None, &format!("event rejected: {e}"));
        }
    }
}
