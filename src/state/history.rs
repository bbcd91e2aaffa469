//! What the daily report reads from the state file (`report::gather`): each alert's firing spans with who acked
//! them, the leader each cluster had since when, deliveries that failed; when each cluster's report was last due;
//! and pruning all of it past [`HISTORY`].

use super::records::{AlertRecord, MessageRecord, attempts, decode};
use super::{Fail, LeaderChange, StateDb, StateError};
use crate::model::{Alert, Severity, Timestamp};
use crate::pipeline::Message;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use std::time::Duration;

/// How long alert spans and leader changes are kept: a month and a few days, so a monthly review has them.
pub const HISTORY: Duration = Duration::from_secs(35 * 24 * 3600);

/// One span of an alert firing: from `fired_at` to its resolution (None: firing still, as the file last heard).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSpan {
    /// As last written (labels, annotations, runbook).
    pub alert: Alert,
    pub fired_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    /// The most severe tier it reached.
    pub tier: Severity,
    /// The first ack of a group it was notified in, while it fired.
    pub acked: Option<(Timestamp, String)>,
}

/// A delivery that gave up, or that has failed and is being retried.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryProblem {
    pub message: Message,
    pub channel: String,
    pub attempts: u32,
    /// When it gave up; None while it is retried.
    pub failed_at: Option<Timestamp>,
    pub last_attempt_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

impl StateDb {
    /// The spans of `cluster`'s alerts that overlap `from..until`, oldest first (at most `limit`).
    pub fn alert_spans(
        &self,
        cluster: &str,
        from: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<AlertSpan>, StateError> {
        let run = || -> Result<Vec<AlertSpan>, Fail> {
            let mut st = self.conn.prepare_cached(
                "SELECT fingerprint, fired_at, resolved_at, tier, acked_at, acked_by, body FROM alert_history
                 WHERE cluster = ?1 AND fired_at < ?3 AND (resolved_at IS NULL OR resolved_at >= ?2)
                 ORDER BY fired_at, fingerprint LIMIT ?4",
            )?;
            let mut rows = st.query(params![cluster, from.as_millis(), until.as_millis(), super::sql_limit(limit)])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let fp: String = row.get(0)?;
                let key = || fp.clone();
                let tier: String = row.get(3)?;
                let tier =
                    tier.parse().map_err(|e: crate::model::SeverityError| Fail::decode("alert_history", key(), e))?;
                let body: String = row.get(6)?;
                let alert = decode::<AlertRecord>("alert_history", key, &body)?.into_alert();
                let acked = match (row.get::<_, Option<i64>>(4)?, row.get::<_, Option<String>>(5)?) {
                    (Some(at), Some(by)) => Some((Timestamp::from_millis(at), by)),
                    _ => None,
                };
                out.push(AlertSpan {
                    alert,
                    fired_at: Timestamp::from_millis(row.get(1)?),
                    resolved_at: row.get::<_, Option<i64>>(2)?.map(Timestamp::from_millis),
                    tier,
                    acked,
                });
            }
            Ok(out)
        };
        run().map_err(|f| f.at(&self.path))
    }

    /// `cluster`'s leader at `from` (the last change before it, if recorded) and its changes in `from..until`.
    pub fn leader_changes(
        &self,
        cluster: &str,
        from: Timestamp,
        until: Timestamp,
    ) -> Result<(Option<LeaderChange>, Vec<LeaderChange>), StateError> {
        let run = || -> rusqlite::Result<(Option<LeaderChange>, Vec<LeaderChange>)> {
            let change = |row: &rusqlite::Row| -> rusqlite::Result<LeaderChange> {
                Ok(LeaderChange {
                    cluster: cluster.to_string(),
                    at: Timestamp::from_millis(row.get(0)?),
                    leader: row.get(1)?,
                })
            };
            let before = self
                .conn
                .prepare_cached(
                    "SELECT at, leader FROM leaders WHERE cluster = ?1 AND at < ?2 ORDER BY at DESC, seq DESC LIMIT 1",
                )?
                .query_row(params![cluster, from.as_millis()], change)
                .optional()?;
            let mut st = self.conn.prepare_cached(
                "SELECT at, leader FROM leaders WHERE cluster = ?1 AND at >= ?2 AND at < ?3 ORDER BY at, seq",
            )?;
            let changes = st
                .query_map(params![cluster, from.as_millis(), until.as_millis()], change)?
                .collect::<Result<_, _>>()?;
            Ok((before, changes))
        };
        run().map_err(|e| Fail::Sql(e).at(&self.path))
    }

