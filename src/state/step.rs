//! Reading the whole state back, and writing one runner step in one transaction.

use super::records::{AlertRecord, GroupRecord, MessageRecord, SilenceRecord, attempts, decode, write_json};
use super::{DeliveryOutcome, Fail, OutboxEntry, Persisted, StepWrite};
use crate::model::Timestamp;
use rusqlite::{Connection, TransactionBehavior, params};
use std::sync::mpsc;

/// Alerts and groups come in table order (a full scan; sorting would cost more than the decoding), pending
/// deliveries oldest first, silences by start.
pub(super) fn load(conn: &Connection) -> Result<Persisted, Fail> {
    let tx = conn.unchecked_transaction()?;
    let mut out = Persisted::default();

    for_each_row(&tx, "SELECT rule, fingerprint, body FROM alerts", |row| {
        let rule: String = row.get(0)?;
        let fp: String = row.get(1)?;
        let body: String = row.get(2)?;
        let key = || format!("{rule}/{fp}");
        let alert = decode::<AlertRecord>("alerts", key, &body)?.into_alert();
        if alert.fingerprint.to_string() != fp {
            return Err(Fail::decode("alerts", key(), format!("body has fingerprint {}", alert.fingerprint)));
        }
        out.alerts.push((rule, alert));
        Ok(())
    })?;

    for_each_row(&tx, "SELECT id, body FROM groups", |row| {
        let (id, body): (String, String) = (row.get(0)?, row.get(1)?);
        let group = decode::<GroupRecord>("groups", || id.clone(), &body)?.into_group();
        let key_id = group.key.id();
        if key_id != id {
            return Err(Fail::decode("groups", id, format!("body's key has id {key_id}")));
        }
        out.groups.push(group);
        Ok(())
    })?;

    for_each_row(&tx, "SELECT id, body FROM silences ORDER BY starts_at, id", |row| {
        let (id, body): (String, String) = (row.get(0)?, row.get(1)?);
        let rec = decode::<SilenceRecord>("silences", || id.clone(), &body)?;
        let silence = rec.into_silence(id.clone()).map_err(|reason| Fail::decode("silences", id, reason))?;
        out.silences.push(silence);
        Ok(())
    })?;

    let pending = "SELECT m.id, o.channel, o.attempts, o.created_at, m.body
         FROM outbox o JOIN messages m ON m.seq = o.message
         WHERE o.delivered_at IS NULL AND o.failed_at IS NULL ORDER BY o.seq";
    for_each_row(&tx, pending, |row| {
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
        Ok(())
    })?;

    let last_leaders =
        "SELECT cluster, leader FROM leaders WHERE seq IN (SELECT max(seq) FROM leaders GROUP BY cluster)";
    for_each_row(&tx, last_leaders, |row| {
        out.leaders.push((row.get(0)?, row.get(1)?));
        Ok(())
    })?;

    for_each_row(&tx, "SELECT name, opened_at, closes_at FROM maintenance ORDER BY seq", |row| {
        out.maintenance.push((row.get(0)?, Timestamp::from_millis(row.get(1)?), Timestamp::from_millis(row.get(2)?)));
        Ok(())
    })?;

    tx.commit()?;
    Ok(out)
}

/// Runs `f` on each row `sql` returns, stopping at the first error.
fn for_each_row(
    conn: &Connection,
    sql: &str,
    mut f: impl FnMut(&rusqlite::Row) -> Result<(), Fail>,
) -> Result<(), Fail> {
    let mut st = conn.prepare(sql)?;
    let mut rows = st.query([])?;
    while let Some(row) = rows.next()? {
        f(row)?;
    }
    Ok(())
}

pub(super) fn commit(conn: &mut Connection, w: &StepWrite) -> Result<(), Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Deletions first: a key both deleted and upserted in one step ends up present.
    if !w.alerts_delete.is_empty() {
        let mut st = tx.prepare_cached("DELETE FROM alerts WHERE rule = ?1 AND fingerprint = ?2")?;
        // An alert gone without its resolution written (its rule removed) ends its span in the history now.
        let mut close = tx.prepare_cached(
            "UPDATE alert_history SET resolved_at = ?2 WHERE fingerprint = ?1 AND resolved_at IS NULL",
        )?;
        for (rule, fp) in &w.alerts_delete {
            let fp = fp.to_string();
            st.execute(params![rule, fp])?;
            close.execute(params![fp, w.at.as_millis()])?;
        }
    }
    if !w.alerts_upsert.is_empty() {
        let mut history = tx.prepare_cached(
            "INSERT INTO alert_history (fingerprint, fired_at, rule, cluster, tier, resolved_at, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (fingerprint, fired_at) DO UPDATE SET tier = min(tier, excluded.tier),
             resolved_at = excluded.resolved_at, body = excluded.body",
        )?;
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
                // The report's history: one row per firing span, its tier the most severe reached.
                if let Some(fired) = a.fired_at {
                    history.execute(params![
                        fp,
                        fired.as_millis(),
                        rule,
                        a.labels.get("cluster"),
                        a.severity.as_str(),
                        a.resolved_at.map(Timestamp::as_millis),
                        body
                    ])?;
                }
                Ok(())
            },
        )?;
    }
    if !w.leaders.is_empty() {
        let mut st = tx.prepare_cached("INSERT INTO leaders (cluster, at, leader) VALUES (?1, ?2, ?3)")?;
        for change in &w.leaders {
            st.execute(params![change.cluster, change.at.as_millis(), change.leader])?;
        }
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
/// Batches encoded ahead of the writer: one keeps both threads busy; more
/// only hold more bodies at once (a step of 100,000 rows is the moment a
/// zkalert's memory peaks).
const BATCHES_AHEAD: usize = 1;

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
        let (send, receive) = mpsc::sync_channel::<Result<Encoded, Fail>>(BATCHES_AHEAD);
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
