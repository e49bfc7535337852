//! Where the server finds apps: configuration first, then the store.
//!
//! Apps come from two places: the store (created by the CLI, the first start, or Pushi's
//! `POST /apps`) and the configuration (TOML or `PUSHI_APP_*`, for stateless deployments). The
//! [`AppRegistry`] answers lookups by id or key from memory and falls back to the store, so an
//! app created by the CLI while the server runs is found on its first use.

use std::sync::Arc;

use dashmap::DashMap;

use crate::app::{App, NewApp};
use crate::store::{Store, StoreError};

/// Apps by id and by key: static apps from configuration first, then the store.
pub struct AppRegistry {
    store: Arc<dyn Store>,
    by_id: DashMap<String, Arc<App>>,
    by_key: DashMap<String, Arc<App>>,
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
        self.by_key.insert(app.key.clone(), app.clone());
        self.by_id.insert(app.id.clone(), app);
    }

    pub async fn by_id(&self, id: &str) -> Result<Option<Arc<App>>, StoreError> {
        if let Some(app) = self.by_id.get(id) {
            return Ok(Some(app.clone()));
        }
        Ok(self.store.app_by_id(id).await?.map(|app| {
            let app = Arc::new(app);
            self.remember(app.clone());
            app
        }))
    }

    pub async fn by_key(&self, key: &str) -> Result<Option<Arc<App>>, StoreError> {
        if let Some(app) = self.by_key.get(key) {
            return Ok(Some(app.clone()));
        }
        Ok(self.store.app_by_key(key).await?.map(|app| {
            let app = Arc::new(app);
            self.remember(app.clone());
            app
        }))
    }

    /// Every app: configured ones and stored ones.
    pub async fn all(&self) -> Result<Vec<Arc<App>>, StoreError> {
        let mut apps: Vec<Arc<App>> = self
            .static_ids
            .iter()
            .filter_map(|id| self.by_id.get(id.key()).map(|a| a.clone()))
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

    pub fn has_static_apps(&self) -> bool {
        !self.static_ids.is_empty()
    }
}
