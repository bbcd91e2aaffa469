//! The notification state the active replica shares through ZooKeeper, so
//! a replica that takes over resumes from it: under `<root>/state/`, one
//! znode per group (the notification log entry, with its ack, as in
//! SQLite's `groups`), per silence, and per pending delivery (the message
//! with its id, the idempotency key, and the channel), plus one for the
//! open maintenance windows. Bodies are the SQLite rows' JSON
//! (`state::records`). Tracker alerts are not shared: every replica
//! evaluates on its own (hot standby).
//!
//! For standbys, which show what the active replica decided: each acked
//! group's ack also as `acks/<group id>` (a standby reads the few acks, not
//! every group), and each transaction that changes a silence or an ack
//! bumps the data version of `silences` or `acks`, so a standby sees from
//! one stat whether there is anything to read again
//! ([`SharedState::silences_since`], [`SharedState::acks_since`]).
//!
//! A step is written as `multi` transactions that each first CHECK the
//! writer's election znode ([`Fence`]): after its session expired the znode
//! is gone and the write fails as [`HaError::Fenced`], with nothing of it
//! applied. One transaction carries at most [`MULTI_BUDGET`] bytes (ZooKeeper
//! refuses requests over `jute.maxbuffer`, 1 MiB by default), so a large step
//! (a first full write of 10,000 groups) is several fenced transactions, in
//! an order that never loses a page: new pending deliveries first, then
//! silences, groups and maintenance, deletions last. A step cut short by a
//! fence leaves earlier transactions applied: each is a whole, valid state
//! of the znodes it touches, and the next active replica loads them.

use super::{Fence, HaError, ensure_path};
use crate::pipeline::{Ack, GroupState, Silence};
use crate::state::{DeliveryOutcome, OutboxEntry, Persisted, StepWrite, shared_records as records};
use std::collections::{HashMap, HashSet};
use zookeeper_client::{Acls, Client, CreateMode, Error as ZkError, MultiWriteError};

/// Largest body of one znode: under `jute.maxbuffer` (1 MiB) with room for
/// the request around it.
pub const MAX_ZNODE_BYTES: usize = 1000 * 1024;

/// Most bytes (bodies and paths) one `multi` carries. Half the default
/// `jute.maxbuffer`: the transaction log entry of a multi is its ops plus
/// headers, and the server checks the whole request against the limit.
pub const MULTI_BUDGET: usize = 512 * 1024;

/// Per-op overhead counted against [`MULTI_BUDGET`] (op header, version,
/// ACL, lengths).
const OP_OVERHEAD: usize = 64;

/// What a step changes besides [`StepWrite`]: silences added or changed,
/// silences deleted (by id), and the write requests it applied (their
/// znodes, deleted last: see `ha::requests`).
#[derive(Debug, Default)]
pub struct SharedStep<'a> {
    pub step: Option<&'a StepWrite>,
    pub silences_put: &'a [Silence],
    pub silences_deleted: &'a [String],
    pub requests_done: &'a [String],
    /// The writer's beat (`state/beat`'s new body), set in the first
    /// transaction: standbys read its version to tell a working active
    /// replica from none (`ZkalertNoActiveReplica`).
    pub beat: Option<&'a [u8]>,
}

/// What one commit cost.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    /// `multi` transactions sent.
    pub transactions: usize,
    /// Creates, sets and deletes (the fence checks not counted).
    pub ops: usize,
    /// Bytes of znode bodies written.
    pub body_bytes: usize,
}

/// The shared state of one deployment, and which of its znodes exist (so a
/// write knows create from set).
pub struct SharedState {
    root: String,
    known: HashSet<String>,
    /// The body of each `acks/` znode as last read or written (to write
    /// only acks that changed).
    acks: HashMap<String, Vec<u8>>,
    /// The writes that make `acks/` match the groups as loaded (a step cut
    /// short by a fence may leave them apart): done by the next commit.
    ack_repairs: Vec<Op>,
}

/// A directory's stat as a standby last read it: when the active replica
/// changes a child (or adds or deletes one), this changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    czxid: i64,
    version: i32,
    cversion: i32,
}

