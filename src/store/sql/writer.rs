//! Group commit for persisted publishes: one writer task per store saves the publishes that
//! are waiting together, in one transaction.
//!
//! A transaction per publish costs a commit (and on PostgreSQL a WAL flush) per event, and on
//! SQLite every statement is a hand-off to sqlx's connection thread; under concurrent publishes
//! that, not the SQL, is where the time went. So [`EventWriter::save`] queues the publish and
//! waits for its own answer, and the writer takes everything queued meanwhile (up to
//! [`MAX_BATCH_EVENTS`]) and saves it with a few multi-row statements and one commit. A
//! publish is answered only after the transaction holding it committed, so an acknowledged
//! event is as durable as before; a publisher that stops waiting changes nothing for the
//! others.
//!
//! Each publish keeps its own meaning inside a batch: its events get ids in slice order, its
//! users are associated with its first matching event only, and a publish that cannot be saved
//! (a `mid` already saved) fails alone: when a batch fails, its publishes are saved again one
//! transaction each, and each gets its own answer.
//!
//! The queue is bounded ([`QUEUE_PUBLISHES`]): when the database falls behind, publishers wait
//! for room, which slows the HTTP clients and WebSocket senders that caused the load rather
//! than growing memory.
//!
//! On a SQLite file the writer is a thread of its own with its own connection (rusqlite, on
//! the same SQLite library sqlx links): a batch is then one hand-off in and one answer out,
//! instead of one round trip to sqlx's connection thread per statement, and the connection's
//! page cache stays valid because no other connection writes events. PostgreSQL (and SQLite
//! in memory, where another connection would be another database) use a task on the pool.
//! Both run the same statements ([`insert_sql`], [`associate_sql`]).

use std::collections::HashMap;

