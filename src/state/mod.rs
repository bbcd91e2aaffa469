//! Durable state in one SQLite file under data_dir: the tracker's alerts, the notification log, silences, acks,
//! maintenance state and the outbox; written once per runner step in one transaction, read back at start-up.
//!
//! The file is opened in WAL mode with `synchronous=FULL` (a committed step survives a power cut) and foreign keys
//! on; its schema version lives in `PRAGMA user_version`. Each table keeps its keys and times as SQL columns and the
//! rest of the record as JSON text in `body` (the body is authoritative; the other columns are for keys, ordering
//! and queries by hand). In the JSON, times are milliseconds since the epoch, fingerprints 16 hex digits, labels an
//! object, severities `"P0"`..`"P3"`, and sample values strings (`"0.25"`, `"NaN"`, `"+Inf"`, `"-Inf"`,
//! `"StaleNaN"`) so every f64 comes back bit for bit.
//!
//! A message's body is stored once in `messages`; `outbox` holds one row per (message, channel) with its delivery
//! state, and doubles as the delivery history until [`StateDb::prune_delivered`] drops it. A row is pending until it
//! is `delivered_at` or, when its delivery gave up, `failed_at`: a given-up delivery is history, never sent again.
//!
//! Cost of a step: one transaction, one WAL append and one fsync. Checkpoints (copying the WAL into the database
//! file) run on a thread of their own with its own connection; for large steps the JSON is encoded on a second
//! thread while this one inserts (see `step::encode_rows`). A 100k-row step takes a fraction of a second.
//!
//! The module by concern: `schema` (the tables, the schema version and the migrations from older versions),
//! `records` (the JSON bodies of the rows and their conversions to and from the in-memory types), `step` (reading
//! everything back, and writing one step in one transaction), `checkpoint` (the background checkpointer).

mod checkpoint;
mod history;
mod records;
mod schema;
mod step;
#[cfg(test)]
mod tests;

pub use history::{AlertSpan, DeliveryProblem, HISTORY};
pub(crate) use records::shared as shared_records;
pub use schema::SCHEMA_VERSION;

use crate::model::{Alert, Fingerprint, Severity, Timestamp};
use crate::pipeline::{Ack, GroupChanges, GroupState, Message, Silence};
use checkpoint::{BACKSTOP_CHECKPOINT_PAGES, CHECKPOINT_ROWS, Checkpointer, DEFAULT_CHECKPOINT_PAGES};
use records::{AckRecord, SilenceRecord, attempts, decode, to_json};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state {}: {error}", path.display())]
    Sqlite { path: PathBuf, error: rusqlite::Error },
    #[error("state {}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error(
        "state {}: schema version {found} is newer than this zkalert supports ({supported}); \
         run a newer zkalert or move the file away",
        path.display()
    )]
    TooNew { path: PathBuf, found: i64, supported: i64 },
    #[error("state {}: not a zkalert state file ({reason})", path.display())]
    Foreign { path: PathBuf, reason: String },
    /// A record that cannot be written as JSON (not expected: the records hold strings and numbers).
    #[error("state {}: cannot encode a record: {reason}", path.display())]
    Encode { path: PathBuf, reason: String },
    /// A stored row that cannot be read back.
    #[error("state {}: table {table}, row {key}: {reason}", path.display())]
    Decode { path: PathBuf, table: &'static str, key: String, reason: String },
}

/// Everything read back at start-up.
#[derive(Debug, Default)]
pub struct Persisted {
    /// Tracker alerts by rule name (the rule's `name` string) — pending, firing, resolved. In no particular order.
    pub alerts: Vec<(String, Alert)>,
    /// The notification log (includes each group's current ack). In no particular order.
    pub groups: Vec<GroupState>,
    pub silences: Vec<Silence>,
    /// Deliveries written and neither delivered nor given up, oldest first.
    pub pending: Vec<OutboxEntry>,
    /// Open maintenance windows recorded: (name, opened_at, closes_at).
    pub maintenance: Vec<(String, Timestamp, Timestamp)>,
    /// Each cluster's leader as last recorded: (cluster, leader).
    pub leaders: Vec<(String, Option<String>)>,
}

