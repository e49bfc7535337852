//! Housekeeping: deleting what the apps' retention settings let go.
//!
//! Without it the store only grows: every persisted event, its associations with users, every
//! finished delivery and every login session stay for ever, and anyone holding the public app
//! key can make them grow. A sweep goes through every app (the caller passes them: apps from
//! configuration and from the store alike) and deletes, per app:
//!
//! - events older than `history_max_age_secs`, with their associations;
//! - events beyond the newest `history_max_per_channel` of their channel, with their
//!   associations (only channels written since the previous sweep are examined);
//! - finished deliveries (delivered or failed) not updated for `deliveries_max_age_secs`;
//!   pending ones are never deleted, whatever their age;
//!
//! and then the login sessions that have expired, of every app.
//!
//! Every delete is one transaction of at most [`HousekeepingConfig::batch`] rows, chosen by a
//! read beforehand, with a pause between batches: on SQLite, whose single writer a publish
//! shares, a publish waits for one short batch at most. Every node of a cluster sweeps; the
//! deletes are idempotent, so two nodes deleting the same rows do no harm.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{ExpiredEvents, Store, StoreError};
use crate::app::{App, AppSettings};

/// How often and how gently housekeeping runs.
#[derive(Debug, Clone)]
pub struct HousekeepingConfig {
    /// Time between sweeps (the first comes one interval after the start).
    pub every: Duration,
    /// Most rows one delete transaction removes.
    pub batch: u32,
    /// Rest between two batches, so writers waiting on the database get their turn.
    pub pause: Duration,
}

impl Default for HousekeepingConfig {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(60),
            batch: 100,
            pause: Duration::from_millis(20),
        }
    }
}

/// What an app keeps, from its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events saved longer ago than this are deleted; `None` keeps them whatever their age.
    pub events_max_age_secs: Option<u64>,
    /// Most events kept per channel, the newest; `None` keeps them all.
    pub events_per_channel: Option<u64>,
    /// Finished deliveries are deleted this long after their last attempt.
    pub deliveries_max_age_secs: u64,
}

impl From<&AppSettings> for Retention {
    fn from(settings: &AppSettings) -> Self {
        Self {
            events_max_age_secs: settings.history_max_age_secs,
            events_per_channel: settings.history_max_per_channel,
            deliveries_max_age_secs: settings.deliveries_max_age_secs,
        }
    }
}

/// What one sweep deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Events past their app's maximum age.
    pub expired_events: u64,
    /// Events beyond their channel's limit.
    pub trimmed_events: u64,
    pub deliveries: u64,
    pub sessions: u64,
}

impl Swept {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// How far an app's channels have been checked against its per-channel limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checked {
    /// The limit they were checked against: a new limit means checking every channel again.
    keep: u64,
    /// Channels with no event newer than this are known to be within the limit.
    through_id: i64,
}

/// Runs sweeps over one store. Remembers, per app, how far channels were checked against the
/// per-channel limit, so a sweep examines only the channels written since the previous one.
pub struct Housekeeper {
    store: Arc<dyn Store>,
    config: HousekeepingConfig,
    checked: Mutex<HashMap<String, Checked>>,
}

impl Housekeeper {
    pub fn new(store: Arc<dyn Store>, config: HousekeepingConfig) -> Self {
        Self {
            store,
            config,
            checked: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &HousekeepingConfig {
        &self.config
    }

    /// One sweep over `apps` as of `now` (unix seconds): everything the retention settings
    /// let go as of then is deleted, in batches. Dropping the future stops the sweep
    /// between two statements; a batch in progress is rolled back.
    pub async fn sweep(&self, apps: &[Arc<App>], now: i64) -> Result<Swept, StoreError> {
        self.lock_checked()
            .retain(|id, _| apps.iter().any(|app| &app.id == id));
        let mut swept = Swept::default();
        for app in apps {
            self.sweep_app(app, now, &mut swept).await?;
        }
        swept.sessions = self
            .in_batches(|limit| self.store.purge_expired_sessions(now, limit))
            .await?;
        Ok(swept)
    }

    async fn sweep_app(&self, app: &App, now: i64, swept: &mut Swept) -> Result<(), StoreError> {
        let retention = Retention::from(&app.settings);
        let store = &self.store;
        if let Some(max_age) = retention.events_max_age_secs {
            let which = ExpiredEvents::SavedBefore(now.saturating_sub(secs(max_age)));
            swept.expired_events += self
                .in_batches(|limit| store.delete_events(&app.id, which, limit))
                .await?;
        }
        match retention.events_per_channel {
            Some(keep) => swept.trimmed_events += self.trim_channels(app, keep).await?,
            None => {
                self.lock_checked().remove(&app.id);
            }
        }
        let finished_before = now
            .saturating_sub(secs(retention.deliveries_max_age_secs))
            .saturating_mul(1000);
        swept.deliveries += self
            .in_batches(|limit| store.delete_finished_deliveries(&app.id, finished_before, limit))
            .await?;
        Ok(())
    }

    /// Deletes the events beyond the newest `keep` of each channel written since the last
    /// check.
    async fn trim_channels(&self, app: &App, keep: u64) -> Result<u64, StoreError> {
        let after_id = match self.lock_checked().get(&app.id) {
            Some(checked) if checked.keep == keep => checked.through_id,
            _ => 0,
        };
        // Read before looking at the channels: events saved meanwhile are checked next time.
        let Some(newest) = self.store.newest_event_id(&app.id).await? else {
            return Ok(0);
        };
        let mut trimmed = 0;
        if newest > after_id {
            for (channel, through_id) in
                self.store.crowded_channels(&app.id, after_id, keep).await?
            {
                let which = ExpiredEvents::OnChannelThrough {
                    channel: &channel,
                    through_id,
                };
                trimmed += self
                    .in_batches(|limit| self.store.delete_events(&app.id, which, limit))
                    .await?;
            }
        }
        self.lock_checked().insert(
            app.id.clone(),
            Checked {
                keep,
                through_id: newest,
            },
        );
        Ok(trimmed)
    }

    /// Calls `delete` with the batch size until a batch comes back short, resting between
    /// batches; returns the total deleted.
    async fn in_batches<F, Fut>(&self, mut delete: F) -> Result<u64, StoreError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<u64, StoreError>>,
    {
        let batch = self.config.batch.max(1);
        let mut total = 0;
        loop {
            let deleted = delete(batch).await?;
            total += deleted;
            if deleted < u64::from(batch) {
                return Ok(total);
            }
            tokio::time::sleep(self.config.pause).await;
        }
    }

    fn lock_checked(&self) -> std::sync::MutexGuard<'_, HashMap<String, Checked>> {
        // The map holds plain values, so a panic elsewhere cannot leave it inconsistent.
        self.checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn secs(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
