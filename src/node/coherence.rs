//! Cache coherence across node processes on one PostgreSQL database.
//!
//! Each process caches grants and the set of owners it hosts; the single-process figures
//! depend on those caches. With several processes, a change made through one must be
//! enforced by every other on its very next request. The protocol:
//!
//! 1. A change and its announcement commit together: inside the writing transaction,
//!    `pg_notify('gn_cache', "VERSION g OWNER APP")` with VERSION from a sequence. A change
//!    that rolls back announces nothing.
//! 2. Every process `LISTEN`s. On an announcement it drops what it names from its caches,
//!    then records `seen = VERSION` in its `node_processes` row.
//! 3. The writer acknowledges the change only after a barrier: every live process has seen
//!    VERSION. So when the client hears "done", no process can answer from the old grant.
//! 4. Live means a heartbeat in the last [`LEASE`] by PostgreSQL's clock. A process trusts
//!    its caches only while its own last heartbeat, timed from when it was sent, is younger
//!    than the lease (less a margin) and its `LISTEN` connection is up. A process that is
//!    cut off (its notification connection lost, PostgreSQL out of reach, or simply stuck)
//!    therefore stops trusting its caches before the others stop waiting for it, and reads
//!    the database until it has resynchronised: reconnected, emptied its caches, and
//!    heartbeated again.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::{self, Conn, Db, StoreError};

/// How long a heartbeat vouches for a process.
pub const LEASE: Duration = Duration::from_secs(2);
/// How often a process heartbeats.
const HEARTBEAT: Duration = Duration::from_millis(400);
/// A process stops trusting its caches this much before its lease ends (clock rates and
/// scheduling).
const MARGIN: Duration = Duration::from_millis(500);

/// What an announcement names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// One grant: (owner, application).
    Grant(String, String),
    /// An owner created or removed (and with it, its grants).
    Owner(String),
}

/// Announces `change` inside the caller's transaction; returns its version, for
/// [`Coherence::barrier`], or `None` on a database no other process shares.
pub fn announce(conn: &Conn, change: &Change) -> Result<Option<i64>, StoreError> {
    let payload = match change {
        Change::Grant(owner, app) => format!("g {owner} {app}"),
        Change::Owner(owner) => format!("o {owner}"),
    };
    store::coherence::announce(conn, &payload)
}

/// This process's part in the protocol.
pub struct Coherence {
    db: Db,
    id: String,
    /// Whether the `LISTEN` connection is up and the caches were emptied since it came up.
    listening: AtomicBool,
    /// When the last successful heartbeat was sent.
    vouched: Mutex<Option<Instant>>,
    /// The highest version applied to the caches.
    seen: AtomicI64,
    /// How many barriers are waiting, and the poller's wake-up.
    waiters: std::sync::atomic::AtomicUsize,
    wake_poller: tokio::sync::Notify,
    /// The poller's latest reading.
    snapshots: tokio::sync::watch::Sender<Option<Arc<Snapshot>>>,
}

/// What a process does with an announcement: drop the named entries from its caches.
pub type Invalidate = Arc<dyn Fn(Option<&Change>) + Send + Sync>;

impl Coherence {
    /// This process's part, under the id kept in `id_file` (made on first start). A process
    /// restarted on its data directory keeps its id, so its new row replaces the old one at
    /// once: writers do not wait out the dead process's lease.
    pub fn new(db: Db, id_file: &std::path::Path) -> std::io::Result<Coherence> {
        let id = match std::fs::read_to_string(id_file) {
            Ok(id) if id.trim().len() == 16 => id.trim().to_owned(),
            _ => {
                let mut raw = [0u8; 8];
                getrandom::getrandom(&mut raw).map_err(|e| std::io::Error::other(e.to_string()))?;
                let id = hex::encode(raw);
                std::fs::write(id_file, &id)?;
                id
            }
        };
        Ok(Coherence {
            db,
            id,
            listening: AtomicBool::new(false),
            vouched: Mutex::new(None),
            seen: AtomicI64::new(0),
            waiters: std::sync::atomic::AtomicUsize::new(0),
            wake_poller: tokio::sync::Notify::new(),
            snapshots: tokio::sync::watch::Sender::new(None),
        })
    }

