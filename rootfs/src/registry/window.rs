//! One window of parts for all the ranged blobs of a pull.
//!
//! A pull downloads two blobs at once so that the next layer's first bytes overlap the current
//! layer's extraction. With each blob fetching `in_flight` parts of its own, two large blobs
//! held twice the memory the setting promises (99 MiB measured for 4 parts of 8 MiB each); with
//! one blob at a time, the link idled between blobs. Here every ranged blob of a pull shares
//! `in_flight` slots: a part takes a slot before it is asked for and gives it back once its
//! bytes went into the channel to the extractor.
//!
//! Slots go to the blobs in the order they are read: a blob gets its turn once every blob
//! before it has asked for all of its parts ([`Ticket`]s are taken in that order, when the
//! downloads are created). That order is what rules out a deadlock: the parts that hold slots
//! are either the current blob's, which the extractor is reading, or a later blob's taken once
//! no earlier blob needs a slot any more.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// The slots of one pull.
#[derive(Debug)]
pub struct Window {
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Debug)]
struct State {
    /// Slots not taken.
    free: usize,
    /// The ticket whose blob may take slots now.
    turn: u64,
    /// The next ticket to give out.
    issued: u64,
    /// Tickets done out of order (a later blob that failed or needed no ranges).
    done: BTreeSet<u64>,
}

impl Window {
    /// A window of `slots` parts (at least one).
    pub fn new(slots: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                free: slots.max(1),
                turn: 0,
                issued: 0,
                done: BTreeSet::new(),
            }),
            changed: Notify::new(),
        })
    }

    /// The next place in the order of blobs; take it when the blob's download is created.
    pub fn ticket(self: &Arc<Self>) -> Ticket {
        let mut state = self.lock();
        let n = state.issued;
        state.issued += 1;
        Ticket {
            window: self.clone(),
            n,
        }
    }

    /// The state; a panic elsewhere while it was held cannot leave it inconsistent (every
    /// change is one or two plain assignments), so a poisoned lock is used as it is.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A blob's place in the order; dropping it (every part asked for, or the blob given up) hands
/// the turn on.
#[derive(Debug)]
pub struct Ticket {
    window: Arc<Window>,
    n: u64,
}

impl Ticket {
    /// Wait for this blob's turn and a free slot.
    pub async fn slot(&self) -> Slot {
        loop {
            let notified = self.window.changed.notified();
            tokio::pin!(notified);
            // Registered before the check, so a slot freed between the check and the wait
            // still wakes this one.
            notified.as_mut().enable();
            {
                let mut state = self.window.lock();
                if state.turn == self.n && state.free > 0 {
                    state.free -= 1;
                    return Slot {
                        window: self.window.clone(),
                    };
                }
            }
            notified.await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.window.lock();
        state.done.insert(self.n);
        loop {
            let turn = state.turn;
            if !state.done.remove(&turn) {
                break;
            }
            state.turn += 1;
        }
        drop(state);
        self.window.changed.notify_waiters();
    }
}

/// A part's slot; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    window: Arc<Window>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.window.lock().free += 1;
        self.window.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn ready(ticket: &Ticket) -> Option<Slot> {
        tokio::time::timeout(Duration::from_millis(50), ticket.slot())
            .await
            .ok()
    }

    #[tokio::test]
    async fn slots_go_to_the_blobs_in_order_and_come_back() {
        let window = Window::new(2);
        let (a, b) = (window.ticket(), window.ticket());
        // The second blob waits while the first has parts to ask for, even with slots free.
        assert!(ready(&b).await.is_none());
        let a1 = ready(&a).await.expect("a slot");
        let _a2 = ready(&a).await.expect("a second slot");
        assert!(ready(&a).await.is_none(), "only two slots");
        // The first blob asked for all its parts: the turn passes, but the slots are taken.
        drop(a);
        assert!(ready(&b).await.is_none());
        drop(a1);
        let _b1 = ready(&b).await.expect("b gets the freed slot");
    }

    #[tokio::test]
    async fn a_waiting_blob_wakes_when_a_slot_comes_back() {
        let window = Window::new(1);
        let a = window.ticket();
        let taken = ready(&a).await.expect("a slot");
        drop(a);
        let b = window.ticket();
        let waiter = tokio::spawn(async move { b.slot().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(taken);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("joined");
    }

    #[tokio::test]
    async fn a_later_blob_done_first_does_not_skip_an_earlier_one() {
        let window = Window::new(1);
        let (a, b, c) = (window.ticket(), window.ticket(), window.ticket());
        drop(b);
        assert!(ready(&c).await.is_none(), "a still has its turn");
        drop(a);
        assert!(ready(&c).await.is_some(), "b was done: c is next");
    }
}
