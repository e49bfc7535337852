//! Apps: the one table keyed by a numeric id the store assigns (the Pusher SDKs need it).
//!
//! Apps declared in configuration have ids too, which the store never sees; creation is
//! told them so a stored app can never take one (two apps with one id would share history,
//! sockets and credentials checks).

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use super::conflict_or;
use crate::app::App;
use crate::store::StoreError;
use crate::store::migrations::Backend;

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

/// Saves a new app with an id above every reserved one. The counter is raised first (in the
/// same transaction on SQLite; PostgreSQL sequences are not transactional, and need not be),
/// and the id handed out is checked again before committing.
pub(super) async fn create(
    pool: &AnyPool,
    backend: Backend,
    mut app: App,
    reserved_ids: &[i64],
) -> Result<App, StoreError> {
    let mut tx = pool.begin().await?;
    // Ids start at 1, so only positive reserved ids can clash.
    if let Some(highest) = reserved_ids.iter().copied().filter(|id| *id > 0).max() {
        raise_id_counter(&mut tx, backend, highest).await?;
    }
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
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| conflict_or(e, &format!("an app named {:?}", app.name)))?;
    if reserved_ids.contains(&id) {
        tx.rollback().await?;
        return Err(StoreError::Conflict(format!(
            "an app with id {id} (declared in the configuration)"
        )));
    }
    tx.commit().await?;
    app.id = id.to_string();
    Ok(app)
}

/// Makes the next app id greater than `highest`, unless it already is.
async fn raise_id_counter(
    conn: &mut AnyConnection,
    backend: Backend,
    highest: i64,
) -> Result<(), StoreError> {
    match backend {
        // AUTOINCREMENT hands out one more than the larger of the table's highest id and
        // this counter, whose row exists only after the first insert.
        Backend::Sqlite => {
            sqlx::query(
                "INSERT INTO sqlite_sequence (name, seq) SELECT 'apps', $1 \
                 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'apps')",
            )
            .bind(highest)
            .execute(&mut *conn)
            .await?;
            sqlx::query("UPDATE sqlite_sequence SET seq = $1 WHERE name = 'apps' AND seq < $1")
                .bind(highest)
                .execute(&mut *conn)
                .await?;
        }
        // `pg_sequence_last_value` is NULL until the sequence is first used.
        Backend::Postgres => {
            sqlx::query(
                "SELECT setval(pg_get_serial_sequence('apps', 'id'), $1) \
                 WHERE COALESCE(pg_sequence_last_value(pg_get_serial_sequence('apps', 'id')::regclass), 0) < $1",
            )
            .bind(highest)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
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
