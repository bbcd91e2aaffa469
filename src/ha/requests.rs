//! API writes (silences, acks) sent through a standby: the standby does not
//! apply them itself, it queues each as a request znode
//! `<root>/state/requests/r-<sequence>` (PERSISTENT_SEQUENTIAL, the write
//! as JSON) and answers once ZooKeeper has it. The active replica reads the
//! oldest requests each step, applies them as it applies its own API's
//! writes, and deletes them in the same fenced `multi` that writes what they
//! changed (`SharedStep::requests_done`): a request is applied by one active
//! replica, and one that dies before deleting it leaves it to the next
//! (applying again is harmless: a silence keeps its id, an ack is set again).
//!
//! Bounded: a request is at most [`MAX_REQUEST_BYTES`], the queue at most
//! about [`MAX_QUEUED`] (checked before each create), and the active reads at
//! most [`MAX_PER_STEP`] a step. A request that does not decode is logged
//! and deleted.

use super::{HaError, ensure_path};
use crate::model::Timestamp;
use crate::pipeline::{Ack, Silence};
use crate::state::shared_records as records;
use zookeeper_client::{Acls, Client, CreateMode, Error as ZkError};

/// Largest request body. The API accepts silences with long comments; one
/// over this is refused (413) rather than queued.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// A standby refuses new requests while this many wait (no active replica
/// is draining them).
pub const MAX_QUEUED: usize = 10_000;

/// Most requests the active replica reads and applies in one step.
pub const MAX_PER_STEP: usize = 1_000;

/// Request znodes are `r-<sequence>`.
const PREFIX: &str = "r-";

/// What an API write asks for, as the active replica applies it.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Adds (or replaces, by id) a silence.
    AddSilence(Silence),
    /// Expires silence `id` as of `at` (when the standby was asked).
    ExpireSilence { id: String, at: Timestamp },
    /// Acknowledges these groups (the standby resolved the API's group id
    /// or matchers to them).
    Ack { group_ids: Vec<String>, ack: Ack },
}

/// One write and the replica it came through (for the logs).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub from: String,
    pub write: Write,
}

/// Why a request could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the write is {size} bytes encoded, over the {limit}-byte limit of a write sent through a standby")]
    TooLarge { size: usize, limit: usize },
    #[error("{queued} writes are already waiting for the active replica (at most {limit}); is one active?")]
    Full { queued: usize, limit: usize },
    #[error("cannot queue the write for the active replica: {0}")]
    Ha(#[from] HaError),
}

/// The body of a request znode, or why it cannot be one.
pub fn encode(request: &Request) -> Result<Vec<u8>, SendError> {
    let body = records::request(request).map_err(|reason| HaError::Encode { what: "write request".into(), reason })?;
    if body.len() > MAX_REQUEST_BYTES {
        return Err(SendError::TooLarge { size: body.len(), limit: MAX_REQUEST_BYTES });
    }
    Ok(body)
}

/// A request znode's body as a request; over [`MAX_REQUEST_BYTES`] or not
/// a request: the reason.
pub fn decode(body: &[u8]) -> Result<Request, String> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err(format!("{} bytes, over the {MAX_REQUEST_BYTES}-byte limit", body.len()));
    }
    records::read_request(body)
}

/// A queued request as the active replica reads it: its znode, and the
/// request or why it does not decode.
#[derive(Debug)]
pub struct Queued {
    pub path: String,
    pub request: Result<Request, String>,
}

/// The request queue of one deployment: `<root>/state/requests`.
#[derive(Debug, Clone)]
pub struct Requests {
    dir: String,
}

impl Requests {
    /// The queue under `root`, creating its znode if missing.
    pub async fn open(client: &Client, root: &str) -> Result<Requests, HaError> {
        let dir = format!("{root}/state/requests");
        ensure_path(client, &dir).await?;
        Ok(Requests { dir })
    }

    /// Queues `body` (from [`encode`]) unless [`MAX_QUEUED`] wait already;
    /// `Ok` once ZooKeeper has it. Returns its znode.
    pub async fn send(&self, client: &Client, body: &[u8]) -> Result<String, SendError> {
        let stat = client.check_stat(&self.dir).await.map_err(|e| HaError::zk(&self.dir, e))?;
        let queued = stat.map_or(0, |s| s.num_children.max(0) as usize);
        if queued >= MAX_QUEUED {
            return Err(SendError::Full { queued, limit: MAX_QUEUED });
        }
        let prefix = format!("{}/{PREFIX}", self.dir);
        let options = CreateMode::PersistentSequential.with_acls(Acls::anyone_all());
        let (_, sequence) = client.create(&prefix, body, &options).await.map_err(|e| HaError::zk(&prefix, e))?;
        Ok(format!("{prefix}{sequence}"))
    }