#[derive(Debug, Clone)]
enum Op {
    Put { path: String, body: Vec<u8> },
    Delete { path: String },
}

impl Op {
    fn cost(&self) -> usize {
        OP_OVERHEAD
            + match self {
                Op::Put { path, body } => path.len() + body.len(),
                Op::Delete { path } => path.len(),
            }
    }
}

const KINDS: [&str; 4] = ["groups", "silences", "outbox", "acks"];

/// The directories whose data version a transaction bumps when it changes
/// one of their children (what standbys watch).
const BUMPED: [&str; 2] = ["silences", "acks"];

impl SharedState {
    /// The state under `<root>/state`, creating its znodes if missing.
    pub async fn open(client: &Client, root: &str) -> Result<SharedState, HaError> {
        for kind in KINDS.iter().chain(&["beat"]) {
            ensure_path(client, &format!("{root}/state/{kind}")).await?;
        }
        Ok(SharedState { root: root.to_string(), known: HashSet::new(), acks: HashMap::new(), ack_repairs: Vec::new() })
    }

    fn dir(&self, kind: &str) -> String {
        format!("{}/state/{kind}", self.root)
    }

    fn beat_path(&self) -> String {
        format!("{}/state/beat", self.root)
    }

    /// The active replica's beat: its version, which changes with every
    /// commit an active replica makes (once a second while its loop runs),
    /// and who wrote it last (`None` before any write, or undecodable).
    pub async fn beat(&self, client: &Client) -> Result<Option<(i32, Option<super::ReplicaInfo>)>, HaError> {
        let path = self.beat_path();
        match client.get_data(&path).await {
            Ok((data, stat)) => Ok(Some((stat.version, serde_json::from_slice(&data).ok()))),
            Err(ZkError::NoNode) => Ok(None),
            Err(e) => Err(HaError::zk(&path, e)),
        }
    }

    fn maintenance_path(&self) -> String {
        format!("{}/state/maintenance", self.root)
    }

    /// Reads the whole shared state (groups, silences, pending deliveries
    /// oldest first, maintenance windows). Tracker alerts stay empty.
    pub async fn load(&mut self, client: &Client) -> Result<Persisted, HaError> {
        let mut out = Persisted::default();
        self.known.clear();
        self.acks = (self.read_children(client, "acks").await?.into_iter())
            .map(|(name, body)| (format!("{}/{name}", self.dir("acks")), body))
            .collect();
        for (name, body) in self.read_children(client, "groups").await? {
            let path = format!("{}/{name}", self.dir("groups"));
            out.groups.push(records::read_group(&body).map_err(|reason| HaError::Decode { path, reason })?);
        }
        let groups: HashSet<String> = out.groups.iter().map(|g| self.ack_path(&g.key.id())).collect();
        let orphans = self.acks.keys().filter(|p| !groups.contains(*p)).map(|path| Op::Delete { path: path.clone() });
        self.ack_repairs = out.groups.iter().filter_map(|g| self.ack_op(g)).chain(orphans).collect();
        for (name, body) in self.read_children(client, "silences").await? {
            let path = format!("{}/{name}", self.dir("silences"));
            let silence = records::read_silence(unescape(&name), &body);
            out.silences.push(silence.map_err(|reason| HaError::Decode { path, reason })?);
        }
        for (name, body) in self.read_children(client, "outbox").await? {
            let path = format!("{}/{name}", self.dir("outbox"));
            out.pending.push(records::read_outbox(&body).map_err(|reason| HaError::Decode { path, reason })?);
        }
        let path = self.maintenance_path();
        match client.get_data(&path).await {
            Ok((body, _)) => {
                out.maintenance = records::read_maintenance(&body)
                    .map_err(|reason| HaError::Decode { path: path.clone(), reason })?;
                self.known.insert(path);
            }
            Err(ZkError::NoNode) => {}
            Err(e) => return Err(HaError::zk(path, e)),
        }
        out.silences.sort_by(|a, b| (a.starts_at, &a.id).cmp(&(b.starts_at, &b.id)));
        out.pending
            .sort_by(|a, b| (a.created_at, &a.message.id, &a.channel).cmp(&(b.created_at, &b.message.id, &b.channel)));
        Ok(out)
    }

