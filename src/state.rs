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
//! thread while this one inserts (see `encode_rows`). A 100k-row step takes a fraction of a second.

use crate::model::{Alert, AlertState, Fingerprint, Labels, STALE_NAN, Severity, Timestamp, is_stale};
use crate::pipeline::{Ack, GroupChanges, GroupKey, GroupState, MatchOp, Matcher, Matchers, Message, Reason, Silence};
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::Duration;

/// The schema version this code reads and writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 2;

/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page size of a new file.
const PAGE_SIZE: i64 = 16 * 1024;
/// Page cache per connection (negative: KiB).
const CACHE_KIB: i64 = -16 * 1024;
/// The writer checkpoints itself once the WAL holds this many pages: SQLite's default without the background
/// checkpointer, a backstop with it (256 MiB of 16 KiB pages).
const DEFAULT_CHECKPOINT_PAGES: i64 = 1000;
const BACKSTOP_CHECKPOINT_PAGES: i64 = 16 * 1024;
/// Rows written between background checkpoints (a few MiB of WAL at most).
const CHECKPOINT_ROWS: usize = 1000;

const SCHEMA: &str = r#"
CREATE TABLE alerts (
    rule        TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state       TEXT NOT NULL,
    active_at   INTEGER NOT NULL,
    body        TEXT NOT NULL,
    PRIMARY KEY (rule, fingerprint)
) STRICT;
CREATE TABLE groups (
    id         TEXT NOT NULL PRIMARY KEY,
    next_flush INTEGER NOT NULL,
    body       TEXT NOT NULL
) STRICT;
CREATE TABLE acks (
    seq      INTEGER PRIMARY KEY,
    group_id TEXT NOT NULL,
    at       INTEGER NOT NULL,
    body     TEXT NOT NULL
) STRICT;
CREATE TABLE silences (
    id        TEXT NOT NULL PRIMARY KEY,
    starts_at INTEGER NOT NULL,
    ends_at   INTEGER NOT NULL,
    body      TEXT NOT NULL
) STRICT;
CREATE TABLE maintenance (
    seq       INTEGER PRIMARY KEY,
    name      TEXT NOT NULL,
    opened_at INTEGER NOT NULL,
    closes_at INTEGER NOT NULL
) STRICT;
CREATE TABLE messages (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    at         INTEGER NOT NULL,
    group_id   TEXT NOT NULL,
    tier       TEXT NOT NULL,
    escalation INTEGER NOT NULL,
    digest     INTEGER NOT NULL,
    body       TEXT NOT NULL
) STRICT;
CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY,
    message         INTEGER NOT NULL REFERENCES messages (seq),
    channel         TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_attempt_at INTEGER,
    last_error      TEXT,
    delivered_at    INTEGER,
    failed_at       INTEGER,
    UNIQUE (message, channel)
) STRICT;
CREATE INDEX outbox_pending ON outbox (seq) WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX outbox_delivered ON outbox (delivered_at) WHERE delivered_at IS NOT NULL;
"#;

/// Version 1 → 2: a delivery that gave up is `failed_at`, no longer pending.
const MIGRATE_1_TO_2: &str = r#"
ALTER TABLE outbox ADD COLUMN failed_at INTEGER;
DROP INDEX outbox_pending;
CREATE INDEX outbox_pending ON outbox (seq) WHERE delivered_at IS NULL AND failed_at IS NULL;
"#;

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

