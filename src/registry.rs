//! Where the server finds apps: configuration first, then the store.
//!
//! Apps come from two places: the store (created by the CLI, the first start, or Pushi's
//! `POST /apps`) and the configuration (TOML or `PUSHI_APP_*`, for stateless deployments). The
//! [`AppRegistry`] answers lookups by id or key from memory and falls back to the store, so an
//! app created by the CLI while the server runs is found on its first use. Stored apps are
//! read again once their cached copy is [`REFRESH`] old, so a change made elsewhere (the CLI,
//! another node of a cluster) takes effect within that time.

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
    /// Ids of apps declared in configuration: they are not in the store and never evicted.
    static_ids: DashMap<String, ()>,
}

impl AppRegistry {
    pub fn new(store: Arc<dyn Store>, static_apps: Vec<App>) -> Self {
        let registry = Self {
            store,
            by_id: DashMap::new(),
            by_key: DashMap::new(),
            static_ids: DashMap::new(),
        };
        for app in static_apps {
            registry.static_ids.insert(app.id.clone(), ());
            registry.remember(Arc::new(app));
        }
        registry
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn remember(&self, app: Arc<App>) {
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
            Some(c) if self.static_ids.contains_key(&c.app.id) || c.read.elapsed() < REFRESH => {
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
            .static_ids
            .iter()
            .filter_map(|id| self.by_id.get(id.key()).map(|c| c.app.clone()))
            .collect();
        for app in self.store.list_apps().await? {
            if !self.static_ids.contains_key(&app.id) {
                apps.push(Arc::new(app));
            }
        }
        Ok(apps)
    }

    pub async fn create(&self, new: NewApp) -> Result<Arc<App>, StoreError> {
        let app = Arc::new(self.store.create_app(new.into_app()).await?);
        self.remember(app.clone());
        Ok(app)
    }

    /// Saves changed settings and refreshes the cache, so the next connection sees them.
    pub async fn update(&self, app: App) -> Result<Arc<App>, StoreError> {
        if !self.static_ids.contains_key(&app.id) {
            self.store.update_app(&app).await?;
        }
        let app = Arc::new(app);
        self.remember(app.clone());
        Ok(app)
    }

    /// Whether `id` is declared in configuration (and so cannot be changed at run time).
    pub fn is_static(&self, id: &str) -> bool {
        self.static_ids.contains_key(id)
    }

    pub fn has_static_apps(&self) -> bool {
        !self.static_ids.is_empty()
    }
}
