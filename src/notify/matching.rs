//! Which targets a publish reaches.
//!
//! A target subscribed to channel C receives events published on C. A target subscribed to
//! `personal-{user}` receives the events of every channel that user has a subscription to
//! (Pushi's personal aliases). Each target gets at most one delivery per publish, for the
//! first of the publish's channels that reaches it.
//!
//! An app's targets are looked up in a [`TargetIndex`], which the
//! [`TargetService`](super::targets::TargetService) keeps for a few seconds so apps without
//! targets (the common case) pay nothing per publish.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::store::{Store, StoreError, TargetKind, TargetRecord};

/// How long a loaded index is trusted: targets created or removed on another node are seen
/// within this time (this node's own changes at once).
pub const INDEX_TTL: Duration = Duration::from_secs(5);

/// One app's targets by channel, as loaded at one moment.
pub struct TargetIndex {
    loaded: Instant,
    by_channel: HashMap<String, Vec<TargetRecord>>,
    has_personal: bool,
}

impl TargetIndex {
    pub fn new(targets: Vec<TargetRecord>) -> Self {
        let mut by_channel: HashMap<String, Vec<TargetRecord>> = HashMap::new();
        for target in targets {
            by_channel
                .entry(target.event.clone())
                .or_default()
                .push(target);
        }
        let has_personal = by_channel.keys().any(|c| c.starts_with("personal-"));
        Self {
            loaded: Instant::now(),
            by_channel,
            has_personal,
        }
    }

    pub fn is_fresh(&self) -> bool {
        self.loaded.elapsed() < INDEX_TTL
    }

    pub fn is_empty(&self) -> bool {
        self.by_channel.is_empty()
    }

    /// The targets a publish on `channels` reaches, each once, with the position in
    /// `channels` of the first channel that reaches it. Personal aliases cost one store
    /// lookup per channel, and only when the app has any.
    pub async fn reached<'a>(
        &'a self,
        store: &dyn Store,
        app_id: &str,
        channels: &[&str],
    ) -> Result<Vec<(usize, &'a TargetRecord)>, StoreError> {
        let mut seen: HashSet<(TargetKind, &str)> = HashSet::new();
        let mut out = Vec::new();
        for (position, channel) in channels.iter().enumerate() {
            let mut names = vec![(*channel).to_owned()];
            if self.has_personal {
                for user in store.subscribers_of(app_id, channel).await? {
                    names.push(format!("personal-{user}"));
                }
            }
            for name in &names {
                for target in self.by_channel.get(name).into_iter().flatten() {
                    if seen.insert((target.kind, target.target.as_str())) {
                        out.push((position, target));
                    }
                }
            }
        }
        Ok(out)
    }
}