/// One delivery still to make: a message to one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub message: Message,
    pub channel: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The message's time (`message.at`).
    pub created_at: Timestamp,
}

/// The rule an alert row is kept under: a rule's key, or one of zkalert's
/// own (`zkalert/external`, …), which needs no copy per row.
pub type RuleKey = std::borrow::Cow<'static, str>;

/// What one runner step changed, written in one transaction.
#[derive(Debug, Default)]
pub struct StepWrite {
    /// Key: (rule, fingerprint). Shared with the runner: a posted alert is
    /// not copied to be written.
    pub alerts_upsert: Vec<(RuleKey, Arc<Alert>)>,
    pub alerts_delete: Vec<(RuleKey, Fingerprint)>,
    pub groups: GroupChanges,
    /// New messages: one outbox row per (message.id, channel) for each of message.channels.
    pub outbox: Vec<Arc<Message>>,
    /// When Some, replaces the recorded open maintenance windows.
    pub maintenance: Option<Vec<(String, Timestamp, Timestamp)>>,
    /// Attempts and outcomes of deliveries, applied after the outbox rows are written (so a delivery made before
    /// its row could be written is recorded with it).
    pub deliveries: Vec<DeliveryMark>,
    /// Changes of each cluster's leader, for the report's elections.
    pub leaders: Vec<LeaderChange>,
    /// When the step was: a deleted alert's open history span ends then.
    pub at: Timestamp,
}

/// A cluster's leader changed: to `leader`, or to none (no node, or more than one, reports `leader`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderChange {
    pub cluster: String,
    pub at: Timestamp,
    pub leader: Option<String>,
}

/// What happened to one pending delivery since it was last written.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryMark {
    pub message_id: String,
    pub channel: String,
    /// Attempts made: failed ones, plus the successful one if delivered.
    pub attempts: u32,
    pub last_attempt_at: Timestamp,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
    pub outcome: DeliveryOutcome,
}

/// Where a delivery stands after the attempts of a [`DeliveryMark`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Failed; it will be retried.
    Retrying,
    Delivered,
    /// Failed for good (deadline passed, or an error retrying cannot fix): never sent again.
    GaveUp,
}

impl DeliveryMark {
    /// Folds a later mark of the same delivery into this one.
    pub fn merge(&mut self, later: DeliveryMark) {
        self.attempts = self.attempts.saturating_add(later.attempts);
        self.last_attempt_at = later.last_attempt_at;
        self.last_error = later.last_error.or(self.last_error.take());
        self.outcome = later.outcome;
    }
}

impl StepWrite {
    /// True if committing this would change nothing.
    pub fn is_empty(&self) -> bool {
        self.alerts_upsert.is_empty()
            && self.alerts_delete.is_empty()
            && self.groups.upserted.is_empty()
            && self.groups.removed.is_empty()
            && self.outbox.is_empty()
            && self.maintenance.is_none()
            && self.deliveries.is_empty()
            && self.leaders.is_empty()
    }

    /// Rows this writes, about.
    fn rows(&self) -> usize {
        self.alerts_upsert.len()
            + self.alerts_delete.len()
            + self.groups.upserted.len()
            + self.groups.removed.len()
            + self.outbox.iter().map(|m| 1 + m.channels.len()).sum::<usize>()
            + self.maintenance.as_ref().map_or(0, |m| 1 + m.len())
            + self.deliveries.len()
            + self.leaders.len()
    }
}

/// One (message, channel) delivery, pending or done, for the history.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    pub message_id: String,
    pub channel: String,
    pub group_id: String,
    pub tier: Severity,
    pub created_at: Timestamp,
    /// Attempts recorded: failures plus the successful one, if delivered.
    pub attempts: u32,
    pub delivered_at: Option<Timestamp>,
    /// When the delivery gave up (it is not sent again).
    pub failed_at: Option<Timestamp>,
    /// The error of the last failed attempt (kept after a later success).
    pub last_error: Option<String>,
    pub escalation: bool,
}

/// The open state file.
#[derive(Debug)]
pub struct StateDb {
    conn: Connection,
    path: PathBuf,
    checkpointer: Option<Checkpointer>,
    /// Rows written since the last checkpoint request.
    unchecked_rows: usize,
}

