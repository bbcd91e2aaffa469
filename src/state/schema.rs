//! The state file's schema: its tables, its version (`PRAGMA user_version`), the migrations from each older
//! version, and the settings every connection to the file has.

use super::Fail;
use rusqlite::{Connection, TransactionBehavior};
use std::time::Duration;

/// The schema version this code reads and writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 4;

/// How long a statement waits for a lock held by another connection.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page size of a new file.
pub(super) const PAGE_SIZE: i64 = 16 * 1024;
/// Page cache per connection (negative: KiB): 16 pages, the B-trees'
/// upper levels. A step's rows land on leaves spread over the file (keys
/// are fingerprints), which a few MiB of cache would rarely hold anyway;
/// they come from the OS page cache. Measured (BENCHMARKS.md, alert
/// intake): 4 MiB cost ~0.4 KiB per alert at 10,000 posted alerts, with no
/// gain in intake rate.
pub(super) const CACHE_KIB: i64 = -256;

/// The tables of a new file at version 3; a new file is then given the tables later versions added
/// ([`ADDED_TABLES`]), so each is written once.
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
CREATE TABLE secrets (
    name  TEXT NOT NULL PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;
"#;

/// Version 1 → 2: a delivery that gave up is `failed_at`, no longer pending.
const MIGRATE_1_TO_2: &str = r#"
ALTER TABLE outbox ADD COLUMN failed_at INTEGER;
DROP INDEX outbox_pending;
CREATE INDEX outbox_pending ON outbox (seq) WHERE delivered_at IS NULL AND failed_at IS NULL;
"#;

/// Version 2 → 3: the server secret ack links are signed with.
const MIGRATE_2_TO_3: &str = r#"
CREATE TABLE secrets (
    name  TEXT NOT NULL PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;
"#;

/// Version 3 → 4: what the daily report reads (docs/reports.md): each alert's firing spans with who acked them, the
/// leader each cluster had since when, and when each cluster's report was last due.
const MIGRATE_3_TO_4: &str = r#"
CREATE TABLE alert_history (
    fingerprint TEXT NOT NULL,
    fired_at    INTEGER NOT NULL,
    rule        TEXT NOT NULL,
    cluster     TEXT,
    tier        TEXT NOT NULL,
    resolved_at INTEGER,
    acked_at    INTEGER,
    acked_by    TEXT,
    body        TEXT NOT NULL,
    PRIMARY KEY (fingerprint, fired_at)
) STRICT;
CREATE INDEX alert_history_cluster ON alert_history (cluster, fired_at);
CREATE INDEX alert_history_open ON alert_history (fingerprint) WHERE resolved_at IS NULL;
CREATE INDEX alert_history_resolved ON alert_history (resolved_at) WHERE resolved_at IS NOT NULL;
CREATE TABLE leaders (
    seq     INTEGER PRIMARY KEY,
    cluster TEXT NOT NULL,
    at      INTEGER NOT NULL,
    leader  TEXT
) STRICT;
CREATE INDEX leaders_cluster ON leaders (cluster, at);
CREATE TABLE report_runs (
    cluster TEXT NOT NULL PRIMARY KEY,
    due_at  INTEGER NOT NULL
) STRICT;
"#;

/// What versions after 3 added (tables only): run on a new file after [`SCHEMA`], as on an older file.
const ADDED_TABLES: [&str; 1] = [MIGRATE_3_TO_4];

/// `MIGRATIONS[i]` takes a file from version `i + 1` to `i + 2`; a file of an older version runs them in turn.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize - 1] = [MIGRATE_1_TO_2, MIGRATE_2_TO_3, MIGRATE_3_TO_4];

pub(super) fn init(conn: &mut Connection) -> Result<(), Fail> {
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
        for tables in ADDED_TABLES {
            tx.execute_batch(tables)?;
        }
    } else {
        // From version 1 up: the migrations from this version on, in order.
        let migrations = usize::try_from(version - 1).ok().and_then(|from| MIGRATIONS.get(from..)).unwrap_or_default();
        for migration in migrations {
            tx.execute_batch(migration)?;
        }
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
pub(super) fn pragmas(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // After a large step, the WAL is cut back to this size when it restarts.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
}