/// What one runner step changed, written in one transaction.
#[derive(Debug, Default)]
pub struct StepWrite {
    /// Key: (rule, fingerprint).
    pub alerts_upsert: Vec<(String, Alert)>,
    pub alerts_delete: Vec<(String, Fingerprint)>,
    pub groups: GroupChanges,
    /// New messages: one outbox row per (message.id, channel) for each of message.channels.
    pub outbox: Vec<Arc<Message>>,
    /// When Some, replaces the recorded open maintenance windows.
    pub maintenance: Option<Vec<(String, Timestamp, Timestamp)>>,
    /// Attempts and outcomes of deliveries, applied after the outbox rows are written (so a delivery made before
    /// its row could be written is recorded with it).
    pub deliveries: Vec<DeliveryMark>,
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
        init(&mut conn).map_err(|f| f.at(path))?;
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
        load(&self.conn).map_err(|f| f.at(&self.path))
    }

    /// Writes one step in one transaction; a no-op `StepWrite` writes nothing.
    pub fn commit(&mut self, w: &StepWrite) -> Result<(), StateError> {
        if w.is_empty() {
            return Ok(());
        }
        commit(&mut self.conn, w).map_err(|f| f.at(&self.path))?;
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

// ---------------------------------------------------------------------------------------------------------------
// Opening, loading, committing.

/// An error before the path is attached.
#[derive(Debug)]
enum Fail {
    Sql(rusqlite::Error),
    TooNew(i64),
    Foreign(String),
    Encode(String),
    Decode { table: &'static str, key: String, reason: String },
}

impl Fail {
    fn decode(table: &'static str, key: String, reason: impl fmt::Display) -> Fail {
        Fail::Decode { table, key, reason: reason.to_string() }
    }

    fn at(self, path: &Path) -> StateError {
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

fn init(conn: &mut Connection) -> Result<(), Fail> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Read before changing anything, so a file from a newer zkalert is left as it is.
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Fail::TooNew(version));
    }
    if version == 0 {
        foreign_check(conn)?;
    }
    // Takes effect only on a new file (before WAL mode writes its header): fewer, larger pages make large steps
    // cheaper and keep message bodies of a few alerts on one page.
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(mode, "state file: WAL journal mode unavailable on this filesystem");
    }
    pragmas(conn)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", CACHE_KIB)?;
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Again under the write lock: another process may have created the schema meanwhile.
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Fail::TooNew(version));
    }
    if version == 0 {
        foreign_check(&tx)?;
        tx.execute_batch(SCHEMA)?;
    }
    if version == 1 {
        tx.execute_batch(MIGRATE_1_TO_2)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// A file without a schema version must be empty: it is not ours to add tables to.
fn foreign_check(conn: &Connection) -> Result<(), Fail> {
    let objects: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
    if objects > 0 {
        return Err(Fail::Foreign(format!("schema version 0 but {objects} tables or indexes already")));
    }
    Ok(())
}

/// The settings every connection to the file has (the checkpointer's too: a checkpoint syncs as its connection's
/// `synchronous` says).
fn pragmas(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // After a large step, the WAL is cut back to this size when it restarts.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
}

/// Copies committed WAL frames into the database file on its own thread and connection, so that a step's commit
/// pays for appending to the WAL and one fsync, not for the checkpoint. The writer's own automatic checkpoint stays
/// on at a high mark, as a backstop should this thread fall behind or fail.
#[derive(Debug)]
struct Checkpointer {
    wake: Option<mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Option<Checkpointer> {
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .and_then(|conn| pragmas(&conn).map(|()| conn));
        let conn = match conn {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "state file: no background checkpoints");
                return None;
            }
        };
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let thread_path = path.to_path_buf();
        let thread = std::thread::Builder::new().name("zkalert-state-checkpoint".into()).spawn(move || {
            while woken.recv().is_ok() {
                let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                if let Err(error) = done {
                    tracing::warn!(path = %thread_path.display(), %error, "state file: checkpoint failed");
                }
            }
        });
        match thread {
            Ok(thread) => Some(Checkpointer { wake: Some(wake), thread: Some(thread) }),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "state file: no background checkpoints");
                None
            }
        }
    }

    /// Asks for a checkpoint soon (one pending request covers any number of commits).
    fn poke(&self) {
        if let Some(wake) = &self.wake {
            let _ = wake.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.wake = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Alerts and groups come in table order (a full scan; sorting would cost more than the decoding), pending
/// deliveries oldest first, silences by start.
fn load(conn: &Connection) -> Result<Persisted, Fail> {
    let tx = conn.unchecked_transaction()?;
    let mut out = Persisted::default();

    let mut st = tx.prepare("SELECT rule, fingerprint, body FROM alerts")?;
    let mut rows = st.query([])?;
    while let Some(row) = rows.next()? {
        let rule: String = row.get(0)?;
        let fp: String = row.get(1)?;
        let body: String = row.get(2)?;
        let key = || format!("{rule}/{fp}");
        let alert = decode::<AlertRecord>("alerts", key, &body)?.into_alert();
        if alert.fingerprint.to_string() != fp {
            return Err(Fail::decode("alerts", key(), format!("body has fingerprint {}", alert.fingerprint)));
        }
        out.alerts.push((rule, alert));
    }
    drop(rows);
    drop(st);

    let mut st = tx.prepare("SELECT id, body FROM groups")?;
    let mut rows = st.query([])?;
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let body: String = row.get(1)?;
        let group = decode::<GroupRecord>("groups", || id.clone(), &body)?.into_group();
        let key_id = group.key.id();
        if key_id != id {
            return Err(Fail::decode("groups", id, format!("body's key has id {key_id}")));
        }
        out.groups.push(group);
    }
    drop(rows);
    drop(st);

    let mut st = tx.prepare("SELECT id, body FROM silences ORDER BY starts_at, id")?;
    let mut rows = st.query([])?;
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let body: String = row.get(1)?;
        let rec = decode::<SilenceRecord>("silences", || id.clone(), &body)?;
        let silence = rec.into_silence(id.clone()).map_err(|reason| Fail::decode("silences", id, reason))?;
        out.silences.push(silence);
    }
    drop(rows);
    drop(st);

    let mut st = tx.prepare(
        "SELECT m.id, o.channel, o.attempts, o.created_at, m.body
         FROM outbox o JOIN messages m ON m.seq = o.message
         WHERE o.delivered_at IS NULL AND o.failed_at IS NULL ORDER BY o.seq",
    )?;
    let mut rows = st.query([])?;
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let channel: String = row.get(1)?;
        let attempts = attempts("outbox", || format!("{id}/{channel}"), row.get(2)?)?;
        let created_at = Timestamp::from_millis(row.get(3)?);
        // A message's rows are adjacent unless some channels were delivered: decode its body once.
        let message = match out.pending.last() {
            Some(prev) if prev.message.id == id => prev.message.clone(),
            _ => {
                let body: String = row.get(4)?;
                decode::<MessageRecord>("messages", || id.clone(), &body)?.into_message(id)
            }
        };
        out.pending.push(OutboxEntry { message, channel, attempts, created_at });
    }
    drop(rows);
    drop(st);

    let mut st = tx.prepare("SELECT name, opened_at, closes_at FROM maintenance ORDER BY seq")?;
    let mut rows = st.query([])?;
    while let Some(row) = rows.next()? {
        out.maintenance.push((row.get(0)?, Timestamp::from_millis(row.get(1)?), Timestamp::from_millis(row.get(2)?)));
    }
    drop(rows);
    drop(st);

    tx.commit()?;
    Ok(out)
}

