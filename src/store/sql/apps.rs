//! Apps: the one table keyed by a numeric id the store assigns (the Pusher SDKs need it).

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::conflict_or;
use crate::app::App;
use crate::store::StoreError;

const APP_COLUMNS: &str =
    "id, ident, app_key, secret, name, enabled, settings, description, created, modified";

fn app_from_row(row: &AnyRow) -> Result<App, StoreError> {
    let settings: String = row.try_get("settings")?;
    Ok(App {
        id: row.try_get::<i64, _>("id")?.to_string(),
        ident: row.try_get("ident")?,
        key: row.try_get("app_key")?,
        secret: row.try_get("secret")?,
        name: row.try_get("name")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        settings: serde_json::from_str(&settings)
            .map_err(|e| StoreError::Corrupt(format!("app settings: {e}")))?,
        description: row.try_get("description")?,
        created: row.try_get("created")?,
        modified: row.try_get("modified")?,
    })
}

fn settings_json(app: &App) -> String {
    serde_json::to_string(&app.settings).unwrap_or_else(|_| "{}".into())
}

pub(super) async fn create(pool: &AnyPool, mut app: App) -> Result<App, StoreError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO apps (ident, app_key, secret, name, enabled, settings, description, created, modified) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(&app.ident)
    .bind(&app.key)
    .bind(&app.secret)
    .bind(&app.name)
    .bind(i64::from(app.enabled))
    .bind(settings_json(&app))
    .bind(&app.description)
    .bind(app.created)
    .bind(app.modified)
    .fetch_one(pool)
    .await
    .map_err(|e| conflict_or(e, &format!("an app named {:?}", app.name)))?;
    app.id = id.to_string();
    Ok(app)
}

pub(super) async fn update(pool: &AnyPool, app: &App) -> Result<(), StoreError> {
    let Ok(id) = app.id.parse::<i64>() else {
        return Ok(());
    };
    sqlx::query(
        "UPDATE apps SET name = $1, enabled = $2, settings = $3, description = $4, modified = $5 \
         WHERE id = $6",
    )
    .bind(&app.name)
    .bind(i64::from(app.enabled))
    .bind(settings_json(app))
    .bind(&app.description)
    .bind(app.modified)
    .bind(id)
    .execute(pool)
    .await
    .map_err(|e| conflict_or(e, &format!("an app named {:?}", app.name)))?;
    Ok(())
}

pub(super) async fn list(pool: &AnyPool) -> Result<Vec<App>, StoreError> {
    let sql = format!("SELECT {APP_COLUMNS} FROM apps ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await?;
    rows.iter().map(app_from_row).collect()
}

pub(super) async fn by_id(pool: &AnyPool, id: &str) -> Result<Option<App>, StoreError> {
    let Ok(id) = id.parse::<i64>() else {
        return Ok(None);
    };
    let sql = format!("SELECT {APP_COLUMNS} FROM apps WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(app_from_row).transpose()
}

pub(super) async fn by_key(pool: &AnyPool, key: &str) -> Result<Option<App>, StoreError> {
    let sql = format!("SELECT {APP_COLUMNS} FROM apps WHERE app_key = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(key)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(app_from_row).transpose()
}