    /// Every child of `<root>/state/<kind>` with its body; the reads are
    /// pipelined in chunks (one round trip per chunk, not per znode).
    async fn read_children(&mut self, client: &Client, kind: &str) -> Result<Vec<(String, Vec<u8>)>, HaError> {
        let dir = self.dir(kind);
        let names = client.list_children(&dir).await.map_err(|e| HaError::zk(&dir, e))?;
        let out = read_bodies(client, &dir, &names).await?;
        self.known.extend(out.iter().map(|(name, _)| format!("{dir}/{name}")));
        Ok(out)
    }

    /// The children of `<root>/state/<kind>` with their bodies if the
    /// directory changed since `seen` (which is then updated); `None` if
    /// not. For standbys: one round trip when nothing changed.
    async fn children_since(
        &self,
        client: &Client,
        kind: &str,
        seen: &mut Option<Seen>,
    ) -> Result<Option<Vec<(String, Vec<u8>)>>, HaError> {
        let dir = self.dir(kind);
        let (names, stat) = client.get_children(&dir).await.map_err(|e| HaError::zk(&dir, e))?;
        let now = Seen { czxid: stat.czxid, version: stat.version, cversion: stat.cversion };
        if *seen == Some(now) {
            return Ok(None);
        }
        let out = read_bodies(client, &dir, &names).await?;
        *seen = Some(now);
        Ok(Some(out))
    }

    /// The silences, if they changed since `seen` (see [`Seen`]).
    pub async fn silences_since(
        &self,
        client: &Client,
        seen: &mut Option<Seen>,
    ) -> Result<Option<Vec<Silence>>, HaError> {
        let Some(children) = self.children_since(client, "silences", seen).await? else { return Ok(None) };
        let mut out = Vec::with_capacity(children.len());
        for (name, body) in children {
            let path = format!("{}/{name}", self.dir("silences"));
            let silence = records::read_silence(unescape(&name), &body);
            out.push(silence.map_err(|reason| HaError::Decode { path, reason })?);
        }
        out.sort_by(|a, b| (a.starts_at, &a.id).cmp(&(b.starts_at, &b.id)));
        Ok(Some(out))
    }

    /// The acks by group id, if they changed since `seen` (see [`Seen`]).
    pub async fn acks_since(
        &self,
        client: &Client,
        seen: &mut Option<Seen>,
    ) -> Result<Option<HashMap<String, Ack>>, HaError> {
        let Some(children) = self.children_since(client, "acks", seen).await? else { return Ok(None) };
        let mut out = HashMap::with_capacity(children.len());
        for (name, body) in children {
            let path = format!("{}/{name}", self.dir("acks"));
            let ack = records::read_ack(&body).map_err(|reason| HaError::Decode { path, reason })?;
            out.insert(unescape(&name), ack);
        }
        Ok(Some(out))
    }

    fn ack_path(&self, group_id: &str) -> String {
        format!("{}/{}", self.dir("acks"), escape(group_id))
    }

    /// The write that makes `acks/<group>` match the group's ack, if it
    /// does not.
    fn ack_op(&self, g: &GroupState) -> Option<Op> {
        let path = self.ack_path(&g.key.id());
        match g.ack.as_ref().map(records::ack) {
            // Cannot fail (plain strings and numbers); the group's own write reports it if it does.
            Some(Err(_)) => None,
            Some(Ok(body)) if self.acks.get(&path) != Some(&body) => Some(Op::Put { path, body }),
            Some(Ok(_)) => None,
            None => self.acks.contains_key(&path).then_some(Op::Delete { path }),
        }
    }

