//! The bound on work: at most `max_concurrent` generations run, at most `max_queue` requests
//! wait for one of those slots, and a request past both is turned away at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub(crate) struct Queue {
    slots: Arc<Semaphore>,
    /// Requests holding a ticket: running or waiting.
    admitted: AtomicUsize,
    capacity: usize,
}

impl Queue {
    pub(crate) fn new(max_concurrent: usize, max_queue: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_concurrent)),
            admitted: AtomicUsize::new(0),
            capacity: max_concurrent.saturating_add(max_queue),
        }
    }

    /// A ticket if fewer than `max_concurrent + max_queue` requests hold one.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Ticket> {
        self.admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .ok()?;
        Some(Ticket {
            queue: Arc::clone(self),
        })
    }
}

/// A place in the queue, given up when dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    queue: Arc<Queue>,
}

impl Ticket {
    /// Waits for a generation slot.
    pub(crate) async fn slot(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.queue.slots)
            .acquire_owned()
            .await
            // The semaphore is never closed.
            .unwrap_or_else(|_| unreachable!("the generation semaphore is never closed"))
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.queue.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_capacity() {
        let queue = Arc::new(Queue::new(1, 2));
        let tickets: Vec<_> = (0..3).map(|_| queue.admit().expect("room")).collect();
        assert!(queue.admit().is_none());
        drop(tickets);
        assert!(queue.admit().is_some());
    }
}