    /// Deliveries that gave up in `from..until`, and those failing still (retried), oldest first: the first `limit`
    /// that `keep` takes (a cluster's, when the report asks).
    pub fn delivery_problems(
        &self,
        from: Timestamp,
        until: Timestamp,
        limit: usize,
        mut keep: impl FnMut(&DeliveryProblem) -> bool,
    ) -> Result<Vec<DeliveryProblem>, StateError> {
        let mut run = || -> Result<Vec<DeliveryProblem>, Fail> {
            let mut st = self.conn.prepare_cached(
                "SELECT m.id, o.channel, o.attempts, o.failed_at, o.last_attempt_at, o.last_error, m.body
                 FROM outbox o JOIN messages m ON m.seq = o.message
                 WHERE (o.failed_at >= ?1 AND o.failed_at < ?2)
                    OR (o.failed_at IS NULL AND o.delivered_at IS NULL AND o.last_error IS NOT NULL)
                 ORDER BY o.seq",
            )?;
            let mut rows = st.query(params![from.as_millis(), until.as_millis()])?;
            let mut out = Vec::new();
            while out.len() < limit
                && let Some(row) = rows.next()?
            {
                let id: String = row.get(0)?;
                let channel: String = row.get(1)?;
                let key = || format!("{id}/{channel}");
                let attempts = attempts("outbox", key, row.get(2)?)?;
                let body: String = row.get(6)?;
                let message = decode::<MessageRecord>("messages", key, &body)?.into_message(id.clone());
                let problem = DeliveryProblem {
                    message,
                    channel,
                    attempts,
                    failed_at: row.get::<_, Option<i64>>(3)?.map(Timestamp::from_millis),
                    last_attempt_at: row.get::<_, Option<i64>>(4)?.map(Timestamp::from_millis),
                    last_error: row.get(5)?,
                };
                if keep(&problem) {
                    out.push(problem);
                }
            }
            Ok(out)
        };
        run().map_err(|f| f.at(&self.path))
    }

    /// Drops alert spans resolved before `before`, and leader changes before it except each cluster's last one
    /// (the leader it has). Returns how many rows went.
    pub fn prune_history(&mut self, before: Timestamp) -> Result<usize, StateError> {
        let run = |conn: &mut rusqlite::Connection| -> rusqlite::Result<usize> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let spans =
                tx.prepare_cached("DELETE FROM alert_history WHERE resolved_at < ?1")?.execute([before.as_millis()])?;
            let leaders = tx
                .prepare_cached(
                    "DELETE FROM leaders WHERE at < ?1
                     AND seq NOT IN (SELECT max(seq) FROM leaders GROUP BY cluster)",
                )?
                .execute([before.as_millis()])?;
            tx.commit()?;
            Ok(spans + leaders)
        };
        let n = run(&mut self.conn).map_err(|e| Fail::Sql(e).at(&self.path))?;
        self.wrote(n);
        Ok(n)
    }

    /// When `cluster`'s scheduled report was last due (made, or begun), if ever.
    pub fn report_due(&self, cluster: &str) -> Result<Option<Timestamp>, StateError> {
        self.conn
            .prepare_cached("SELECT due_at FROM report_runs WHERE cluster = ?1")
            .and_then(|mut st| st.query_row([cluster], |r| r.get::<_, i64>(0)).optional())
            .map(|t| t.map(Timestamp::from_millis))
            .map_err(|e| Fail::Sql(e).at(&self.path))
    }

    /// Records that `cluster`'s report due at `due` is being made: a restart does not make it again.
    pub fn set_report_due(&mut self, cluster: &str, due: Timestamp) -> Result<(), StateError> {
        self.conn
            .prepare_cached(
                "INSERT INTO report_runs (cluster, due_at) VALUES (?1, ?2)
                 ON CONFLICT (cluster) DO UPDATE SET due_at = excluded.due_at",
            )
            .and_then(|mut st| st.execute(params![cluster, due.as_millis()]))
            .map_err(|e| Fail::Sql(e).at(&self.path))?;
        self.wrote(1);
        Ok(())
    }
}