    /// The znode writes of one step, in the order that never loses a page.
    fn ops(&self, s: &SharedStep) -> Result<Vec<Op>, HaError> {
        let mut puts = Vec::new();
        let mut deletes = Vec::new();
        let put = |path: String, body: Result<Vec<u8>, String>, what: &str| -> Result<Op, HaError> {
            let body = body.map_err(|reason| HaError::Encode { what: what.to_string(), reason })?;
            if body.len() > MAX_ZNODE_BYTES {
                return Err(HaError::TooLarge { what: path, size: body.len(), limit: MAX_ZNODE_BYTES });
            }
            Ok(Op::Put { path, body })
        };
        if let Some(step) = s.step {
            let done: HashSet<String> = step
                .deliveries
                .iter()
                .filter(|d| d.outcome != DeliveryOutcome::Retrying)
                .map(|d| self.outbox_path(&d.message_id, &d.channel))
                .collect();
            for message in &step.outbox {
                for channel in &message.channels {
                    let path = self.outbox_path(&message.id, channel);
                    // Written by an earlier step, or already delivered: nothing to add.
                    if self.known.contains(&path) || done.contains(&path) {
                        continue;
                    }
                    let entry = OutboxEntry {
                        message: (**message).clone(),
                        channel: channel.clone(),
                        attempts: 0,
                        created_at: message.at,
                    };
                    puts.push(put(path, records::outbox(&entry), "outbox entry")?);
                }
            }
            deletes.extend(done.into_iter().filter(|p| self.known.contains(p)).map(|path| Op::Delete { path }));
            for g in &step.groups.upserted {
                let path = format!("{}/{}", self.dir("groups"), escape(&g.key.id()));
                puts.push(put(path, records::group(g), "group")?);
            }
            for id in &step.groups.removed {
                deletes.push(Op::Delete { path: format!("{}/{}", self.dir("groups"), escape(id)) });
                deletes.push(Op::Delete { path: self.ack_path(id) });
            }
            let mut acks: Vec<Op> = step.groups.upserted.iter().filter_map(|g| self.ack_op(g)).collect();
            let touched: HashSet<String> = (step.groups.upserted.iter().map(|g| g.key.id()))
                .chain(step.groups.removed.iter().cloned())
                .map(|id| self.ack_path(&id))
                .collect();
            acks.extend(self.ack_repairs.iter().filter(|op| !touched.contains(op_path(op))).cloned());
            for op in acks {
                match op {
                    Op::Put { .. } => puts.push(op),
                    Op::Delete { .. } => deletes.push(op),
                }
            }
            if let Some(windows) = &step.maintenance {
                puts.push(put(self.maintenance_path(), records::maintenance(windows), "maintenance")?);
            }
        }
        for silence in s.silences_put {
            let path = format!("{}/{}", self.dir("silences"), escape(&silence.id));
            puts.push(put(path, records::silence(silence), "silence")?);
        }
        for id in s.silences_deleted {
            deletes.push(Op::Delete { path: format!("{}/{}", self.dir("silences"), escape(id)) });
        }
        // Deleting what does not exist would fail the whole transaction; a
        // key both removed and written in one step stays (as in SQLite,
        // where the step's deletions run first).
        let written: HashSet<&str> = puts.iter().map(op_path).collect();
        deletes.retain(
            |op| matches!(op, Op::Delete { path } if self.known.contains(path) && !written.contains(path.as_str())),
        );
        puts.extend(deletes);
        puts.extend(s.requests_done.iter().map(|path| Op::Delete { path: path.clone() }));
        Ok(puts)
    }

    fn outbox_path(&self, message_id: &str, channel: &str) -> String {
        format!("{}/{}@{}", self.dir("outbox"), escape(message_id), escape(channel))
    }

