//! Where the server finds apps: configuration first, then the store.
//!
//! Apps come from two places: the store (created by the CLI, the first start, or Pushi's
//! `POST /apps`) and the configuration (TOML or `PUSHI_APP_*`, for stateless deployments). The
//! [`AppRegistry`] answers lookups by id or key from memory and falls back to the store, so an
//! app created by the CLI while the server runs is found on its first use. Stored apps are
//! read again once their cached copy is [`REFRESH`] old, so a change made elsewhere (the CLI,
//! another node of a cluster) takes effect within that time.
//!
//! Apps from configuration always win: an app's id and key are what its sockets, signatures
//! and stored rows are keyed by, so a stored app with a configured app's id or key would
//! receive that app's events and break its signatures. Creation never hands out a configured
//! id (the store is told them) or key, a stored app that clashes anyway (created by a process
//! that did not have this configuration) is never served, and [`AppRegistry::clashes`] names
//! such apps so the server can refuse to start.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::app::{App, NewApp};
use crate::store::{Store, StoreError};

/// How long a stored app's cached copy is used before the store is asked again.
pub const REFRESH: Duration = Duration::from_secs(5);

/// A cached app and when it was read from the store.
#[derive(Clone)]
struct Cached {
    app: Arc<App>,
    read: Instant,
}

/// Apps by id and by key: static apps from configuration first, then the store.
pub struct AppRegistry {
    store: Arc<dyn Store>,
    by_id: DashMap<String, Cached>,
    by_key: DashMap<String, Cached>,
    /// Apps declared in configuration: not in the store, never evicted.
    static_apps: Vec<Arc<App>>,
    /// Their ids, and their keys and idents (Pushi's login names an app by its ident, which
    /// for a configured app is its key): no stored app may have one.
    static_ids: HashSet<String>,
    static_keys: HashSet<String>,
}

impl AppRegistry {
    pub fn new(store: Arc<dyn Store>, static_apps: Vec<App>) -> Self {
        let static_apps: Vec<Arc<App>> = static_apps.into_iter().map(Arc::new).collect();
        let registry = Self {
            store,
            by_id: DashMap::new(),
            by_key: DashMap::new(),
            static_ids: static_apps.iter().map(|a| a.id.clone()).collect(),
            static_keys: static_apps
                .iter()
                .flat_map(|a| [a.key.clone(), a.ident.clone()])
                .collect(),
            static_apps,
        };
        for app in &registry.static_apps {
            registry.remember(app.clone());
        }
        registry
    }

    /// Whether a stored app has a configured app's id, key or ident, so that serving it would
    /// mix the two tenants up.
    fn clashes_with_static(&self, app: &App) -> bool {
        self.static_ids.contains(&app.id)
            || self.static_keys.contains(&app.key)
            || self.static_keys.contains(&app.ident)
    }

