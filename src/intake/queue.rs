//! The queue from the API's threads to the runner's loop: checked posts
//! wait here until the loop takes them. It is bounded by alerts, not by
//! posts: a post may hold 100,000 alerts, so a bound in posts would let a
//! few hundred large posts hold gigabytes, and would make Prometheus'
//! posts of 64 wait while the queue holds little.

use super::IntakeBatch;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// At most this many posted alerts wait for the loop; a post that would
/// pass it waits for room.
pub const MAX_QUEUED_ALERTS: usize = 200_000;
const _: () = assert!(MAX_QUEUED_ALERTS >= super::MAX_ALERTS_PER_POST, "one post must fit");

/// A checked post and the room it takes in the queue (given back when the
/// loop takes the post).
struct Queued {
    batch: IntakeBatch,
    _room: OwnedSemaphorePermit,
}

/// The API's end.
#[derive(Clone)]
pub struct IntakeSender {
    posts: mpsc::UnboundedSender<Queued>,
    room: Arc<Semaphore>,
    /// The queue's bound, in alerts.
    bound: u32,
}

/// The loop's end.
pub struct IntakeReceiver {
    posts: mpsc::UnboundedReceiver<Queued>,
}

/// Why a post was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the runner is not running")]
pub struct Closed;

/// A queue holding at most `alerts` alerts (and at least one post).
pub fn queue(alerts: usize) -> (IntakeSender, IntakeReceiver) {
    let (posts, receiver) = mpsc::unbounded_channel();
    let bound = u32::try_from(alerts.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
    let room = Arc::new(Semaphore::new(bound as usize));
    (IntakeSender { posts, room, bound }, IntakeReceiver { posts: receiver })
}

impl IntakeSender {
    /// Queues `batch` once there is room for its alerts (a post larger than
    /// the whole queue waits for it to be empty).
    pub async fn send(&self, batch: IntakeBatch) -> Result<(), Closed> {
        let wanted = u32::try_from(batch.alerts.len().max(1)).unwrap_or(u32::MAX).min(self.bound);
        let room = self.room.clone().acquire_many_owned(wanted).await.map_err(|_| Closed)?;
        self.posts.send(Queued { batch, _room: room }).map_err(|_| Closed)
    }
}

impl IntakeReceiver {
    /// The next post; its room is given back.
    pub async fn recv(&mut self) -> Option<IntakeBatch> {
        self.posts.recv().await.map(|q| q.batch)
    }

    /// The next post if one is waiting.
    pub fn try_recv(&mut self) -> Option<IntakeBatch> {
        self.posts.try_recv().ok().map(|q| q.batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::{IntakeAlert, IntakeBatch};
    use crate::model::{Alert, Labels, Severity, Timestamp};
    use std::time::Duration;

    fn batch(n: usize) -> IntakeBatch {
        let alert = Alert::new(Labels::from_pairs([("alertname", "A")]), Severity::P2, 1.0, Timestamp::default());
        IntakeBatch { alerts: vec![IntakeAlert { alert: alert.into(), ends_at: Timestamp::default() }; n] }
    }

    #[tokio::test]
    async fn the_queue_holds_alerts_up_to_its_bound_and_a_post_waits_for_room() {
        let (sender, mut receiver) = queue(100);
        sender.send(batch(60)).await.unwrap();
        sender.send(batch(40)).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(50), sender.send(batch(1))).await;
        assert!(waiting.is_err(), "100 alerts queued: the 101st waits");
        assert_eq!(receiver.recv().await.map(|b| b.alerts.len()), Some(60));
        sender.send(batch(50)).await.expect("room again once the loop took a post");
        assert_eq!(receiver.try_recv().map(|b| b.alerts.len()), Some(40));
        assert_eq!(receiver.try_recv().map(|b| b.alerts.len()), Some(50));
        assert!(receiver.try_recv().is_none());
        sender.send(batch(500)).await.expect("a post larger than the queue waits for it to be empty");
        assert_eq!(receiver.try_recv().map(|b| b.alerts.len()), Some(500));
        drop(receiver);
        assert_eq!(sender.send(batch(1)).await, Err(Closed));
    }
}
