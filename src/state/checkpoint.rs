//! Checkpoints of the state file's WAL on a thread of their own, so a step's commit does not pay for them.

use super::schema::pragmas;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::mpsc;

/// The writer checkpoints itself once the WAL holds this many pages: SQLite's default without the background
/// checkpointer, a backstop with it (256 MiB of 16 KiB pages).
pub(super) const DEFAULT_CHECKPOINT_PAGES: i64 = 1000;
pub(super) const BACKSTOP_CHECKPOINT_PAGES: i64 = 16 * 1024;
/// Rows written between background checkpoints (a few MiB of WAL at most).
pub(super) const CHECKPOINT_ROWS: usize = 1000;

/// Copies committed WAL frames into the database file on its own thread and connection, so that a step's commit
/// pays for appending to the WAL and one fsync, not for the checkpoint. The writer's own automatic checkpoint stays
/// on at a high mark, as a backstop should this thread fall behind or fail.
#[derive(Debug)]
pub(super) struct Checkpointer {
    wake: Option<mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    pub(super) fn start(path: &Path) -> Option<Checkpointer> {
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
    pub(super) fn poke(&self) {
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