    /// The oldest queued requests, at most [`MAX_PER_STEP`], oldest first
    /// (reads pipelined); also every queued znode's path, to forget applied
    /// requests that are gone.
    pub async fn oldest(&self, client: &Client) -> Result<(Vec<Queued>, Vec<String>), HaError> {
        let names = client.list_children(&self.dir).await.map_err(|e| HaError::zk(&self.dir, e))?;
        let mut by_sequence: Vec<(u64, String)> = names
            .into_iter()
            .filter_map(|n| n.strip_prefix(PREFIX).and_then(|s| s.parse().ok()).map(|seq| (seq, n)))
            .collect();
        by_sequence.sort();
        let all: Vec<String> = by_sequence.iter().map(|(_, n)| format!("{}/{n}", self.dir)).collect();
        let reads: Vec<_> = all.iter().take(MAX_PER_STEP).map(|path| (path, client.get_data(path))).collect();
        let mut out = Vec::with_capacity(reads.len());
        for (path, read) in reads {
            match read.await {
                Ok((body, _)) => out.push(Queued { path: path.clone(), request: decode(&body) }),
                // Deleted since listed (by the previous active's last step).
                Err(ZkError::NoNode) => {}
                Err(e) => return Err(HaError::zk(path, e)),
            }
        }
        Ok((out, all))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{MatchOp, Matcher, Matchers};

    fn silence(comment: &str) -> Silence {
        Silence {
            id: "0123456789abcdef".into(),
            matchers: Matchers(vec![
                Matcher::new("instance", MatchOp::Eq, "zk1:2181").unwrap(),
                Matcher::new("cluster", MatchOp::Re, "prod-.*").unwrap(),
            ]),
            starts_at: Timestamp::from_millis(1_000),
            ends_at: Timestamp::from_millis(3_601_000),
            created_by: "alice".into(),
            comment: comment.into(),
        }
    }

    #[test]
    fn every_write_round_trips() {
        let ack = Ack {
            by: "bob".into(),
            comment: "on it".into(),
            at: Timestamp::from_millis(5_000),
            until: Some(Timestamp::from_millis(9_000)),
        };
        for write in [
            Write::AddSilence(silence("upgrade \"zk1\" ✓")),
            Write::ExpireSilence { id: "s/1".into(), at: Timestamp::from_millis(7_000) },
            Write::Ack { group_ids: vec!["g1".into(), "g2".into()], ack: Ack { until: None, ..ack.clone() } },
            Write::Ack { group_ids: vec!["g3".into()], ack },
        ] {
            let request = Request { from: "zkalert-b".into(), write };
            let body = encode(&request).unwrap();
            assert_eq!(decode(&body).unwrap(), request, "{}", String::from_utf8_lossy(&body));
        }
    }

    #[test]
    fn an_oversized_write_is_refused_before_it_is_queued() {
        let request = Request { from: "b".into(), write: Write::AddSilence(silence(&"x".repeat(MAX_REQUEST_BYTES))) };
        match encode(&request) {
            Err(SendError::TooLarge { size, limit }) => assert!(size > limit && limit == MAX_REQUEST_BYTES),
            other => panic!("{other:?}"),
        }
    }

    /// Whatever a znode holds, decoding answers (never panics) and refuses
    /// what is not a whole, valid request.
    #[test]
    fn hostile_bodies_are_refused() {
        let valid = encode(&Request { from: "b".into(), write: Write::AddSilence(silence("c")) }).unwrap();
        let text = String::from_utf8(valid.clone()).unwrap();
        let oversized = format!("{{\"from\":\"{}\"}}", "b".repeat(MAX_REQUEST_BYTES));
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            b"null".to_vec(),
            vec![0xff, 0xfe, 0x00],
            b"{\"from\":\"b\"}".to_vec(),
            b"{\"from\":\"b\",\"write\":{\"reboot\":{}}}".to_vec(),
            b"{\"from\":\"b\",\"write\":{\"expire_silence\":{\"id\":\"x\",\"at\":\"soon\"}}}".to_vec(),
            text.replace("\"=~\"", "\"~~\"").into_bytes(),
            text.replace("prod-.*", "prod-(").into_bytes(),
            text.replace("\"from\"", "\"extra\":1,\"from\"").into_bytes(),
            valid[..valid.len() / 2].to_vec(),
            oversized.into_bytes(),
            "[".repeat(10_000).into_bytes(),
            "[".repeat(100_000).into_bytes(),
        ];
        for body in cases {
            let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
            assert!(decode(&body).is_err(), "{shown:?} decoded");
        }
        assert!(decode(&valid).is_ok());
    }
}