fn commit(conn: &mut Connection, w: &StepWrite) -> Result<(), Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Deletions first: a key both deleted and upserted in one step ends up present.
    if !w.alerts_delete.is_empty() {
        let mut st = tx.prepare_cached("DELETE FROM alerts WHERE rule = ?1 AND fingerprint = ?2")?;
        for (rule, fp) in &w.alerts_delete {
            st.execute(params![rule, fp.to_string()])?;
        }
    }
    if !w.alerts_upsert.is_empty() {
        let mut st = tx.prepare_cached(
            "INSERT INTO alerts (rule, fingerprint, state, active_at, body) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (rule, fingerprint) DO UPDATE SET state = excluded.state, active_at = excluded.active_at,
             body = excluded.body",
        )?;
        encode_rows(
            &w.alerts_upsert,
            |(_, a), buf| {
                write_json(buf, &AlertRecord::from_alert(a))?;
                Ok(a.fingerprint.to_string())
            },
            |(rule, a), fp, body| {
                st.execute(params![rule, fp, a.state.as_str(), a.active_at.as_millis(), body])?;
                Ok(())
            },
        )?;
    }
    if !w.groups.removed.is_empty() {
        let mut st = tx.prepare_cached("DELETE FROM groups WHERE id = ?1")?;
        for id in &w.groups.removed {
            st.execute([id])?;
        }
    }
    if !w.groups.upserted.is_empty() {
        let mut st = tx.prepare_cached(
            "INSERT INTO groups (id, next_flush, body) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET next_flush = excluded.next_flush, body = excluded.body",
        )?;
        encode_rows(
            &w.groups.upserted,
            |g, buf| {
                write_json(buf, &GroupRecord::from_group(g))?;
                Ok(g.key.id())
            },
            |g, id, body| {
                st.execute(params![id, g.next_flush.as_millis(), body])?;
                Ok(())
            },
        )?;
    }
    if !w.outbox.is_empty() {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO messages (id, at, group_id, tier, escalation, digest, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut find = tx.prepare_cached("SELECT seq FROM messages WHERE id = ?1")?;
        let mut delivery =
            tx.prepare_cached("INSERT OR IGNORE INTO outbox (message, channel, created_at) VALUES (?1, ?2, ?3)")?;
        encode_rows(
            &w.outbox,
            |m, buf| {
                if !m.channels.is_empty() {
                    write_json(buf, &MessageRecord::from_message(m))?;
                }
                Ok(String::new())
            },
            |m, _, body| {
                if m.channels.is_empty() {
                    return Ok(());
                }
                let at = m.at.as_millis();
                let inserted =
                    insert.execute(params![m.id, at, m.group_id, m.tier.as_str(), m.escalation, m.digest, body])?;
                let seq: i64 = if inserted == 1 {
                    tx.last_insert_rowid()
                } else {
                    // Written by an earlier step: its deliveries are (or were) there too.
                    find.query_row([&m.id], |r| r.get(0))?
                };
                for channel in &m.channels {
                    delivery.execute(params![seq, channel, at])?;
                }
                Ok(())
            },
        )?;
    }
    if !w.deliveries.is_empty() {
        let mut st = tx.prepare_cached(
            "UPDATE outbox SET attempts = attempts + ?3, last_attempt_at = ?4, last_error = coalesce(?5, last_error),
             delivered_at = CASE WHEN ?6 = 1 THEN ?4 ELSE delivered_at END,
             failed_at = CASE WHEN ?6 = 2 THEN ?4 ELSE failed_at END
             WHERE message = (SELECT seq FROM messages WHERE id = ?1) AND channel = ?2
             AND delivered_at IS NULL AND failed_at IS NULL",
        )?;
        for d in &w.deliveries {
            let outcome = match d.outcome {
                DeliveryOutcome::Retrying => 0,
                DeliveryOutcome::Delivered => 1,
                DeliveryOutcome::GaveUp => 2,
            };
            let at = d.last_attempt_at.as_millis();
            st.execute(params![d.message_id, d.channel, d.attempts, at, d.last_error, outcome])?;
        }
    }
    if let Some(windows) = &w.maintenance {
        tx.prepare_cached("DELETE FROM maintenance")?.execute([])?;
        let mut st = tx.prepare_cached("INSERT INTO maintenance (name, opened_at, closes_at) VALUES (?1, ?2, ?3)")?;
        for (name, opened, closes) in windows {
            st.execute(params![name, opened.as_millis(), closes.as_millis()])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Rows encoded in one go: the JSON bodies back to back, and each row's end offset in them and key.
type Encoded = (String, Vec<(usize, String)>);

/// Below this many rows, bodies are encoded on the writing thread.
const PARALLEL_ROWS: usize = 2048;
/// Rows per batch handed from the encoding thread to the writing one.
const BATCH_ROWS: usize = 256;

/// Feeds each item to `write` with the key and JSON body `encode` makes of it (appending the body to the buffer),
/// in order. For many items the encoding runs on a second thread while this one writes: in a large step, encoding
/// costs about as much as SQLite's inserts.
fn encode_rows<T: Sync>(
    items: &[T],
    encode: impl Fn(&T, &mut Vec<u8>) -> Result<String, Fail> + Sync,
    mut write: impl FnMut(&T, String, &str) -> Result<(), Fail>,
) -> Result<(), Fail> {
    let encode_batch = |batch: &[T]| -> Result<Encoded, Fail> {
        let mut buf = Vec::with_capacity(batch.len() * 256);
        let mut rows = Vec::with_capacity(batch.len());
        for item in batch {
            let key = encode(item, &mut buf)?;
            rows.push((buf.len(), key));
        }
        Ok((String::from_utf8(buf).map_err(|e| Fail::Encode(e.to_string()))?, rows))
    };
    let mut write_batch = |batch: &[T], (text, rows): Encoded| -> Result<(), Fail> {
        let mut start = 0;
        for (item, (end, key)) in batch.iter().zip(rows) {
            let body = text.get(start..end).ok_or_else(|| Fail::Encode("row boundary inside a character".into()))?;
            write(item, key, body)?;
            start = end;
        }
        Ok(())
    };
    if items.len() < PARALLEL_ROWS {
        return items.chunks(BATCH_ROWS).try_for_each(|batch| write_batch(batch, encode_batch(batch)?));
    }
    std::thread::scope(|scope| {
        let (send, receive) = mpsc::sync_channel::<Result<Encoded, Fail>>(4);
        let encode_batch = &encode_batch;
        let encoder = std::thread::Builder::new().name("zkalert-state-encode".into()).spawn_scoped(scope, move || {
            for batch in items.chunks(BATCH_ROWS) {
                let encoded = encode_batch(batch);
                let failed = encoded.is_err();
                // A closed channel: the writer stopped on an error.
                if send.send(encoded).is_err() || failed {
                    break;
                }
            }
        });
        for batch in items.chunks(BATCH_ROWS) {
            let encoded = match &encoder {
                Ok(_) => receive.recv().map_err(|_| Fail::Encode("the encoding thread stopped".into()))??,
                // No second thread to be had: encode here.
                Err(_) => encode_batch(batch)?,
            };
            write_batch(batch, encoded)?;
        }
        Ok(())
    })
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn attempts(table: &'static str, key: impl FnOnce() -> String, n: i64) -> Result<u32, Fail> {
    u32::try_from(n).map_err(|_| Fail::decode(table, key(), format!("attempts {n} out of range")))
}

fn decode<T: DeserializeOwned>(table: &'static str, key: impl FnOnce() -> String, body: &str) -> Result<T, Fail> {
    serde_json::from_str(body).map_err(|e| Fail::decode(table, key(), format_args!("bad body: {e}")))
}

/// Appends `value` as JSON to `buf`.
fn write_json<T: Serialize>(buf: &mut Vec<u8>, value: &T) -> Result<(), Fail> {
    serde_json::to_writer(buf, value).map_err(|e| Fail::Encode(e.to_string()))
}

fn to_json<T: Serialize>(value: &T) -> Result<String, Fail> {
    serde_json::to_string(value).map_err(|e| Fail::Encode(e.to_string()))
}

// ---------------------------------------------------------------------------------------------------------------
// JSON records.

/// Labels as a JSON object.
struct LabelsJson<'a>(Cow<'a, Labels>);

impl Serialize for LabelsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for LabelsJson<'_> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of label names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(pair) = map.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(Labels::from_pairs(pairs))
            }
        }
        Ok(LabelsJson(Cow::Owned(d.deserialize_map(V)?)))
    }
}

/// A fingerprint as 16 hex digits.
#[derive(Clone, Copy)]
struct Fp(Fingerprint);

impl Serialize for Fp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Fp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Fp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a fingerprint as 16 hex digits")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Fp, E> {
                match u64::from_str_radix(v, 16) {
                    Ok(n) if v.len() == 16 => Ok(Fp(Fingerprint(n))),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_str(V)
    }
}

/// A tier or an alert state, stored by its name ("P1", "firing").
#[derive(Clone, Copy)]
struct Named<T>(T);

/// What [`Named`] needs: the name, and the value back from it.
trait HasName: Sized + Copy {
    const EXPECTING: &'static str;
    fn name(self) -> &'static str;
    fn from_name(name: &str) -> Option<Self>;
}

impl HasName for Severity {
    const EXPECTING: &'static str = "a tier P0, P1, P2 or P3";
    fn name(self) -> &'static str {
        self.as_str()
    }
    fn from_name(name: &str) -> Option<Self> {
        name.parse().ok()
    }
}

