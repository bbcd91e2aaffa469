//! Replicas coordinated through ZooKeeper (docs/ha.md): leader election
//! (`election`: who sends) and the notification state the active replica
//! shares (`shared`: what a new active replica resumes from), each write
//! fenced by the writer's election znode.
//!
//! `zkalert run` uses them through `runner::replica` (only the active
//! replica sends; failover resumes from the shared state; API writes sent
//! to a standby reach the active replica as `requests`). Coordination loss
//! comes next (docs/ha.md).

pub mod election;
pub mod requests;
pub mod shared;

pub use election::{Election, Fence, ReplicaInfo, Role};
pub use shared::{SharedState, SharedStep};

/// What can go wrong talking to the coordination ensemble.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    #[error("coordination ensemble {hosts}: {error}")]
    Connect { hosts: String, error: zookeeper_client::Error },
    #[error("coordination znode {path}: {error}")]
    Zk { path: String, error: zookeeper_client::Error },
    /// The writer's election znode is gone or changed: its session expired
    /// and another replica may be active. It must not send.
    #[error("fenced: election znode {path} (version {version}) is no longer ours; this replica is not active")]
    Fenced { path: String, version: i32 },
    #[error("coordination znode {path}: cannot decode: {reason}")]
    Decode { path: String, reason: String },
    #[error("coordination: cannot encode {what}: {reason}")]
    Encode { what: String, reason: String },
    #[error("coordination: {what} is {size} bytes, over the {limit}-byte limit of one znode")]
    TooLarge { what: String, size: usize, limit: usize },
}

impl HaError {
    fn zk(path: impl Into<String>, error: zookeeper_client::Error) -> HaError {
        HaError::Zk { path: path.into(), error }
    }
}

/// Creates `path` and its missing parents as persistent znodes.
async fn ensure_path(client: &zookeeper_client::Client, path: &str) -> Result<(), HaError> {
    use zookeeper_client::{Acls, CreateMode, Error};
    let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
    match client.mkdir(path, &options).await {
        Ok(()) | Err(Error::NodeExists) => Ok(()),
        Err(error) => Err(HaError::zk(path, error)),
    }
}