    /// Whether this process may answer from its caches now.
    pub fn trusted(&self) -> bool {
        self.listening.load(Ordering::Acquire)
            && self
                .vouched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|at| at.elapsed() < LEASE - MARGIN)
    }

    /// Keeps the `LISTEN` connection and the heartbeat going until `stop`. `invalidate`
    /// gets each announcement, and `None` for "drop everything" (on every (re)connection).
    pub async fn run(
        self: Arc<Self>,
        invalidate: Invalidate,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if *stop.borrow() {
                break;
            }
            // Announcements arrive on the database driver's runtime; they are applied here,
            // in order, where blocking on the database is allowed.
            let (tx, mut messages) = tokio::sync::mpsc::unbounded_channel::<String>();
            let listener = {
                let db = self.db.clone();
                tokio::task::spawn_blocking(move || {
                    store::coherence::listen(&db, move |payload| {
                        let _ = tx.send(payload.to_owned());
                    })
                })
                .await
            };
            let Ok(Ok(mut listener)) = listener else {
                tracing::warn!("cache notifications unavailable; reading the database");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(250)) => continue,
                    _ = stop.changed() => break,
                }
            };
            // Listening: from here every change is announced to us. Join (the join time
            // tells writers whose changes committed before it not to wait for us), then
            // drop everything cached before, which may be stale.
            if !self.join().await {
                drop(listener);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(250)) => continue,
                    _ = stop.changed() => break,
                }
            }
            invalidate(None);
            self.listening.store(true, Ordering::Release);
            let mut tick = tokio::time::interval(HEARTBEAT);
            loop {
                tokio::select! {
                    Some(payload) = messages.recv() => {
                        // Everything that has arrived, applied in order, acknowledged once.
                        let mut batch = vec![payload];
                        while let Ok(more) = messages.try_recv() {
                            batch.push(more);
                        }
                        self.on_messages(batch, &invalidate).await
                    }
                    _ = tick.tick() => self.heartbeat().await,
                    _ = &mut listener.ended => break,
                    _ = stop.changed() => {
                        self.leave().await;
                        return;
                    }
                }
            }
            self.listening.store(false, Ordering::Release);
            tracing::warn!(
                "cache notification connection lost; reading the database until it is back"
            );
        }
        self.leave().await;
    }

    async fn on_messages(&self, payloads: Vec<String>, invalidate: &Invalidate) {
        let mut changes = Vec::with_capacity(payloads.len());
        let mut highest = None;
        for payload in &payloads {
            let mut parts = payload.splitn(4, ' ');
            let version = parts.next().and_then(|v| v.parse::<i64>().ok());
            // Something unreadable: `None`, drop everything rather than guess.
            changes.push(match (parts.next(), parts.next(), parts.next()) {
                (Some("g"), Some(owner), Some(app)) => {
                    Some(Change::Grant(owner.into(), app.into()))
                }
                (Some("o"), Some(owner), None) => Some(Change::Owner(owner.into())),
                _ => None,
            });
            highest = highest.max(version);
        }
        let inv = invalidate.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for change in &changes {
                inv(change.as_ref());
            }
        })
        .await;
        if let Some(v) = highest {
            self.seen.fetch_max(v, Ordering::AcqRel);
            // Acknowledge at once: writers are waiting for it.
            let id = self.id.clone();
            let _ = self
                .db
                .run(move |c| store::coherence::mark_seen(c, &id, v))
                .await;
        }
    }

    /// (Re)joins: a fresh row, joined now. Returns whether it was written.
    async fn join(&self) -> bool {
        let sent = Instant::now();
        let id = self.id.clone();
        let seen = self.seen.load(Ordering::Acquire);
        let result = self
            .db
            .run(move |c| store::coherence::join(c, &id, seen))
            .await;
        match result {
            Ok(_) => {
                *self.vouched.lock().unwrap_or_else(|p| p.into_inner()) = Some(sent);
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "joining failed");
                false
            }
        }
    }

    async fn heartbeat(&self) {
        let sent = Instant::now();
        let id = self.id.clone();
        let seen = self.seen.load(Ordering::Acquire);
        let result = self
            .db
            .run(move |c| store::coherence::heartbeat(c, &id, seen))
            .await;
        match result {
            Ok(true) => *self.vouched.lock().unwrap_or_else(|p| p.into_inner()) = Some(sent),
            Ok(false) => {
                // Our row is gone (removed as dead while we were stalled): join again, and
                // meanwhile trust nothing.
                self.listening.store(false, Ordering::Release);
                if self.join().await {
                    self.listening.store(true, Ordering::Release);
                }
            }
            Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
        }
    }

    async fn leave(&self) {
        self.listening.store(false, Ordering::Release);
        let id = self.id.clone();
        let _ = self.db.run(move |c| store::coherence::leave(c, &id)).await;
    }

    /// Waits until every live process has applied `version` (or its lease has run out, so
    /// that it no longer trusts its caches). Called after the change committed, before it
    /// is acknowledged.
    ///
    /// Waiters do not ask the database themselves: one poller (see [`Coherence::poll`])
    /// reads every live process's progress about once a millisecond while anyone waits, and
    /// each waiter checks that snapshot against its own version.
    pub async fn barrier(&self, version: i64) -> Result<(), StoreError> {
        let asked = Instant::now();
        let mut snapshots = self.snapshots.subscribe();
        self.waiters.fetch_add(1, Ordering::AcqRel);
        self.wake_poller.notify_one();
        let _leave = Leave(&self.waiters);
        let deadline = asked + LEASE + Duration::from_secs(1);
        // Processes that joined after the first snapshot taken after the commit emptied
        // their caches after it: they need not acknowledge it (and may never hear of it).
        let mut since = None;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(wait, snapshots.changed()).await {
                Ok(Ok(())) => {}
                // The poller stopped, or the lease ran out: whoever has not answered by now
                // no longer trusts its caches.
                _ => return Ok(()),
            }
            let snap = snapshots.borrow_and_update().clone();
            let Some(snap) = snap else { continue };
            if snap.started < asked {
                continue;
            }
            if let Err(e) = &snap.rows {
                return Err(e.clone());
            }
            let since = *since.get_or_insert(snap.at);
            let rows = snap.rows.as_ref().expect("checked above");
            if rows
                .iter()
                .all(|&(seen, joined)| seen >= version || joined > since)
            {
                return Ok(());
            }
        }
    }

    /// The one poller behind [`Coherence::barrier`]: while anyone waits, reads every live
    /// process's `seen` and `joined`, about once a millisecond.
    pub async fn poll(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let lease = LEASE.as_micros() as i64;
        loop {
            while self.waiters.load(Ordering::Acquire) == 0 {
                tokio::select! {
                    _ = self.wake_poller.notified() => {}
                    _ = stop.changed() => return,
                }
            }
            let started = Instant::now();
            let result = self.db.run(move |c| store::coherence::live(c, lease)).await;
            if let Err(e) = &result {
                tracing::warn!(error = %e, "reading the other processes' progress failed");
            }
            let snap = match result {
                Ok((at, rows)) => Snapshot {
                    started,
                    at,
                    rows: Ok(rows),
                },
                Err(e) => Snapshot {
                    started,
                    at: 0,
                    rows: Err(e),
                },
            };
            self.snapshots.send_replace(Some(Arc::new(snap)));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// [`Coherence::barrier`] for a command outside the node (`owner export`, `owner import`):
/// blocks until every process live after the commit has seen `version`, or has joined since,
/// or the lease has run out (a process that has not answered by then distrusts its caches).
pub fn wait_applied(db: &Db, version: i64) -> Result<(), StoreError> {
    let lease = LEASE.as_micros() as i64;
    let deadline = Instant::now() + LEASE + Duration::from_secs(1);
    let conn = db.lock()?;
    let since = store::coherence::now_us(&conn)?;
    while Instant::now() < deadline {
        let (_, live) = store::coherence::live(&conn, lease)?;
        if live
            .iter()
            .all(|&(seen, joined)| seen >= version || joined > since)
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// What the poller read: when its query started (this process's clock), PostgreSQL's time
/// then, and each live process's (seen, joined).
struct Snapshot {
    started: Instant,
    at: i64,
    rows: Result<Vec<(i64, i64)>, StoreError>,
}

/// Counts a waiter out when its barrier ends, however it ends.
struct Leave<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
