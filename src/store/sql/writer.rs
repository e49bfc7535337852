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

use std::collections::HashMap;

use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

use super::{conflict_or, events};
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
    /// Starts the writer task on the current runtime.
    pub(super) fn start(pool: AnyPool, backend: Backend) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE_PUBLISHES);
        tokio::spawn(run(pool, backend, rx));
        Self { queue }
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
        let mut batch = Vec::new();
        let mut rows = 0;
        let mut close = None;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Close(done) => {
                    close = Some(done);
                    break;
                }
                Message::Save {
                    app_id,
                    events,
                    reply,
                } => {
                    if !batch.is_empty() && rows + events.len() > MAX_BATCH_EVENTS {
                        pending = Some(Message::Save {
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
    match result {
        Ok(saved) => {
            for (job, records) in batch.into_iter().zip(saved) {
                let _ = job.reply.send(Ok(records));
            }
        }
        Err(e) if batch.len() == 1 => {
            if let Some(job) = batch.into_iter().next() {
                let _ = job.reply.send(Err(e));
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "a batch of publishes failed: saving them one by one");
            for job in batch {
                let result = save_together(pool, backend, std::slice::from_ref(&job)).await;
                let _ = job
                    .reply
                    .send(result.map(|mut saved| saved.pop().unwrap_or_default()));
            }
        }
    }
}

async fn save_together(
    pool: &AnyPool,
    backend: Backend,
    batch: &[Job],
) -> Result<Vec<Vec<EventRecord>>, StoreError> {
    let created = now_unix();
    let rows: Vec<(&str, &NewEvent)> = batch
        .iter()
        .flat_map(|job| job.events.iter().map(|e| (job.app_id.as_str(), e)))
        .collect();
    let mut tx = match backend {
        // Take the write lock at once: waiting for it honours busy_timeout, upgrading later
        // might not.
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => pool.begin().await?,
    };
    let mut ids = Vec::with_capacity(rows.len());
    let mut rest = &rows[..];
    while !rest.is_empty() {
        let n = chunk_len(rest.len());
        let (chunk, tail) = rest.split_at(n);
        ids.extend(insert_rows(&mut tx, chunk, created).await?);
        rest = tail;
    }
    let mut groups = Vec::with_capacity(rows.len());
    for (group, job) in batch.iter().enumerate() {
        groups.extend(std::iter::repeat_n(group as i64, job.events.len()));
    }
    events::associate_groups(&mut tx, &ids, &groups, created).await?;
    tx.commit().await?;

    let mut ids = ids.into_iter();
    Ok(batch
        .iter()
        .map(|job| {
            job.events
                .iter()
                .zip(ids.by_ref())
                .map(|(event, id)| events::record(id, &job.app_id, event, created))
                .collect()
        })
        .collect())
}

/// The largest power of two, at most [`MAX_ROWS_PER_INSERT`], that fits in `n`.
fn chunk_len(n: usize) -> usize {
    let fits = 1 << (usize::BITS - 1 - n.leading_zeros());
    fits.min(MAX_ROWS_PER_INSERT)
}

/// Inserts rows with one statement and returns their ids in row order. The ids are matched
/// by `(app_id, mid)`, which is unique once the statement succeeded, so nothing depends on
/// the order a backend returns rows in.
async fn insert_rows(
    conn: &mut AnyConnection,
    rows: &[(&str, &NewEvent)],
    created: i64,
) -> Result<Vec<i64>, StoreError> {
    let values = (0..rows.len())
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
    let sql = format!(
        "INSERT INTO events (app_id, mid, channel, event, owner_id, timestamp, data, created) \
         VALUES {values} RETURNING id, app_id, mid"
    );
    let query = rows
        .iter()
        .fold(sqlx::query(sqlx::AssertSqlSafe(sql)), |q, (app, e)| {
            q.bind(*app)
                .bind(&e.mid)
                .bind(&e.channel)
                .bind(&e.event)
                .bind(&e.owner_id)
                .bind(e.timestamp)
                .bind(&e.data)
                .bind(created)
        });
    let returned = query
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| conflict_or(e, "an event with the same mid"))?;
    // Both backends return the rows in the order they were given; check rather than trust.
    let mut in_order = returned.len() == rows.len();
    let mut ids = Vec::with_capacity(rows.len());
    for (row, (app, event)) in returned.iter().zip(rows) {
        let id: i64 = row.try_get("id")?;
        let same: bool = row.try_get::<&str, _>("app_id")? == *app
            && row.try_get::<&str, _>("mid")? == event.mid;
        in_order &= same;
        ids.push(id);
    }
    if in_order {
        return Ok(ids);
    }
    let mut by_key = HashMap::with_capacity(returned.len());
    for row in &returned {
        let app: String = row.try_get("app_id")?;
        let mid: String = row.try_get("mid")?;
        by_key.insert((app, mid), row.try_get::<i64, _>("id")?);
    }
    rows.iter()
        .map(|(app, e)| {
            by_key
                .get(&((*app).to_owned(), e.mid.clone()))
                .copied()
                .ok_or_else(|| StoreError::Corrupt("an inserted event returned no id".into()))
        })
        .collect()
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