    /// Every clash between apps, one sentence each: configured apps sharing an id or a key,
    /// and stored apps with a configured app's id, key or ident. The server refuses to start
    /// while there is any.
    pub async fn clashes(&self) -> Result<Vec<String>, StoreError> {
        let mut clashes = Vec::new();
        for (i, a) in self.static_apps.iter().enumerate() {
            for b in &self.static_apps[i + 1..] {
                if a.id == b.id || a.key == b.key {
                    clashes.push(format!(
                        "the configured apps {:?} and {:?} share an id or a key",
                        a.name, b.name
                    ));
                }
            }
        }
        for stored in self.store.list_apps().await? {
            let Some(configured) = self.static_apps.iter().find(|s| {
                s.id == stored.id
                    || s.key == stored.key
                    || s.key == stored.ident
                    || s.ident == stored.ident
            }) else {
                continue;
            };
            let what = if configured.id == stored.id {
                format!("id {}", stored.id)
            } else {
                "key".to_owned()
            };
            clashes.push(format!(
                "the stored app {:?} (id {}) has the {what} of the configured app {:?}: give the \
                 configured app another id and key",
                stored.name, stored.id, configured.name
            ));
        }
        Ok(clashes)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn remember(&self, app: Arc<App>) {
        let is_static = self
            .static_apps
            .iter()
            .any(|s| s.id == app.id && s.key == app.key);
        if !is_static && self.clashes_with_static(&app) {
            return;
        }
        let cached = Cached {
            app,
            read: Instant::now(),
        };
        if let Some(old) = self.by_id.insert(cached.app.id.clone(), cached.clone())
            && old.app.key != cached.app.key
        {
            self.by_key.remove(&old.app.key);
        }
        self.by_key.insert(cached.app.key.clone(), cached);
    }

    fn forget(&self, app: &App) {
        self.by_id.remove(&app.id);
        self.by_key.remove(&app.key);
    }

    /// The cached copy if it may still be used without asking the store.
    fn fresh(&self, cached: Option<Cached>) -> Result<Arc<App>, Option<Cached>> {
        match cached {
            Some(c) if self.static_ids.contains(&c.app.id) || c.read.elapsed() < REFRESH => {
                Ok(c.app)
            }
            other => Err(other),
        }
    }

    /// Reads an app from the store, keeps it, and falls back to a stale copy when the store
    /// cannot answer (a restarting database should not take every app down with it).
    async fn reload(
        &self,
        stale: Option<Cached>,
        read: impl std::future::Future<Output = Result<Option<App>, StoreError>>,
    ) -> Result<Option<Arc<App>>, StoreError> {
        match read.await {
            Ok(Some(app)) if self.clashes_with_static(&app) => {
                tracing::warn!(
                    app = %app.id, name = %app.name,
                    "a stored app has the id or key of a configured app: not serving it"
                );
                Ok(None)
            }
            Ok(Some(app)) => {
                let app = Arc::new(app);
                self.remember(app.clone());
                Ok(Some(app))
            }
            Ok(None) => {
                if let Some(stale) = stale {
                    self.forget(&stale.app);
                }
                Ok(None)
            }
            Err(e) => match stale {
                Some(stale) => {
                    tracing::debug!(error = %e, app = %stale.app.id, "store unavailable, using the cached app");
                    Ok(Some(stale.app))
                }
                None => Err(e),
            },
        }
    }

    pub async fn by_id(&self, id: &str) -> Result<Option<Arc<App>>, StoreError> {
        match self.fresh(self.by_id.get(id).map(|c| c.clone())) {
            Ok(app) => Ok(Some(app)),
            Err(stale) => self.reload(stale, self.store.app_by_id(id)).await,
        }
    }

    pub async fn by_key(&self, key: &str) -> Result<Option<Arc<App>>, StoreError> {
        match self.fresh(self.by_key.get(key).map(|c| c.clone())) {
            Ok(app) => Ok(Some(app)),
            Err(stale) => self.reload(stale, self.store.app_by_key(key)).await,
        }
    }

    /// Every app: configured ones and stored ones.
    pub async fn all(&self) -> Result<Vec<Arc<App>>, StoreError> {
        let mut apps: Vec<Arc<App>> = self
            .static_apps
            .iter()
            .filter_map(|s| self.by_id.get(&s.id).map(|c| c.app.clone()))
            .collect();
        for app in self.store.list_apps().await? {
            if !self.clashes_with_static(&app) {
                apps.push(Arc::new(app));
            }
        }
        Ok(apps)
    }

    /// Creates a stored app: the CLI's `apps create`, `POST /apps` and the first start all
    /// come here. Its id is never a configured app's (the store hands out ids above them),
    /// nor its key or ident.
    pub async fn create(&self, new: NewApp) -> Result<Arc<App>, StoreError> {
        let app = new.into_app();
        if self.static_keys.contains(&app.key) || self.static_keys.contains(&app.ident) {
            return Err(StoreError::Conflict(
                "an app with this key (declared in the configuration)".into(),
            ));
        }
        let reserved: Vec<i64> = self
            .static_ids
            .iter()
            .filter_map(|id| id.parse().ok())
            .collect();
        let app = Arc::new(self.store.create_app(app, &reserved).await?);
        self.remember(app.clone());
        Ok(app)
    }

    /// Saves changed settings and refreshes the cache, so the next connection sees them.
    /// Stores a new app from a checked draft (its name, settings, description and enabled
    /// flag; the server assigns id, key, secret and ident).
    pub async fn create_from_draft(&self, draft: App) -> Result<App, StoreError> {
        let mut app = (*self
            .create(NewApp {
                name: draft.name,
                settings: draft.settings,
                description: draft.description,
            })
            .await?)
            .clone();
        if !draft.enabled {
            app.enabled = false;
            app = (*self.update(app).await?).clone();
        }
        Ok(app)
    }

    pub async fn update(&self, app: App) -> Result<Arc<App>, StoreError> {
        if !self.static_ids.contains(&app.id) {
            self.store.update_app(&app).await?;
        }
        let app = Arc::new(app);
        self.remember(app.clone());
        Ok(app)
    }

    /// Whether `id` is declared in configuration (and so cannot be changed at run time).
    pub fn is_static(&self, id: &str) -> bool {
        self.static_ids.contains(id)
    }

    pub fn has_static_apps(&self) -> bool {
        !self.static_ids.is_empty()
    }
}