use sqlx::{AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

use super::{SQLITE_PRAGMAS, conflict_or, events};
use crate::clock::now_unix;
use crate::store::migrations::Backend;
use crate::store::{EventRecord, NewEvent, StoreError};

/// Publishes that may wait for the writer; beyond, a publisher waits for room.
pub const QUEUE_PUBLISHES: usize = 4096;

/// Events saved in one transaction at most. A batch this size is a few milliseconds of work,
/// so a long queue drains in short transactions that other writers can slot between.
pub const MAX_BATCH_EVENTS: usize = 256;

/// Rows per `INSERT` at most (8 parameters each). A batch is cut into statements of
/// power-of-two sizes, so each connection prepares at most a handful of distinct statements.
const MAX_ROWS_PER_INSERT: usize = 64;

type Reply = oneshot::Sender<Result<Vec<EventRecord>, StoreError>>;

enum Message {
    Save {
        app_id: String,
        events: Vec<NewEvent>,
        reply: Reply,
    },
    /// Answered once everything queued before it was saved; the writer then stops.
    Close(oneshot::Sender<()>),
}

/// The front of the writer: cheap to share, one per store.
pub(super) struct EventWriter {
    queue: mpsc::Sender<Message>,
}

impl EventWriter {
    /// Starts the writer: a thread on its own connection to `sqlite_file` when given,
    /// otherwise a task on the pool (current runtime).
    pub(super) fn start(
        pool: AnyPool,
        backend: Backend,
        sqlite_file: Option<&str>,
    ) -> Result<Self, StoreError> {
        let (queue, rx) = mpsc::channel(QUEUE_PUBLISHES);
        match sqlite_file {
            Some(file) => {
                let conn = open_sqlite(file)?;
                std::thread::Builder::new()
                    .name("pushi-event-writer".into())
                    .spawn(move || run_sqlite(conn, rx))
                    .map_err(|e| StoreError::Unusable {
                        file: file.to_owned(),
                        reason: format!("cannot start the event writer: {e}"),
                    })?;
            }
            None => {
                tokio::spawn(run(pool, backend, rx));
            }
        }
        Ok(Self { queue })
    }

    /// Saves one publish's events and answers after their transaction committed.
    pub(super) async fn save(
        &self,
        app_id: &str,
        events: &[NewEvent],
    ) -> Result<Vec<EventRecord>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let message = Message::Save {
            app_id: app_id.to_owned(),
            events: events.to_vec(),
            reply,
        };
        self.queue.send(message).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Waits until every publish queued so far was saved (or failed), and stops the writer:
    /// later saves fail.
    pub(super) async fn close(&self) {
        let (done, finished) = oneshot::channel();
        if self.queue.send(Message::Close(done)).await.is_ok() {
            let _ = finished.await;
        }
    }
}

fn closed() -> StoreError {
    StoreError::Database(sqlx::Error::PoolClosed)
}

/// One publish waiting in a batch.
struct Job {
    app_id: String,
    events: Vec<NewEvent>,
    reply: Reply,
}

/// What the writer does next: save `batch` (possibly empty), then stop if `close` is set.
struct Next {
    batch: Vec<Job>,
    close: Option<oneshot::Sender<()>>,
}

/// Takes `first` and whatever else is queued, up to [`MAX_BATCH_EVENTS`] (a publish that does
/// not fit is kept in `pending` for the next batch), stopping at a close.
fn next_batch(
    first: Message,
    rx: &mut mpsc::Receiver<Message>,
    pending: &mut Option<Message>,
) -> Next {
    let mut batch = Vec::new();
    let mut rows = 0;
    let mut next = Some(first);
    while let Some(message) = next.take() {
        match message {
            Message::Close(done) => {
                return Next {
                    batch,
                    close: Some(done),
                };
            }
            Message::Save {
                app_id,
                events,
                reply,
            } => {
                if !batch.is_empty() && rows + events.len() > MAX_BATCH_EVENTS {
                    *pending = Some(Message::Save {
                        app_id,
                        events,
                        reply,
                    });
                    break;
                }
                rows += events.len();
                batch.push(Job {
                    app_id,
                    events,
                    reply,
                });
            }
        }
        next = rx.try_recv().ok();
    }
    Next { batch, close: None }
}

async fn run(pool: AnyPool, backend: Backend, mut rx: mpsc::Receiver<Message>) {
    let mut pending: Option<Message> = None;
    loop {
        let first = match pending.take() {
            Some(message) => message,
            None => match rx.recv().await {
                Some(message) => message,
                None => return,
            },
        };
        let Next { batch, close } = next_batch(first, &mut rx, &mut pending);
        if !batch.is_empty() {
            save_batch(&pool, backend, batch).await;
        }
        if let Some(done) = close {
            rx.close();
            let _ = done.send(());
            return;
        }
    }
}

/// Saves a batch in one transaction and answers each publish; when that fails, saves each
/// publish in its own transaction so that only the one at fault fails.
async fn save_batch(pool: &AnyPool, backend: Backend, batch: Vec<Job>) {
    let result = save_together(pool, backend, &batch).await;
    if let Some(batch) = answer_or_split(batch, result) {
        for job in batch {
            let result = save_together(pool, backend, std::slice::from_ref(&job)).await;
            answer_one(job, result);
        }
    }
}

/// Answers every publish of a batch from its save's result, or hands the batch back when the
/// save failed with more than one publish in it, to be saved one by one.
fn answer_or_split(
    batch: Vec<Job>,
    result: Result<Vec<Vec<EventRecord>>, StoreError>,
) -> Option<Vec<Job>> {
    match result {
        Ok(saved) => {
            for (job, records) in batch.into_iter().zip(saved) {
                let _ = job.reply.send(Ok(records));
            }
            None
        }
        Err(e) if batch.len() == 1 => {
            if let Some(job) = batch.into_iter().next() {
                let _ = job.reply.send(Err(e));
            }
            None
        }
        Err(e) => {
            tracing::debug!(error = %e, "a batch of publishes failed: saving them one by one");
            Some(batch)
        }
    }
}

/// Answers one publish saved on its own.
fn answer_one(job: Job, result: Result<Vec<Vec<EventRecord>>, StoreError>) {
    let _ = job
        .reply
        .send(result.map(|mut saved| saved.pop().unwrap_or_default()));
}

async fn save_together(
    pool: &AnyPool,
    backend: Backend,
    batch: &[Job],
) -> Result<Vec<Vec<EventRecord>>, StoreError> {
    let created = now_unix();
    let rows = rows_of(batch);
    let mut tx = match backend {
        // Take the write lock at once: waiting for it honours busy_timeout, upgrading later
        // might not.
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => pool.begin().await?,
    };
    let mut ids = Vec::with_capacity(rows.len());
    for chunk in chunks(&rows) {
        let query = chunk.iter().fold(
            sqlx::query(sqlx::AssertSqlSafe(insert_sql(chunk.len()))),
            |q, (app, e)| {
                q.bind(*app)
                    .bind(&e.mid)
                    .bind(&e.channel)
                    .bind(&e.event)
                    .bind(&e.owner_id)
                    .bind(e.timestamp)
                    .bind(&e.data)
                    .bind(created)
            },
        );
        let returned = query
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| conflict_or(e, SAME_MID))?
            .iter()
            .map(|row| {
                Ok((
                    row.try_get("id")?,
                    row.try_get("app_id")?,
                    row.try_get("mid")?,
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        ids.extend(match_ids(returned, chunk)?);
    }
    let groups = groups_of(batch);
    let (sql, pairs) = associations(&ids, &groups);
    pairs
        .fold(sqlx::query(sqlx::AssertSqlSafe(sql)), |q, (id, group)| {
            q.bind(id).bind(group)
        })
        .bind(created)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(records(batch, ids, created))
}

const SAME_MID: &str = "an event with the same mid";

/// Every event of the batch with its app, in publish order, then slice order.
fn rows_of(batch: &[Job]) -> Vec<(&str, &NewEvent)> {
    batch
        .iter()
        .flat_map(|job| job.events.iter().map(|e| (job.app_id.as_str(), e)))
        .collect()
}

/// For each row of [`rows_of`], the index of its publish in the batch.
fn groups_of(batch: &[Job]) -> Vec<i64> {
    let mut groups = Vec::new();
    for (group, job) in batch.iter().enumerate() {
        groups.extend(std::iter::repeat_n(group as i64, job.events.len()));
    }
    groups
}

/// The saved records of each publish, from the ids of [`rows_of`]'s rows.
fn records(batch: &[Job], ids: Vec<i64>, created: i64) -> Vec<Vec<EventRecord>> {
    let mut ids = ids.into_iter();
    batch
        .iter()
        .map(|job| {
            job.events
                .iter()
                .zip(ids.by_ref())
                .map(|(event, id)| events::record(id, &job.app_id, event, created))
                .collect()
        })
        .collect()
}

/// The rows cut into statements of power-of-two sizes, at most [`MAX_ROWS_PER_INSERT`].
fn chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (chunk, tail) = rest.split_at(chunk_len(rest.len()));
        rest = tail;
        Some(chunk)
    })
}

/// The largest power of two, at most [`MAX_ROWS_PER_INSERT`], that fits in `n`.
fn chunk_len(n: usize) -> usize {
    let fits = 1 << (usize::BITS - 1 - n.leading_zeros());
    fits.min(MAX_ROWS_PER_INSERT)
}

/// `INSERT` of `n` events (8 parameters each: app, mid, channel, event, owner, timestamp,
/// data, created), returning each row's id, app and mid.
fn insert_sql(n: usize) -> String {
    let values = (0..n)
        .map(|r| {
            let p = r * 8;
            format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6,
                p + 7,
                p + 8
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO events (app_id, mid, channel, event, owner_id, timestamp, data, created) \
         VALUES {values} RETURNING id, app_id, mid"
    )
}

/// The ids of `rows` in row order, from what the insert returned. Both backends return rows
/// in the order given; this checks rather than trusts, matching by `(app_id, mid)` (unique
/// once the insert succeeded) when the order differs.
fn match_ids(
    returned: Vec<(i64, String, String)>,
    rows: &[(&str, &NewEvent)],
) -> Result<Vec<i64>, StoreError> {
    let in_order = returned.len() == rows.len()
        && returned
            .iter()
            .zip(rows)
            .all(|((_, app, mid), (a, e))| app == a && *mid == e.mid);
    if in_order {
        return Ok(returned.into_iter().map(|(id, _, _)| id).collect());
    }
    let by_key: HashMap<(String, String), i64> = returned
        .into_iter()
        .map(|(id, app, mid)| ((app, mid), id))
        .collect();
    rows.iter()
        .map(|(app, e)| {
            by_key
                .get(&((*app).to_owned(), e.mid.clone()))
                .copied()
                .ok_or_else(|| StoreError::Corrupt("an inserted event returned no id".into()))
        })
        .collect()
}

/// The statement associating users with saved events, for any number of publishes, and its
/// parameters but the last (the `created` time): `ids[i]` was saved by publish `groups[i]`, and
/// each user subscribed to any of a publish's channels is associated with the first (smallest
/// id) of that publish's events on one of their channels. The list is padded to a power of
/// two with id 0 (no event has it), so a connection prepares few distinct statements.
/// Parameters are numbered in the order they appear: SQLite gives `$N` its index by order of
/// appearance, not by `N`.
fn associations(ids: &[i64], groups: &[i64]) -> (String, impl Iterator<Item = (i64, i64)>) {
    let padded = ids.len().next_power_of_two();
    let values = (0..padded)
        .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let created = 2 * padded + 1;
    let sql = format!(
        "WITH saved (id, grp) AS (VALUES {values}) \
         INSERT INTO associations (app_id, user_id, mid, created) \
         SELECT e.app_id, f.user_id, e.mid, ${created} \
         FROM (SELECT s.user_id AS user_id, MIN(e.id) AS event_id \
               FROM saved \
               JOIN events e ON e.id = saved.id \
               JOIN subscriptions s ON s.app_id = e.app_id AND s.event = e.channel \
               GROUP BY saved.grp, s.user_id) f \
         JOIN events e ON e.id = f.event_id \
         ORDER BY f.event_id, f.user_id"
    );
    let pairs = ids
        .iter()
        .copied()
        .zip(groups.iter().copied())
        .chain(std::iter::repeat((0, -1)))
        .take(padded);
    (sql, pairs)
}

// SQLite file: a thread of its own ---------------------------------------------------------

fn open_sqlite(file: &str) -> Result<rusqlite::Connection, StoreError> {
    let unusable = |e: rusqlite::Error| StoreError::Unusable {
        file: file.to_owned(),
        reason: e.to_string(),
    };
    let conn = rusqlite::Connection::open(file).map_err(unusable)?;
    conn.execute_batch(SQLITE_PRAGMAS).map_err(unusable)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

fn run_sqlite(mut conn: rusqlite::Connection, mut rx: mpsc::Receiver<Message>) {
    let mut pending: Option<Message> = None;
    loop {
        let first = match pending.take() {
            Some(message) => message,
            None => match rx.blocking_recv() {
                Some(message) => message,
                None => return,
            },
        };
        let Next { batch, close } = next_batch(first, &mut rx, &mut pending);
        if !batch.is_empty() {
            save_batch_sqlite(&mut conn, batch);
        }
        if let Some(done) = close {
            rx.close();
            drop(conn);
            let _ = done.send(());
            return;
        }
    }
}

/// [`save_batch`] on the thread's connection.
fn save_batch_sqlite(conn: &mut rusqlite::Connection, batch: Vec<Job>) {
    let result = save_together_sqlite(conn, &batch);
    if let Some(batch) = answer_or_split(batch, result) {
        for job in batch {
            let result = save_together_sqlite(conn, std::slice::from_ref(&job));
            answer_one(job, result);
        }
    }
}

/// [`save_together`] with rusqlite: the same statements, prepared once per connection.
fn save_together_sqlite(
    conn: &mut rusqlite::Connection,
    batch: &[Job],
) -> Result<Vec<Vec<EventRecord>>, StoreError> {
    let created = now_unix();
    let rows = rows_of(batch);
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sqlite_error)?;
    let mut ids = Vec::with_capacity(rows.len());
    for chunk in chunks(&rows) {
        let mut statement = tx
            .prepare_cached(&insert_sql(chunk.len()))
            .map_err(sqlite_error)?;
        for (r, (app, e)) in chunk.iter().enumerate() {
            let values: [&dyn rusqlite::ToSql; 8] = [
                app,
                &e.mid,
                &e.channel,
                &e.event,
                &e.owner_id,
                &e.timestamp,
                &e.data,
                &created,
            ];
            for (i, value) in values.into_iter().enumerate() {
                statement
                    .raw_bind_parameter(r * 8 + i + 1, value)
                    .map_err(sqlite_error)?;
            }
        }
        let mut returned = Vec::with_capacity(chunk.len());
        let mut result = statement.raw_query();
        while let Some(row) = result.next().map_err(sqlite_error)? {
            returned.push((
                row.get(0).map_err(sqlite_error)?,
                row.get(1).map_err(sqlite_error)?,
                row.get(2).map_err(sqlite_error)?,
            ));
        }
        ids.extend(match_ids(returned, chunk)?);
    }
    let groups = groups_of(batch);
    let (sql, pairs) = associations(&ids, &groups);
    let mut statement = tx.prepare_cached(&sql).map_err(sqlite_error)?;
    let mut last = 0;
    for (i, (id, group)) in pairs.enumerate() {
        statement
            .raw_bind_parameter(2 * i + 1, id)
            .map_err(sqlite_error)?;
        statement
            .raw_bind_parameter(2 * i + 2, group)
            .map_err(sqlite_error)?;
        last = 2 * i + 2;
    }
    statement
        .raw_bind_parameter(last + 1, created)
        .map_err(sqlite_error)?;
    statement.raw_execute().map_err(sqlite_error)?;
    drop(statement);
    tx.commit().map_err(sqlite_error)?;
    Ok(records(batch, ids, created))
}

/// A unique-constraint violation is the one error a publish can cause itself.
fn sqlite_error(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            StoreError::Conflict(SAME_MID.to_owned())
        }
        _ => StoreError::Sqlite(e),
    }
}

#[cfg(test)]
mod tests {
    use super::chunk_len;

    #[test]
    fn chunks_are_powers_of_two_up_to_the_cap() {
        assert_eq!(chunk_len(1), 1);
        assert_eq!(chunk_len(3), 2);
        assert_eq!(chunk_len(8), 8);
        assert_eq!(chunk_len(13), 8);
        assert_eq!(chunk_len(64), 64);
        assert_eq!(chunk_len(255), 64);
    }
}