    /// Writes one step under `fence` (after [`SharedState::load`], which
    /// tells it which znodes exist; a write that finds otherwise fails with
    /// `NodeExists` or `NoNode` and needs a reload): fenced `multi` transactions of at most
    /// [`MULTI_BUDGET`] bytes each (an empty step: one with only the fence
    /// check). `Err(Fenced)`: the writer is no longer active; what the
    /// failed transaction held was not written.
    pub async fn commit(&mut self, client: &Client, fence: &Fence, s: &SharedStep<'_>) -> Result<CommitStats, HaError> {
        let ops = self.ops(s)?;
        let mut stats = CommitStats::default();
        let acks_dir = format!("{}/", self.dir("acks"));
        // A step with nothing to write still checks the fence: `Ok` always
        // means "still active", what a caller about to send relies on.
        let mut batches = batches(&ops);
        if batches.is_empty() {
            batches.push(&[]);
        }
        for (i, batch) in batches.into_iter().enumerate() {
            let mut multi = client.new_multi_writer();
            let bad = |e| HaError::zk(&fence.path, e);
            multi.add_check_version(&fence.path, fence.version).map_err(bad)?;
            // The ops before the batch's: the fence check, and the beat in the first.
            let mut lead = 1;
            if let (0, Some(beat)) = (i, s.beat) {
                let path = self.beat_path();
                multi.add_set_data(&path, beat, None).map_err(|e| HaError::zk(&path, e))?;
                lead += 1;
            }
            let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
            for op in batch {
                match op {
                    Op::Put { path, body } if self.known.contains(path) => multi.add_set_data(path, body, None),
                    Op::Put { path, body } => multi.add_create(path, body, &options),
                    Op::Delete { path } => multi.add_delete(path, None),
                }
                .map_err(|e| HaError::zk(op_path(op), e))?;
            }
            // After the ops: a failing op's index stays its place in `batch`.
            for dir in BUMPED.map(|kind| self.dir(kind)) {
                if batch.iter().any(|op| op_path(op).strip_prefix(&dir).is_some_and(|rest| rest.starts_with('/'))) {
                    multi.add_set_data(&dir, &[], None).map_err(|e| HaError::zk(&dir, e))?;
                }
            }
            match multi.commit().await {
                Ok(_) => {}
                Err(MultiWriteError::OperationFailed { index: 0, source: ZkError::NoNode | ZkError::BadVersion }) => {
                    return Err(HaError::Fenced { path: fence.path.clone(), version: fence.version });
                }
                Err(MultiWriteError::OperationFailed { index, source }) => {
                    let path = index
                        .checked_sub(lead)
                        .and_then(|i| batch.get(i))
                        .map_or(self.beat_path(), |op| op_path(op).to_string());
                    return Err(HaError::zk(path, source));
                }
                Err(MultiWriteError::RequestFailed { source: ZkError::SessionExpired }) => {
                    return Err(HaError::Fenced { path: fence.path.clone(), version: fence.version });
                }
                Err(MultiWriteError::RequestFailed { source }) => return Err(HaError::zk(&fence.path, source)),
            }
            stats.transactions += 1;
            for op in batch {
                stats.ops += 1;
                match op {
                    Op::Put { path, body } => {
                        stats.body_bytes += body.len();
                        self.known.insert(path.clone());
                        if path.starts_with(&acks_dir) {
                            self.acks.insert(path.clone(), body.clone());
                        }
                    }
                    Op::Delete { path } => {
                        self.known.remove(path);
                        self.acks.remove(path);
                    }
                }
            }
        }
        self.ack_repairs.clear();
        Ok(stats)
    }
}

/// The bodies of `names` under `dir`; the reads are pipelined in chunks
/// (one round trip per chunk, not per znode). A child deleted since it was
/// listed is left out.
async fn read_bodies(client: &Client, dir: &str, names: &[String]) -> Result<Vec<(String, Vec<u8>)>, HaError> {
    const CHUNK: usize = 512;
    let mut out = Vec::with_capacity(names.len());
    for chunk in names.chunks(CHUNK) {
        let reads: Vec<_> = chunk.iter().map(|name| client.get_data(&format!("{dir}/{name}"))).collect();
        for (name, read) in chunk.iter().zip(reads) {
            match read.await {
                Ok((body, _)) => out.push((name.clone(), body)),
                // Deleted since listed (by an earlier active's last step).
                Err(ZkError::NoNode) => {}
                Err(e) => return Err(HaError::zk(format!("{dir}/{name}"), e)),
            }
        }
    }
    Ok(out)
}

fn op_path(op: &Op) -> &str {
    match op {
        Op::Put { path, .. } | Op::Delete { path } => path,
    }
}

