//! Connection slots that silent clients cannot keep: when every slot is taken, the
//! connections with no request in flight are closed, oldest first, before anyone is refused.
//!
//! This is nginx's answer (`ngx_drain_connections`: at the worker's connection limit, it
//! closes up to 32 "reusable" connections, keep-alive and not yet read, oldest first) rather
//! than Apache `mod_reqtimeout`'s rate-based header deadline or HAProxy's fixed `timeout
//! http-request`: a deadline alone still lets many addresses fill every slot for as long as
//! it lasts (30 s here), while closing the idle first costs a legitimate client at most a
//! reconnect, and only when the node is full. A connection is *idle* while none of its
//! requests is being handled: before its first request head is complete (silent, or
//! trickling headers), between keep-alive requests, or in a TLS handshake. A connection
//! whose request is being served is never closed here; body deadlines handle slow bodies.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Most connections closed at once when the slots run out.
const DRAIN_BATCH: usize = 32;

/// One open connection as the drain sees it.
pub struct Activity {
    /// Requests being handled now.
    pub in_flight: AtomicUsize,
    /// Told when the drain closes this connection.
    pub close: Notify,
}

impl Activity {
    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }
}

/// Every open connection of one listener, in the order they were accepted.
#[derive(Default)]
pub struct Open {
    next: AtomicU64,
    all: Mutex<BTreeMap<u64, Arc<Activity>>>,
}

/// A connection's entry in [`Open`], removed on drop.
pub struct Entry {
    open: Arc<Open>,
    id: u64,
    pub activity: Arc<Activity>,
}

impl Open {
    /// Registers a newly accepted connection.
    pub fn add(self: &Arc<Self>) -> Entry {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            close: Notify::new(),
        });
        self.all
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, activity.clone());
        Entry {
            open: self.clone(),
            id,
            activity,
        }
    }

    /// Closes up to [`DRAIN_BATCH`] idle connections, oldest first; how many were told to.
    pub fn drain_idle(&self) -> usize {
        let all = self.all.lock().unwrap_or_else(|p| p.into_inner());
        let mut closed = 0;
        for activity in all.values() {
            if closed == DRAIN_BATCH {
                break;
            }
            if activity.idle() {
                // `notify_one` keeps the permit if the connection is not waiting right now.
                activity.close.notify_one();
                closed += 1;
            }
        }
        closed
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.open
            .all
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_idle_connections_are_drained_and_busy_ones_kept() {
        let open = Arc::new(Open::default());
        let entries: Vec<Entry> = (0..40).map(|_| open.add()).collect();
        entries[0].activity.in_flight.store(1, Ordering::Release);
        assert_eq!(open.drain_idle(), DRAIN_BATCH);
        // The busy one is not told; the 32 oldest idle ones (1..=32) are; 33.. are not.
        let told = |e: &Entry| {
            let n = e.activity.close.notified();
            tokio::pin!(n);
            n.as_mut().enable()
        };
        assert!(!told(&entries[0]));
        assert!(entries[1..=32].iter().all(told));
        assert!(!entries[33..].iter().any(told));
        drop(entries);
        assert_eq!(open.drain_idle(), 0);
    }
}