impl StateDb {
    /// Opens (creating it and its parent directory if needed) the state file at `path`.
    pub fn open(path: &Path) -> Result<StateDb, StateError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|error| StateError::Io { path: path.to_path_buf(), error })?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(|e| Fail::Sql(e).at(path))?;
        schema::init(&mut conn).map_err(|f| f.at(path))?;
        let checkpointer = Checkpointer::start(path);
        let autocheckpoint = if checkpointer.is_some() { BACKSTOP_CHECKPOINT_PAGES } else { DEFAULT_CHECKPOINT_PAGES };
        conn.pragma_update(None, "wal_autocheckpoint", autocheckpoint).map_err(|e| Fail::Sql(e).at(path))?;
        Ok(StateDb { conn, path: path.to_path_buf(), checkpointer, unchecked_rows: 0 })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads everything back (one consistent snapshot).
    pub fn load(&self) -> Result<Persisted, StateError> {
        step::load(&self.conn).map_err(|f| f.at(&self.path))
    }

    /// Writes one step in one transaction; a no-op `StepWrite` writes nothing.
    pub fn commit(&mut self, w: &StepWrite) -> Result<(), StateError> {
        if w.is_empty() {
            return Ok(());
        }
        step::commit(&mut self.conn, w).map_err(|f| f.at(&self.path))?;
        self.wrote(w.rows());
        Ok(())
    }

    /// Writes the schema version again in a transaction of its own: whether the file takes writes (after a failed
    /// one, when there is nothing else to write).
    pub fn check_writable(&mut self) -> Result<(), StateError> {
        let run = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            tx.commit()
        };
        run(&mut self.conn).map_err(|e| Fail::Sql(e).at(&self.path))
    }

    /// The secret ack links and console sessions are signed with: made on
    /// first use and kept, so links in messages outlive a restart.
    pub fn server_secret(&mut self) -> Result<crate::capability::Secret, StateError> {
        const NAME: &str = "link_key";
        let read = |conn: &Connection| -> rusqlite::Result<Option<Vec<u8>>> {
            conn.query_row("SELECT value FROM secrets WHERE name = ?1", [NAME], |r| r.get(0)).optional()
        };
        let stored = read(&self.conn).map_err(|e| Fail::Sql(e).at(&self.path))?;
        if let Some(bytes) = stored.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
            return Ok(crate::capability::Secret::from_bytes(bytes));
        }
        let fresh =
            crate::capability::Secret::generate().map_err(|error| StateError::Io { path: self.path.clone(), error })?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO secrets (name, value) VALUES (?1, ?2)",
                params![NAME, fresh.as_bytes().as_slice()],
            )
            .map_err(|e| Fail::Sql(e).at(&self.path))?;
        Ok(fresh)
    }

    /// Counts rows written and asks for a background checkpoint every [`CHECKPOINT_ROWS`] of them.
    fn wrote(&mut self, rows: usize) {
        self.unchecked_rows += rows;
        if self.unchecked_rows >= CHECKPOINT_ROWS {
            self.unchecked_rows = 0;
            if let Some(c) = &self.checkpointer {
                c.poke();
            }
        }
    }

    /// Marks a delivery done (counting the attempt); a delivery already done keeps its first time.
    pub fn mark_delivered(&mut self, message_id: &str, channel: &str, at: Timestamp) -> Result<(), StateError> {
        let done = [(message_id.to_string(), channel.to_string())];
        self.mark_delivered_many(&done, at)
    }

    /// Records a failed attempt (attempts += 1, last_error); `gave_up`: the delivery is over (`failed_at`).
    pub fn mark_failed(
        &mut self,
        message_id: &str,
        channel: &str,
        at: Timestamp,
        error: &str,
        gave_up: bool,
    ) -> Result<(), StateError> {
        let outcome = if gave_up { DeliveryOutcome::GaveUp } else { DeliveryOutcome::Retrying };
        let mark = DeliveryMark {
            message_id: message_id.to_string(),
            channel: channel.to_string(),
            attempts: 1,
            last_attempt_at: at,
            last_error: Some(error.to_string()),
            outcome,
        };
        self.commit(&StepWrite { deliveries: vec![mark], ..StepWrite::default() })
    }

    /// Batch form of mark_delivered in one transaction.
    pub fn mark_delivered_many(&mut self, done: &[(String, String)], at: Timestamp) -> Result<(), StateError> {
        let deliveries = done
            .iter()
            .map(|(id, channel)| DeliveryMark {
                message_id: id.clone(),
                channel: channel.clone(),
                attempts: 1,
                last_attempt_at: at,
                last_error: None,
                outcome: DeliveryOutcome::Delivered,
            })
            .collect();
        self.commit(&StepWrite { deliveries, ..StepWrite::default() })
    }

    /// Inserts a silence, or replaces the one with its id.
    pub fn put_silence(&mut self, s: &Silence) -> Result<(), StateError> {
        let body = to_json(&SilenceRecord::from_silence(s)).map_err(|f| f.at(&self.path))?;
        self.conn
            .prepare_cached(
                "INSERT INTO silences (id, starts_at, ends_at, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET starts_at = excluded.starts_at, ends_at = excluded.ends_at,
                 body = excluded.body",
            )
            .and_then(|mut st| st.execute(params![s.id, s.starts_at.as_millis(), s.ends_at.as_millis(), body]))
            .map_err(|e| Fail::Sql(e).at(&self.path))?;
        self.wrote(1);
        Ok(())
    }

    pub fn delete_silence(&mut self, id: &str) -> Result<(), StateError> {
        self.conn
            .prepare_cached("DELETE FROM silences WHERE id = ?1")
            .and_then(|mut st| st.execute([id]))
            .map_err(|e| Fail::Sql(e).at(&self.path))?;
        self.wrote(1);
        Ok(())
    }

    /// Appends to the ack history and sets the group's current ack in its log row if the row exists.
    /// (`group.ack` is expected to be Some; None clears the row's ack and appends nothing.)
    pub fn record_ack(&mut self, group: &GroupState) -> Result<(), StateError> {
        let id = group.key.id();
        let ack = group.ack.as_ref().map(AckRecord::from_ack);
        let ack_json = to_json(&ack).map_err(|f| f.at(&self.path))?;
        let run =
            |conn: &mut Connection| -> rusqlite::Result<()> {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                if let Some(a) = &group.ack {
                    tx.prepare_cached("INSERT INTO acks (group_id, at, body) VALUES (?1, ?2, ?3)")?
                        .execute(params![id, a.at.as_millis(), ack_json])?;
                    // The alerts the on-call saw firing in the group are the ones acknowledged (the report's
                    // "acked by"); the first ack of a span is the one that counts.
                    let mut history = tx.prepare_cached(
                        "UPDATE alert_history SET acked_at = ?2, acked_by = ?3
                         WHERE fingerprint = ?1 AND resolved_at IS NULL AND acked_at IS NULL",
                    )?;
                    for fp in &group.notified_firing {
                        history.execute(params![fp.to_string(), a.at.as_millis(), a.by])?;
                    }
                }
                tx.prepare_cached("UPDATE groups SET body = json_set(body, '$.ack', json(?2)) WHERE id = ?1")?
                    .execute(params![id, ack_json])?;
                tx.commit()
            };
        run(&mut self.conn).map_err(|e| Fail::Sql(e).at(&self.path))?;
        self.wrote(2);
        Ok(())
    }

    /// The latest acks, newest first: (group id, ack).
    pub fn ack_history(&self, limit: usize) -> Result<Vec<(String, Ack)>, StateError> {
        let run = || -> Result<Vec<(String, Ack)>, Fail> {
            let mut st = self.conn.prepare_cached("SELECT seq, group_id, body FROM acks ORDER BY seq DESC LIMIT ?1")?;
            let mut rows = st.query([sql_limit(limit)])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let seq: i64 = row.get(0)?;
                let group_id: String = row.get(1)?;
                let body: String = row.get(2)?;
                let rec: AckRecord = decode("acks", || seq.to_string(), &body)?;
                out.push((group_id, rec.into_ack()));
            }
            Ok(out)
        };
        run().map_err(|f| f.at(&self.path))
    }

    /// Deliveries not yet done.
    pub fn pending_count(&self) -> Result<usize, StateError> {
        self.conn
            .prepare_cached("SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND failed_at IS NULL")
            .and_then(|mut st| st.query_row([], |r| r.get::<_, i64>(0)))
            .map(|n| usize::try_from(n).unwrap_or(0))
            .map_err(|e| Fail::Sql(e).at(&self.path))
    }

    /// The latest deliveries, pending and done, newest first.
    pub fn deliveries(&self, limit: usize) -> Result<Vec<DeliveryRecord>, StateError> {
        let run = || -> Result<Vec<DeliveryRecord>, Fail> {
            let mut st = self.conn.prepare_cached(
                "SELECT m.id, o.channel, m.group_id, m.tier, o.created_at, o.attempts, o.delivered_at,
                        o.last_error, m.escalation, o.failed_at
                 FROM outbox o JOIN messages m ON m.seq = o.message
                 ORDER BY o.seq DESC LIMIT ?1",
            )?;
            let mut rows = st.query([sql_limit(limit)])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let message_id: String = row.get(0)?;
                let channel: String = row.get(1)?;
                let key = || format!("{message_id}/{channel}");
                let tier: String = row.get(3)?;
                let tier = tier.parse().map_err(|e: crate::model::SeverityError| Fail::decode("messages", key(), e))?;
                let attempts = attempts("outbox", key, row.get(5)?)?;
                out.push(DeliveryRecord {
                    group_id: row.get(2)?,
                    tier,
                    created_at: Timestamp::from_millis(row.get(4)?),
                    attempts,
                    delivered_at: row.get::<_, Option<i64>>(6)?.map(Timestamp::from_millis),
                    last_error: row.get(7)?,
                    escalation: row.get(8)?,
                    failed_at: row.get::<_, Option<i64>>(9)?.map(Timestamp::from_millis),
                    message_id,
                    channel,
                });
            }
            Ok(out)
        };
        run().map_err(|f| f.at(&self.path))
    }

    /// Deletes outbox rows delivered or given up before `before` (history retention), and the messages left without
    /// any row. Returns how many outbox rows went.
    pub fn prune_delivered(&mut self, before: Timestamp) -> Result<usize, StateError> {
        let run = |conn: &mut Connection| -> rusqlite::Result<usize> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut ids = HashSet::new();
            let mut n = 0;
            {
                let mut st = tx.prepare_cached(
                    "DELETE FROM outbox WHERE coalesce(delivered_at, failed_at) < ?1 RETURNING message",
                )?;
                let mut rows = st.query([before.as_millis()])?;
                while let Some(row) = rows.next()? {
                    ids.insert(row.get::<_, i64>(0)?);
                    n += 1;
                }
                let mut st = tx.prepare_cached(
                    "DELETE FROM messages WHERE seq = ?1 AND NOT EXISTS (SELECT 1 FROM outbox WHERE message = ?1)",
                )?;
                for id in &ids {
                    st.execute([id])?;
                }
            }
            tx.commit()?;
            Ok(n)
        };
        let n = run(&mut self.conn).map_err(|e| Fail::Sql(e).at(&self.path))?;
        self.wrote(n);
        Ok(n)
    }
}

/// An error before the path is attached.
#[derive(Debug)]
pub(super) enum Fail {
    Sql(rusqlite::Error),
    TooNew(i64),
    Foreign(String),
    Encode(String),
    Decode { table: &'static str, key: String, reason: String },
}

impl Fail {
    pub(super) fn decode(table: &'static str, key: String, reason: impl fmt::Display) -> Fail {
        Fail::Decode { table, key, reason: reason.to_string() }
    }

    pub(super) fn at(self, path: &Path) -> StateError {
        let path = path.to_path_buf();
        match self {
            Fail::Sql(error) => StateError::Sqlite { path, error },
            Fail::TooNew(found) => StateError::TooNew { path, found, supported: SCHEMA_VERSION },
            Fail::Foreign(reason) => StateError::Foreign { path, reason },
            Fail::Encode(reason) => StateError::Encode { path, reason },
            Fail::Decode { table, key, reason } => StateError::Decode { path, table, key, reason },
        }
    }
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Sql(e)
    }
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
