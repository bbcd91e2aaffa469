//! Held sessions: besides its polls, a `zookeeper` source keeps one
//! ZooKeeper client session per node, connected to that node alone, and
//! wakes its poll when one drops (a killed process's sockets are reset by
//! the kernel at once; a hung node misses the session's pings within about
//! a third of its timeout) or comes back, or when the ensemble's
//! `/zookeeper/config` changes. A dropped session is a reason to poll, not
//! an outage: alerts still come from the rules over that poll.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use zookeeper_client::{Client, SessionState};

/// Wait before the first reconnect to a node whose session ended; doubled
/// up to the session timeout.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Holds a session to each of `nodes` until the returned tasks are
/// aborted, waking `wake` on every change worth a poll.
pub fn hold(nodes: &[String], session_timeout: Duration, wake: Arc<Notify>) -> Vec<tokio::task::JoinHandle<()>> {
    nodes.iter().map(|node| tokio::spawn(hold_one(node.clone(), session_timeout, wake.clone()))).collect()
}

/// One node's session, reconnected with backoff for as long as it runs.
async fn hold_one(node: String, session_timeout: Duration, wake: Arc<Notify>) {
    let mut backoff = FIRST_BACKOFF;
    // A node that was connected and is not: poll once, not on every retry.
    let mut was_connected = false;
    loop {
        let connected =
            Client::connector().with_session_timeout(session_timeout).with_connection_timeout(session_timeout);
        match connected.connect(&node).await {
            Ok(client) => {
                backoff = FIRST_BACKOFF;
                if !was_connected {
                    tracing::debug!(node = %node, "session held");
                }
                was_connected = true;
                follow(&node, &client, &wake).await;
                // It ended (dropped, expired): the node may be dead; poll.
                wake.notify_one();
            }
            Err(e) => {
                if was_connected {
                    wake.notify_one();
                    was_connected = false;
                }
                tracing::trace!(node = %node, error = %e, "no session");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(session_timeout);
            }
        }
    }
}

/// Follows one session until it ends, waking on a lost connection, a
/// reconnection and a change of the ensemble's configuration.
async fn follow(node: &str, client: &Client, wake: &Notify) {
    let mut state = client.state_watcher();
    loop {
        let config = client.get_and_watch_data("/zookeeper/config").await;
        let config_changed = async {
            match config {
                Ok((_, _, watcher)) => {
                    watcher.changed().await;
                }
                // An older server without the node, or an ACL: only the connection counts.
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            s = state.changed() => {
                tracing::debug!(node = %node, state = %s, "session state");
                wake.notify_one();
                if s.is_terminated() {
                    return;
                }
                if s == SessionState::Disconnected {
                    // Single-host client: it retries this node; the next
                    // change (back, or expired) wakes the poll again.
                    let s = state.changed().await;
                    wake.notify_one();
                    if s.is_terminated() {
                        return;
                    }
                }
            }
            () = config_changed => wake.notify_one(),
        }
    }
}