impl HasName for AlertState {
    const EXPECTING: &'static str = "an alert state pending, firing or resolved";
    fn name(self) -> &'static str {
        self.as_str()
    }
    fn from_name(name: &str) -> Option<Self> {
        [AlertState::Pending, AlertState::Firing, AlertState::Resolved].into_iter().find(|s| s.as_str() == name)
    }
}

impl<T: HasName> Serialize for Named<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name())
    }
}

impl<'de, T: HasName> Deserialize<'de> for Named<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<T: HasName> Visitor<'_> for V<T> {
            type Value = Named<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(T::EXPECTING)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Named<T>, E> {
                T::from_name(v).map(Named).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

type Sev = Named<Severity>;

/// A sample value as a string that parses back to the same bits: shortest round-trip digits for finite values
/// (JSON numbers are not guaranteed to), "NaN", "StaleNaN", "+Inf", "-Inf" otherwise.
struct Value(f64);

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if is_stale(v) {
            s.serialize_str("StaleNaN")
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if v.is_infinite() {
            s.serialize_str(if v > 0.0 { "+Inf" } else { "-Inf" })
        } else {
            s.collect_str(&format_args!("{v:?}"))
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or \"NaN\", \"StaleNaN\", \"+Inf\", \"-Inf\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
                match v {
                    "NaN" => Ok(Value(f64::NAN)),
                    "StaleNaN" => Ok(Value(STALE_NAN)),
                    "+Inf" => Ok(Value(f64::INFINITY)),
                    "-Inf" => Ok(Value(f64::NEG_INFINITY)),
                    _ => v.parse().map(Value).map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
            // Numbers are accepted too, for hand-edited files.
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
                Ok(Value(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
                Ok(Value(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
                Ok(Value(v as f64))
            }
        }
        d.deserialize_any(V)
    }
}

fn ms(t: Timestamp) -> i64 {
    t.as_millis()
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

#[derive(Serialize, Deserialize)]
struct AlertRecord<'a> {
    fingerprint: Fp,
    labels: LabelsJson<'a>,
    annotations: Cow<'a, [(String, String)]>,
    severity: Sev,
    state: Named<AlertState>,
    value: Value,
    active_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    fired_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resolved_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_firing_since: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    runbook: Option<Cow<'a, str>>,
}

impl<'a> AlertRecord<'a> {
    fn from_alert(a: &'a Alert) -> Self {
        AlertRecord {
            fingerprint: Fp(a.fingerprint),
            labels: LabelsJson(Cow::Borrowed(&a.labels)),
            annotations: Cow::Borrowed(&a.annotations),
            severity: Named(a.severity),
            state: Named(a.state),
            value: Value(a.value),
            active_at: ms(a.active_at),
            fired_at: a.fired_at.map(ms),
            resolved_at: a.resolved_at.map(ms),
            keep_firing_since: a.keep_firing_since.map(ms),
            runbook: a.runbook.as_deref().map(Cow::Borrowed),
        }
    }

    fn into_alert(self) -> Alert {
        Alert {
            fingerprint: self.fingerprint.0,
            labels: self.labels.0.into_owned(),
            annotations: self.annotations.into_owned(),
            severity: self.severity.0,
            state: self.state.0,
            value: self.value.0,
            active_at: ts(self.active_at),
            fired_at: self.fired_at.map(ts),
            resolved_at: self.resolved_at.map(ts),
            keep_firing_since: self.keep_firing_since.map(ts),
            runbook: self.runbook.map(Cow::into_owned),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct AckRecord<'a> {
    by: Cow<'a, str>,
    comment: Cow<'a, str>,
    at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<i64>,
}

impl<'a> AckRecord<'a> {
    fn from_ack(a: &'a Ack) -> Self {
        AckRecord { by: Cow::Borrowed(&a.by), comment: Cow::Borrowed(&a.comment), at: ms(a.at), until: a.until.map(ms) }
    }

    fn into_ack(self) -> Ack {
        Ack { by: self.by.into_owned(), comment: self.comment.into_owned(), at: ts(self.at), until: self.until.map(ts) }
    }
}

#[derive(Serialize, Deserialize)]
struct GroupRecord<'a> {
    route: u16,
    labels: LabelsJson<'a>,
    next_flush: i64,
    notified_firing: Vec<Fp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notified_tier: Option<Sev>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_sent: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    paged_since: Option<i64>,
    escalated: bool,
    // Always written (null when none): `record_ack` sets it in place.
    ack: Option<AckRecord<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_reason: Option<Reason>,
}

impl<'a> GroupRecord<'a> {
    fn from_group(g: &'a GroupState) -> Self {
        GroupRecord {
            route: g.key.route,
            labels: LabelsJson(Cow::Borrowed(&g.key.labels)),
            next_flush: ms(g.next_flush),
            notified_firing: g.notified_firing.iter().copied().map(Fp).collect(),
            notified_tier: g.notified_tier.map(Named),
            last_sent: g.last_sent.map(ms),
            paged_since: g.paged_since.map(ms),
            escalated: g.escalated,
            ack: g.ack.as_ref().map(AckRecord::from_ack),
            last_reason: g.last_reason,
        }
    }

    fn into_group(self) -> GroupState {
        GroupState {
            key: GroupKey { route: self.route, labels: self.labels.0.into_owned() },
            next_flush: ts(self.next_flush),
            notified_firing: self.notified_firing.into_iter().map(|f| f.0).collect(),
            notified_tier: self.notified_tier.map(|s| s.0),
            last_sent: self.last_sent.map(ts),
            paged_since: self.paged_since.map(ts),
            escalated: self.escalated,
            ack: self.ack.map(AckRecord::into_ack),
            last_reason: self.last_reason,
        }
    }
}

/// One matcher, kept as its parts (the text form does not round-trip every value).
#[derive(Serialize, Deserialize)]
struct MatcherRecord<'a> {
    name: Cow<'a, str>,
    op: Cow<'a, str>,
    value: Cow<'a, str>,
}

#[derive(Serialize, Deserialize)]
struct SilenceRecord<'a> {
    matchers: Vec<MatcherRecord<'a>>,
    starts_at: i64,
    ends_at: i64,
    created_by: Cow<'a, str>,
    comment: Cow<'a, str>,
}

impl<'a> SilenceRecord<'a> {
    fn from_silence(s: &'a Silence) -> Self {
        SilenceRecord {
            matchers: s
                .matchers
                .0
                .iter()
                .map(|m| MatcherRecord {
                    name: Cow::Borrowed(&m.name),
                    op: Cow::Borrowed(m.op.as_str()),
                    value: Cow::Borrowed(&m.value),
                })
                .collect(),
            starts_at: ms(s.starts_at),
            ends_at: ms(s.ends_at),
            created_by: Cow::Borrowed(&s.created_by),
            comment: Cow::Borrowed(&s.comment),
        }
    }

    fn into_silence(self, id: String) -> Result<Silence, String> {
        let mut matchers = Vec::with_capacity(self.matchers.len());
        for m in self.matchers {
            let op = match &*m.op {
                "=" => MatchOp::Eq,
                "!=" => MatchOp::Ne,
                "=~" => MatchOp::Re,
                "!~" => MatchOp::NotRe,
                other => return Err(format!("unknown matcher operator {other:?}")),
            };
            matchers.push(Matcher::new(m.name, op, m.value).map_err(|e| e.to_string())?);
        }
        Ok(Silence {
            id,
            matchers: Matchers(matchers),
            starts_at: ts(self.starts_at),
            ends_at: ts(self.ends_at),
            created_by: self.created_by.into_owned(),
            comment: self.comment.into_owned(),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct MessageRecord<'a> {
    at: i64,
    group: LabelsJson<'a>,
    group_id: Cow<'a, str>,
    tier: Sev,
    channels: Cow<'a, [String]>,
    firing: Vec<AlertRecord<'a>>,
    new: Vec<Fp>,
    resolved: Vec<AlertRecord<'a>>,
    // Absent in messages written before reasons were recorded.
    #[serde(default)]
    reason: Option<Reason>,
    escalation: bool,
    digest: bool,
}

impl<'a> MessageRecord<'a> {
    fn from_message(m: &'a Message) -> Self {
        MessageRecord {
            at: ms(m.at),
            group: LabelsJson(Cow::Borrowed(&m.group)),
            group_id: Cow::Borrowed(&m.group_id),
            tier: Named(m.tier),
            channels: Cow::Borrowed(&m.channels),
            firing: m.firing.iter().map(AlertRecord::from_alert).collect(),
            new: m.new.iter().copied().map(Fp).collect(),
            resolved: m.resolved.iter().map(AlertRecord::from_alert).collect(),
            reason: Some(m.reason),
            escalation: m.escalation,
            digest: m.digest,
        }
    }

    fn into_message(self, id: String) -> Message {
        Message {
            id,
            at: ts(self.at),
            group: self.group.0.into_owned(),
            group_id: self.group_id.into_owned(),
            tier: self.tier.0,
            channels: self.channels.into_owned(),
            firing: self.firing.into_iter().map(AlertRecord::into_alert).collect(),
            new: self.new.into_iter().map(|f| f.0).collect(),
            resolved: self.resolved.into_iter().map(AlertRecord::into_alert).collect(),
            reason: self.reason.unwrap_or(match (self.escalation, self.digest) {
                (true, _) => Reason::Escalation,
                (_, true) => Reason::Digest,
                _ => Reason::NewAlerts,
            }),
            escalation: self.escalation,
            digest: self.digest,
            test: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::time::Instant;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_millis(s * 1000)
    }

    fn alert(name: &str, instance: &str, state: AlertState, value: f64) -> Alert {
        let labels =
            Labels::from_pairs([("alertname", name), ("cluster", "prod"), ("instance", instance), ("severity", "P1")]);
        Alert {
            fingerprint: labels.fingerprint_without(&["severity"]),
            labels,
            annotations: vec![
                ("summary".into(), format!("{instance} is down")),
                ("a_second".into(), "é \"q\"\n".into()),
            ],
            severity: Severity::P1,
            state,
            value,
            active_at: at(10),
            fired_at: (state != AlertState::Pending).then(|| at(70)),
            resolved_at: (state == AlertState::Resolved).then(|| at(300)),
            keep_firing_since: None,
            runbook: Some("runbooks/node-down.md".into()),
        }
    }

    /// Alert equality where a NaN value equals a NaN value with the same bits.
    fn same_alert(a: &Alert, b: &Alert) -> bool {
        a.value.to_bits() == b.value.to_bits() && Alert { value: 0.0, ..a.clone() } == Alert { value: 0.0, ..b.clone() }
    }

    fn group(route: u16, cluster: &str, ack: Option<Ack>, notified: &[&Alert]) -> GroupState {
        GroupState {
            key: GroupKey { route, labels: Labels::from_pairs([("alertname", "ZkNodeDown"), ("cluster", cluster)]) },
            next_flush: at(400),
            notified_firing: notified.iter().map(|a| a.fingerprint).collect::<BTreeSet<_>>(),
            notified_tier: Some(Severity::P1),
            last_sent: Some(at(100)),
            paged_since: Some(at(90)),
            escalated: ack.is_none(),
            ack,
            last_reason: Some(Reason::Repeat),
        }
    }

    fn message(id: &str, when: i64, firing: Vec<Alert>, resolved: Vec<Alert>) -> Message {
        Message {
            id: id.into(),
            at: at(when),
            group: Labels::from_pairs([("cluster", "prod")]),
            group_id: "00000000000000aa".into(),
            tier: Severity::P1,
            channels: vec!["pager".into(), "slack".into()],
            new: firing.iter().map(|a| a.fingerprint).collect(),
            firing,
            resolved,
            reason: Reason::NewAlerts,
            escalation: false,
            digest: false,
            test: false,
        }
    }

    fn silence(id: &str) -> Silence {
        Silence {
            id: id.into(),
            matchers: Matchers(vec![
                Matcher::new("cluster", MatchOp::Eq, "prod").unwrap(),
                Matcher::new("instance", MatchOp::Re, "zk[0-9]+:2181").unwrap(),
                Matcher::new("note", MatchOp::Ne, "tab\there \u{1b}").unwrap(),
            ]),
            starts_at: at(0),
            ends_at: at(3600),
            created_by: "ops".into(),
            comment: "upgrade".into(),
        }
    }

    fn ack(by: &str, when: i64) -> Ack {
        Ack { by: by.into(), comment: "looking".into(), at: at(when), until: Some(at(when + 600)) }
    }

    fn temp() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("state.db");
        (dir, path)
    }

    #[test]
    fn round_trip_through_a_reopened_file() {
        let (_dir, path) = temp();
        let nan = alert("ZkNodeDown", "zk1:2181", AlertState::Firing, f64::NAN);
        let resolved = alert("ZkNodeDown", "zk2:2181", AlertState::Resolved, -0.0);
        let mut pending = alert("ZkLatencyHigh", "zk3:2181", AlertState::Pending, 1.0 / 3.0);
        pending.keep_firing_since = Some(at(50));
        pending.runbook = None;
        let inf = alert("ZkLatencyHigh", "zk4:2181", AlertState::Firing, f64::INFINITY);
        let stale = alert("ZkLatencyHigh", "zk5:2181", AlertState::Firing, STALE_NAN);
        let alerts: Vec<(String, Alert)> = [
            ("node-down", &nan),
            ("node-down", &resolved),
            ("latency", &pending),
            ("latency", &inf),
            ("latency", &stale),
        ]
        .into_iter()
        .map(|(r, a)| (r.to_string(), a.clone()))
        .collect();
        let acked = group(0, "prod", Some(ack("alice", 200)), &[&nan, &inf]);
        let plain = group(1, "dev", None, &[]);
        let m1 = message("m1", 100, vec![inf.clone()], vec![resolved.clone()]);
        let mut m2 = message("m2", 200, vec![inf.clone()], vec![]);
        m2.escalation = true;
        m2.tier = Severity::P0;
        let windows = vec![("upgrade".to_string(), at(0), at(7200)), ("upgrade".to_string(), at(10), at(20))];
        {
            let mut db = StateDb::open(&path).unwrap();
            db.commit(&StepWrite {
                alerts_upsert: alerts.clone(),
                groups: GroupChanges { upserted: vec![acked.clone(), plain.clone()], removed: vec![] },
                outbox: vec![Arc::new(m1.clone()), Arc::new(m2.clone())],
                maintenance: Some(windows.clone()),
                ..Default::default()
            })
            .unwrap();
            db.put_silence(&silence("s1")).unwrap();
            db.put_silence(&silence("s2")).unwrap();
        }
        let db = StateDb::open(&path).unwrap();
        assert_eq!(db.path(), path);
        let mut p = db.load().unwrap();

        // Alerts and groups come back in no particular order.
        let by_key = |a: &(String, Alert), b: &(String, Alert)| (&a.0, a.1.fingerprint).cmp(&(&b.0, b.1.fingerprint));
        p.alerts.sort_by(by_key);
        let mut want = alerts.clone();
        want.sort_by(by_key);
        assert_eq!(p.alerts.len(), want.len());
        for ((rule, got), (want_rule, want)) in p.alerts.iter().zip(&want) {
            assert_eq!(rule, want_rule);
            assert!(same_alert(got, want), "{got:?} != {want:?}");
        }
        assert!(p.alerts.iter().any(|(_, a)| is_stale(a.value)));
        assert!(p.alerts.iter().any(|(_, a)| a.value == 0.0 && a.value.is_sign_negative()));

        p.groups.sort_by_key(|g| g.key.id());
        let mut want_groups = vec![acked, plain];
        want_groups.sort_by_key(|g| g.key.id());
        assert_eq!(p.groups, want_groups);
        assert_eq!(p.silences, vec![silence("s1"), silence("s2")]);
        assert_eq!(p.maintenance, windows);

        let pending: Vec<(&str, &str, u32, Timestamp)> =
            p.pending.iter().map(|e| (e.message.id.as_str(), e.channel.as_str(), e.attempts, e.created_at)).collect();
        assert_eq!(
            pending,
            vec![
                ("m1", "pager", 0, at(100)),
                ("m1", "slack", 0, at(100)),
                ("m2", "pager", 0, at(200)),
                ("m2", "slack", 0, at(200))
            ]
        );
        assert_eq!(p.pending[0].message, m1);
        assert_eq!(p.pending[1].message, m1);
        assert_eq!(p.pending[3].message, m2);
        assert_eq!(db.pending_count().unwrap(), 4);
    }

    #[test]
    fn updates_and_deletes() {
        let (_dir, path) = temp();
        let mut db = StateDb::open(&path).unwrap();
        let a = alert("ZkNodeDown", "zk1:2181", AlertState::Pending, 1.0);
        let b = alert("ZkNodeDown", "zk2:2181", AlertState::Firing, 2.0);
        let g1 = group(0, "prod", None, &[&a]);
        let g2 = group(0, "dev", None, &[]);
        db.commit(&StepWrite {
            alerts_upsert: vec![("r".into(), a.clone()), ("r".into(), b.clone())],
            groups: GroupChanges { upserted: vec![g1.clone(), g2.clone()], removed: vec![] },
            maintenance: Some(vec![("w".into(), at(0), at(10))]),
            ..Default::default()
        })
        .unwrap();
        let fired = Alert { state: AlertState::Firing, fired_at: Some(at(60)), ..a.clone() };
        let mut g1b = g1.clone();
        g1b.next_flush = at(900);
        db.commit(&StepWrite {
            alerts_upsert: vec![("r".into(), fired.clone())],
            alerts_delete: vec![("r".into(), b.fingerprint)],
            groups: GroupChanges { upserted: vec![g1b.clone()], removed: vec![g2.key.id()] },
            maintenance: Some(vec![]),
            ..Default::default()
        })
        .unwrap();
        db.put_silence(&silence("s1")).unwrap();
        let mut s1 = silence("s1");
        s1.comment = "longer".into();
        s1.ends_at = at(7200);
        db.put_silence(&s1).unwrap();
        db.put_silence(&silence("s2")).unwrap();
        db.delete_silence("s2").unwrap();
        db.delete_silence("never-was").unwrap();

        let p = StateDb::open(&path).unwrap().load().unwrap();
        assert_eq!(p.alerts, vec![("r".to_string(), fired)]);
        assert_eq!(p.groups, vec![g1b]);
        assert_eq!(p.silences, vec![s1]);
        assert!(p.maintenance.is_empty());
    }

    #[test]
    fn no_op_commit_writes_nothing() {
        let (_dir, path) = temp();
        let mut db = StateDb::open(&path).unwrap();
        let before = db.conn.total_changes();
        db.commit(&StepWrite::default()).unwrap();
        assert_eq!(db.conn.total_changes(), before);
        assert!(db.conn.is_autocommit());
    }

    #[test]
    fn deliveries_pending_failed_delivered_and_pruned() {
        let (_dir, path) = temp();
        let mut db = StateDb::open(&path).unwrap();
        let a = alert("ZkNodeDown", "zk1:2181", AlertState::Firing, 1.0);
        let m1 = message("m1", 100, vec![a.clone()], vec![]);
        let m2 = message("m2", 200, vec![a.clone()], vec![]);
        db.commit(&StepWrite { outbox: vec![Arc::new(m1.clone()), Arc::new(m2.clone())], ..Default::default() })
            .unwrap();
        // Writing the same messages again adds nothing.
        db.commit(&StepWrite { outbox: vec![Arc::new(m1.clone())], ..Default::default() }).unwrap();
        assert_eq!(db.pending_count().unwrap(), 4);

        db.mark_failed("m1", "pager", at(101), "connection refused", false).unwrap();
        db.mark_failed("m1", "pager", at(102), "HTTP 503", false).unwrap();
        db.mark_delivered("m1", "slack", at(103)).unwrap();
        db.mark_delivered_many(&[("m2".into(), "pager".into()), ("m2".into(), "slack".into())], at(201)).unwrap();
        // Already delivered: keeps its first time.
        db.mark_delivered("m1", "slack", at(999)).unwrap();

        let p = StateDb::open(&path).unwrap().load().unwrap();
        assert_eq!(p.pending.len(), 1);
        assert_eq!(
            (p.pending[0].message.clone(), p.pending[0].channel.as_str(), p.pending[0].attempts),
            (m1.clone(), "pager", 2)
        );
        assert_eq!(db.pending_count().unwrap(), 1);

        let d = db.deliveries(10).unwrap();
        let brief: Vec<_> = d
            .iter()
            .map(|r| (r.message_id.as_str(), r.channel.as_str(), r.attempts, r.delivered_at, r.last_error.as_deref()))
            .collect();
        assert_eq!(
            brief,
            vec![
                ("m2", "slack", 1, Some(at(201)), None),
                ("m2", "pager", 1, Some(at(201)), None),
                ("m1", "slack", 1, Some(at(103)), None),
                ("m1", "pager", 2, None, Some("HTTP 503")),
            ]
        );
        assert_eq!(d[3].group_id, m1.group_id);
        assert_eq!((d[3].tier, d[3].created_at, d[3].escalation), (Severity::P1, at(100), false));
        assert_eq!(db.deliveries(1).unwrap().len(), 1);

        // m1/slack goes (m1 stays: m1/pager is pending); m2's rows go, then m2 itself.
        assert_eq!(db.prune_delivered(at(300)).unwrap(), 3);
        let d = db.deliveries(10).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].message_id.as_str(), d[0].channel.as_str()), ("m1", "pager"));
        let messages: i64 = db.conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0)).unwrap();
        assert_eq!(messages, 1);
        assert_eq!(db.load().unwrap().pending[0].message, m1);
    }

    #[test]
    fn a_delivery_that_gave_up_is_failed_never_pending_again() {
        let (_dir, path) = temp();
        let mut db = StateDb::open(&path).unwrap();
        let a = alert("ZkNodeDown", "zk1:2181", AlertState::Firing, 1.0);
        let m1 = message("m1", 100, vec![a.clone()], vec![]);
        db.commit(&StepWrite { outbox: vec![Arc::new(m1.clone())], ..Default::default() }).unwrap();
        db.mark_failed("m1", "pager", at(101), "HTTP 503", false).unwrap();
        db.mark_failed("m1", "pager", at(102), "HTTP 400", true).unwrap();
        // A report after giving up changes nothing.
        db.mark_delivered("m1", "pager", at(103)).unwrap();
        let p = StateDb::open(&path).unwrap().load().unwrap();
        let pending: Vec<&str> = p.pending.iter().map(|e| e.channel.as_str()).collect();
        assert_eq!(pending, ["slack"], "the given-up delivery is not pending");
        assert_eq!(db.pending_count().unwrap(), 1);
        let d = db.deliveries(10).unwrap();
        let pager = d.iter().find(|r| r.channel == "pager").unwrap();
        assert_eq!(
            (pager.attempts, pager.delivered_at, pager.failed_at, pager.last_error.as_deref()),
            (2, None, Some(at(102)), Some("HTTP 400"))
        );
        // Given-up rows are history, pruned like delivered ones.
        assert_eq!(db.prune_delivered(at(200)).unwrap(), 1);
        assert_eq!(db.deliveries(10).unwrap().len(), 1);
    }

    #[test]
    fn marks_in_the_same_commit_as_their_outbox_rows_apply_to_them() {
        let (_dir, path) = temp();
        let mut db = StateDb::open(&path).unwrap();
        let a = alert("ZkNodeDown", "zk1:2181", AlertState::Firing, 1.0);
        let m1 = message("m1", 100, vec![a], vec![]);
        let mark = |channel: &str, outcome, error: Option<&str>| DeliveryMark {
            message_id: "m1".into(),
            channel: channel.into(),
            attempts: 1,
            last_attempt_at: at(101),
            last_error: error.map(str::to_string),
            outcome,
        };
        let mut pager = mark("pager", DeliveryOutcome::Retrying, Some("timeout"));
        pager.merge(mark("pager", DeliveryOutcome::Delivered, None));
        db.commit(&StepWrite {
            outbox: vec![Arc::new(m1)],
            deliveries: vec![pager, mark("slack", DeliveryOutcome::GaveUp, Some("HTTP 404"))],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(db.pending_count().unwrap(), 0);
        let d = db.deliveries(10).unwrap();
        let brief: Vec<_> = d
            .iter()
            .map(|r| (r.channel.as_str(), r.attempts, r.delivered_at, r.failed_at, r.last_error.as_deref()))
            .collect();
        assert_eq!(
            brief,
            [("slack", 1, None, Some(at(101)), Some("HTTP 404")), ("pager", 2, Some(at(101)), None, Some("timeout"))]
        );
    }

    #[test]
    fn a_version_1_file_is_migrated_and_keeps_its_pending_deliveries() {
        let (_dir, path) = temp();
        let mut db = StateDb::open(&path).unwrap();
        let a = alert("ZkNodeDown", "zk1:2181", AlertState::Firing, 1.0);
        db.commit(&StepWrite { outbox: vec![Arc::new(message("m1", 100, vec![a], vec![]))], ..Default::default() })
            .unwrap();
        // Back to version 1's outbox: no failed_at.
        db.conn
            .execute_batch(
                "DROP INDEX outbox_pending; ALTER TABLE outbox DROP COLUMN failed_at;
                 CREATE INDEX outbox_pending ON outbox (seq) WHERE delivered_at IS NULL; PRAGMA user_version = 1;",
            )
            .unwrap();
        drop(db);
        let mut db = StateDb::open(&path).unwrap();
        let version: i64 = db.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(db.load().unwrap().pending.len(), 2);
        db.mark_failed("m1", "pager", at(101), "HTTP 400", true).unwrap();
        assert_eq!(db.load().unwrap().pending.len(), 1);
    }

    #[test]
    fn acks_update_the_log_and_the_history() {
        let (_dir, path) = temp();
        let mut db = StateDb::open(&path).unwrap();
        let a = alert("ZkNodeDown", "zk1:2181", AlertState::Firing, 1.0);
        let g = group(0, "prod", None, &[&a]);
        db.commit(&StepWrite {
            groups: GroupChanges { upserted: vec![g.clone()], removed: vec![] },
            ..Default::default()
        })
        .unwrap();
        let acked = GroupState { ack: Some(ack("alice", 500)), ..g.clone() };
        db.record_ack(&acked).unwrap();
        let mut again = acked.clone();
        again.ack = Some(Ack { until: None, ..ack("bob", 600) });
        db.record_ack(&again).unwrap();
        // A group not in the log: history only.
        let other = GroupState { ack: Some(ack("carol", 700)), ..group(3, "dev", None, &[]) };
        db.record_ack(&other).unwrap();

        let p = StateDb::open(&path).unwrap().load().unwrap();
        assert_eq!(p.groups, vec![again.clone()]);
        let history = db.ack_history(10).unwrap();
        assert_eq!(
            history,
            vec![
                (other.key.id(), other.ack.clone().unwrap()),
                (g.key.id(), again.ack.clone().unwrap()),
                (g.key.id(), acked.ack.clone().unwrap()),
            ]
        );
        assert_eq!(db.ack_history(1).unwrap().len(), 1);
    }

    #[test]
    fn pragmas_are_set() {
        let (_dir, path) = temp();
        let db = StateDb::open(&path).unwrap();
        let mode: String = db.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = db.conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 2);
        let fk: i64 = db.conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
        assert_eq!(fk, 1);
        let version: i64 = db.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let busy: i64 = db.conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0)).unwrap();
        assert_eq!(busy, 5000);
    }

    #[test]
    fn garbage_file_is_an_error() {
        let (_dir, path) = temp();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let bytes: Vec<u8> = (0..8192)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(&path, &bytes).unwrap();
        let err = StateDb::open(&path).and_then(|db| db.load()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("state {}: ", path.display())), "{msg}");
    }

    #[test]
    fn newer_schema_version_is_refused() {
        let (_dir, path) = temp();
        drop(StateDb::open(&path).unwrap());
        Connection::open(&path).unwrap().pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        let err = StateDb::open(&path).unwrap_err();
        assert!(matches!(err, StateError::TooNew { found, .. } if found == SCHEMA_VERSION + 1), "{err:?}");
        assert!(err.to_string().contains("newer than this zkalert supports"), "{err}");
    }

    #[test]
    fn foreign_database_is_refused() {
        let (_dir, path) = temp();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        Connection::open(&path).unwrap().execute_batch("CREATE TABLE other (x INTEGER)").unwrap();
        let err = StateDb::open(&path).unwrap_err();
        assert!(matches!(err, StateError::Foreign { .. }), "{err:?}");
    }

    #[test]
    fn undecodable_row_names_table_and_key() {
        let (_dir, path) = temp();
        let mut db = StateDb::open(&path).unwrap();
        let a = alert("ZkNodeDown", "zk1:2181", AlertState::Firing, 1.0);
        db.commit(&StepWrite { alerts_upsert: vec![("r".into(), a.clone())], ..Default::default() }).unwrap();
        db.conn.execute("UPDATE alerts SET body = '{\"fingerprint\": 12'", []).unwrap();
        let err = db.load().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("table alerts, row r/") && msg.contains(&a.fingerprint.to_string()), "{msg}");

        db.conn.execute("DELETE FROM alerts", []).unwrap();
        db.put_silence(&silence("s1")).unwrap();
        db.conn.execute("UPDATE silences SET body = json_set(body, '$.matchers[0].op', '==')", []).unwrap();
        let msg = db.load().unwrap_err().to_string();
        assert!(msg.contains("table silences, row s1") && msg.contains("operator"), "{msg}");
    }

    #[test]
    fn checkpoints_in_the_background() {
        let (_dir, path) = temp();
        let mut db = StateDb::open(&path).unwrap();
        assert!(db.checkpointer.is_some());
        let size = || std::fs::metadata(&path).unwrap().len();
        let before = size();
        let alerts = (0..2 * CHECKPOINT_ROWS)
            .map(|i| ("r".to_string(), alert("ZkNodeDown", &format!("zk{i}:2181"), AlertState::Firing, 1.0)))
            .collect();
        db.commit(&StepWrite { alerts_upsert: alerts, ..Default::default() }).unwrap();
        // The rows reach the database file (not only the WAL) without the writer checkpointing.
        let deadline = Instant::now() + Duration::from_secs(20);
        while size() <= before + 16 * PAGE_SIZE as u64 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(size() > before + 16 * PAGE_SIZE as u64, "database file {} bytes", size());
        drop(db);
        assert_eq!(StateDb::open(&path).unwrap().load().unwrap().alerts.len(), 2 * CHECKPOINT_ROWS);
    }

    /// ZooKeeper-shaped alert, as in the benches: five labels, ~150 bytes of annotations.
    fn big_alert(serial: usize) -> Alert {
        let cluster = format!("zk-eu-west-{:05}", serial / 50);
        let instance = format!("zk{serial}.{cluster}.internal:2181");
        let labels = Labels::from_pairs([
            ("alertname", "ZkHighAvgLatency"),
            ("cluster", cluster.as_str()),
            ("instance", instance.as_str()),
            ("severity", "P2"),
            ("team", "zk-platform"),
        ]);
        let value = (serial % 997) as f64 + 0.5;
        Alert {
            fingerprint: labels.fingerprint_without(&["severity"]),
            labels,
            annotations: vec![
                ("summary".into(), format!("ZkHighAvgLatency on {instance} (cluster {cluster}) at {value}")),
                ("description".into(), "Condition held for 2m; see the runbook. Check `echo mntr | nc` first.".into()),
            ],
            severity: Severity::P2,
            state: AlertState::Firing,
            value,
            active_at: at(1_795_597_000),
            fired_at: Some(at(1_795_597_120)),
            resolved_at: None,
            keep_firing_since: None,
            runbook: Some("zookeeper/highavglatency".into()),
        }
    }

    /// Not a benchmark: prints the time of large commits (run with --release --nocapture). 100k in release,
    /// 10k in debug builds.
    #[test]
    fn large_commits() {
        let n = if cfg!(debug_assertions) { 10_000 } else { 100_000 };
        let (dir, _) = temp();
        let outbox = |messages: usize, channels: &[&str]| -> Vec<Arc<Message>> {
            (0..messages)
                .map(|i| {
                    let id = Labels::from_pairs([("m", i.to_string())]).fingerprint().to_string();
                    let mut m = message(&id, i as i64, vec![big_alert(i)], vec![]);
                    m.channels = channels.iter().map(|c| c.to_string()).collect();
                    Arc::new(m)
                })
                .collect()
        };
        let mut report = Vec::new();
        for (name, messages) in
            [("1 channel", outbox(n, &["pager"])), ("2 channels", outbox(n / 2, &["pager", "slack"]))]
        {
            let mut db = StateDb::open(&dir.path().join(format!("{name}.db"))).unwrap();
            let w = StepWrite { outbox: messages, ..Default::default() };
            let t = Instant::now();
            db.commit(&w).unwrap();
            report.push(format!("{n} outbox rows ({name}) {:?}", t.elapsed()));
            assert_eq!(db.pending_count().unwrap(), n);
        }

        let mut db = StateDb::open(&dir.path().join("alerts.db")).unwrap();
        let w = StepWrite {
            alerts_upsert: (0..n).map(|i| (format!("rule-{}", i % 20), big_alert(i))).collect(),
            ..Default::default()
        };
        let t = Instant::now();
        db.commit(&w).unwrap();
        report.push(format!("{n} alert inserts {:?}", t.elapsed()));
        let t = Instant::now();
        db.commit(&w).unwrap();
        report.push(format!("{n} alert updates {:?}", t.elapsed()));
        let t = Instant::now();
        let p = db.load().unwrap();
        report.push(format!("load of {n} alerts {:?}", t.elapsed()));
        assert_eq!(p.alerts.len(), n);
        println!("state commits: {}", report.join("; "));
    }
}