/// `ops` cut into runs of at most [`MULTI_BUDGET`] bytes (a single op over
/// it cannot happen: bodies are at most [`MAX_ZNODE_BYTES`]).
fn batches(ops: &[Op]) -> Vec<&[Op]> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, op) in ops.iter().enumerate() {
        let cost = op.cost();
        if i > start && size + cost > MULTI_BUDGET {
            out.push(&ops[start..i]);
            (start, size) = (i, 0);
        }
        size += cost;
    }
    if start < ops.len() {
        out.push(&ops[start..]);
    }
    out
}

/// A znode name for an id: ASCII letters, digits, `-` and `_` as they are,
/// every other byte as `%XX` (so `/`, `.` and `..` cannot occur, and `@`
/// can separate two names).
fn escape(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_at(root: &str) -> SharedState {
        SharedState { root: root.into(), known: HashSet::new(), acks: HashMap::new(), ack_repairs: Vec::new() }
    }

    #[test]
    fn escaped_names_round_trip_and_are_safe() {
        for id in ["abc-123_x", "a/b", "..", ".", "a@b", "é%41", ""] {
            let e = escape(id);
            assert!(!e.contains(['/', '.', '@']), "{e}");
            assert_eq!(unescape(&e), id);
        }
    }

    #[test]
    fn batches_stay_under_the_budget() {
        let op = |n: usize| Op::Put { path: format!("/r/state/groups/{n}"), body: vec![b'x'; 300_000] };
        let ops: Vec<Op> = (0..7).map(op).collect();
        let cut = batches(&ops);
        assert_eq!(cut.iter().map(|b| b.len()).collect::<Vec<_>>(), [1, 1, 1, 1, 1, 1, 1]);
        let small: Vec<Op> = (0..10_000).map(|n| Op::Delete { path: format!("/r/state/groups/{n:016x}") }).collect();
        let cut = batches(&small);
        assert!(cut.len() > 1);
        assert_eq!(cut.iter().map(|b| b.len()).sum::<usize>(), 10_000);
        for b in cut {
            assert!(b.iter().map(Op::cost).sum::<usize>() <= MULTI_BUDGET);
        }
    }

    #[test]
    fn a_group_removed_and_written_in_one_step_stays() {
        let g = crate::pipeline::GroupState { ack: None, ..big_group(1) };
        let path = format!("/z/state/groups/{}", escape(&g.key.id()));
        let state = SharedState { known: HashSet::from([path.clone()]), ..state_at("/z") };
        let step = StepWrite {
            groups: crate::pipeline::GroupChanges { upserted: vec![g.clone()], removed: vec![g.key.id()] },
            ..Default::default()
        };
        let ops = state.ops(&SharedStep { step: Some(&step), ..Default::default() }).unwrap();
        assert!(matches!(ops.as_slice(), [Op::Put { path: p, .. }] if *p == path), "{ops:?}");
        let removed = StepWrite {
            groups: crate::pipeline::GroupChanges { upserted: vec![], removed: vec![g.key.id(), "unknown".into()] },
            ..Default::default()
        };
        let ops = state.ops(&SharedStep { step: Some(&removed), ..Default::default() }).unwrap();
        assert!(matches!(ops.as_slice(), [Op::Delete { path: p }] if *p == path), "{ops:?}");
    }

    /// An acked group's ack is also written alone (what standbys read),
    /// only when it changed, and deleted when cleared or with its group;
    /// applied requests are deleted last, whether known or not.
    #[test]
    fn acks_are_written_alone_when_they_change_and_requests_deleted_last() {
        let g = big_group(1);
        let id = g.key.id();
        let (group_path, ack_path) =
            (format!("/z/state/groups/{}", escape(&id)), format!("/z/state/acks/{}", escape(&id)));
        let mut state = state_at("/z");
        let ops = |state: &SharedState, upserted: Vec<crate::pipeline::GroupState>, removed: Vec<String>| {
            let step = StepWrite { groups: crate::pipeline::GroupChanges { upserted, removed }, ..Default::default() };
            let done = ["/z/state/requests/r-0000000007".to_string()];
            let ops = state.ops(&SharedStep { step: Some(&step), requests_done: &done, ..Default::default() }).unwrap();
            ops.iter().map(|op| (matches!(op, Op::Put { .. }), op_path(op).to_string())).collect::<Vec<_>>()
        };
        let request = (false, "/z/state/requests/r-0000000007".to_string());
        assert_eq!(
            ops(&state, vec![g.clone()], vec![]),
            [(true, group_path.clone()), (true, ack_path.clone()), request.clone()]
        );
        state.known.extend([group_path.clone(), ack_path.clone()]);
        state.acks.insert(ack_path.clone(), records::ack(g.ack.as_ref().unwrap()).unwrap());
        assert_eq!(ops(&state, vec![g.clone()], vec![]), [(true, group_path.clone()), request.clone()], "unchanged");
        let unacked = crate::pipeline::GroupState { ack: None, ..g.clone() };
        assert_eq!(
            ops(&state, vec![unacked], vec![]),
            [(true, group_path.clone()), (false, ack_path.clone()), request.clone()]
        );
        assert_eq!(ops(&state, vec![], vec![id]), [(false, group_path), (false, ack_path), request]);
    }

    /// A group as large as real ones get: five group labels, three firing alerts told, an ack.
    fn big_group(n: usize) -> crate::pipeline::GroupState {
        use crate::model::{Alert, Labels, Severity, Timestamp};
        let labels = Labels::from_pairs([
            ("alertname".to_string(), "ZkOutstandingRequestsHigh".to_string()),
            ("cluster".to_string(), format!("production-cluster-{n}")),
            ("instance".to_string(), format!("zookeeper-{n}.prod.example.com:2181")),
            ("team".to_string(), "storage-platform".to_string()),
            ("region".to_string(), "eu-west-1".to_string()),
        ]);
        let told = (0..3).map(|i| Alert::new(labels.clone(), Severity::P1, i as f64, Timestamp::from_millis(i)));
        crate::pipeline::GroupState {
            key: crate::pipeline::GroupKey { route: 3, labels: labels.clone() },
            next_flush: Timestamp::from_millis(1_765_000_000_000),
            notified_firing: told.map(|a| a.fingerprint).collect(),
            notified_tier: Some(Severity::P1),
            last_sent: Some(Timestamp::from_millis(1_765_000_000_000)),
            paged_since: Some(Timestamp::from_millis(1_765_000_000_000)),
            escalated: true,
            ack: Some(crate::pipeline::Ack {
                by: "alice@example.com".into(),
                comment: "looking at the disk on zk3".into(),
                at: Timestamp::from_millis(1_765_000_000_000),
                until: Some(Timestamp::from_millis(1_765_000_600_000)),
            }),
            last_reason: Some(crate::pipeline::Reason::Repeat),
            told: 123_456,
        }
    }

    #[test]
    fn a_group_znode_keeps_every_field_of_the_log() {
        let g = big_group(7);
        assert_eq!(records::read_group(&records::group(&g).unwrap()).unwrap(), g);
    }

    /// 10,000 groups (a first full write): each znode far under the limit,
    /// and the write cut into transactions that each stay under the budget.
    #[test]
    fn ten_thousand_groups_fit() {
        let groups: Vec<_> = (0..10_000).map(big_group).collect();
        let sizes: Vec<usize> = groups.iter().map(|g| records::group(g).unwrap().len()).collect();
        let (max, total) = (*sizes.iter().max().unwrap(), sizes.iter().sum::<usize>());
        assert!(max < 1024, "{max} bytes for one group");
        let step = StepWrite {
            groups: crate::pipeline::GroupChanges { upserted: groups, removed: vec![] },
            ..Default::default()
        };
        let state = state_at("/zkalert/prod");
        let ops = state.ops(&SharedStep { step: Some(&step), ..Default::default() }).unwrap();
        assert_eq!(ops.len(), 20_000, "each group, and its ack alone");
        let cut = batches(&ops);
        let costs: Vec<usize> = cut.iter().map(|b| b.iter().map(Op::cost).sum()).collect();
        assert!(costs.iter().all(|&c| c <= MULTI_BUDGET), "{costs:?}");
        println!(
            "10,000 groups: {max} bytes largest znode, {} average, {total} total, {} transactions",
            total / 10_000,
            cut.len()
        );
    }
}
