//! The grant book: which owners granted what, on which node, the grant requests still waiting
//! for their redirect, and a few pinned values (the registry's key, the last checkpoint a light
//! client trusted). One file the application chooses, with no database behind it.
//!
//! The file is a journal of JSON lines. Opening it replays the lines; every change appends one
//! line and waits for `fsync` before it returns, so a change the library reported done
//! survives a crash. A last line cut short by a crash was never reported done, and is dropped.
//! When the journal holds four times more lines than the state it describes, the state is
//! written to a new file (synced) that replaces the journal by `rename`: at every instant the
//! path holds a whole journal. Changes are computed and written under one lock, so two tasks
//! that change the book at once cannot lose either change.
//!
//! Pending requests older than [`PENDING_TTL`] are dropped (their grant cartes expired long
//! before), so the book cannot be filled by requests that never come back.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use grant_wire::name::Name;
use grant_wire::scope::Scope;
use serde::{Deserialize, Serialize};

/// How long a grant request waits for its redirect, seconds.
pub const PENDING_TTL: u64 = 24 * 3600;

/// One owner's grant, as the application knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookEntry {
    pub owner: String,
    pub node_url: String,
    pub scope: u64,
    pub expires: Option<u64>,
    pub updated: u64,
}

/// A grant request sent out and not yet answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingGrant {
    pub state: String,
    pub owner: Name,
    pub node_url: String,
    pub scope: Scope,
    pub redirect_uri: String,
    pub created: u64,
}

/// Why the book could not be read or written.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct BookError(String);

fn io<'a>(path: &'a Path, what: &'a str) -> impl Fn(std::io::Error) -> BookError + 'a {
    move |e| BookError(format!("{what} {}: {e}", path.display()))
}

/// One journal line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Grant(BookEntry),
    Node { owner: String, node_url: String },
    Pending(PendingGrant),
    Taken(String),
    Meta(String, String),
}

#[derive(Default)]
struct State {
    /// Every grant, tombstones (scope 0) included, by owner.
    grants: BTreeMap<String, BookEntry>,
    pending: BTreeMap<String, PendingGrant>,
    meta: BTreeMap<String, String>,
    /// Lines in the journal file now.
    lines: usize,
}

impl State {
    fn apply(&mut self, line: &Line) {
        match line {
            Line::Grant(e) => {
                self.grants.insert(e.owner.clone(), e.clone());
            }
            Line::Node { owner, node_url } => {
                if let Some(e) = self.grants.get_mut(owner) {
                    e.node_url.clone_from(node_url);
                }
            }
            Line::Pending(p) => {
                self.pending.insert(p.state.clone(), p.clone());
            }
            Line::Taken(state) => {
                self.pending.remove(state);
            }
            Line::Meta(k, v) => {
                self.meta.insert(k.clone(), v.clone());
            }
        }
    }

    fn size(&self) -> usize {
        self.grants.len() + self.pending.len() + self.meta.len()
    }

    fn snapshot(&self) -> Vec<Line> {
        let grants = self.grants.values().cloned().map(Line::Grant);
        let pending = self.pending.values().cloned().map(Line::Pending);
        let meta = self
            .meta
            .iter()
            .map(|(k, v)| Line::Meta(k.clone(), v.clone()));
        grants.chain(pending).chain(meta).collect()
    }
}

/// The grant book in one file; clones share it.
#[derive(Clone)]
pub struct Book {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    state: Mutex<(State, Option<File>)>,
}

impl Book {
    /// Opens the book at `path`, creating it (and no directory) if it does not exist.
    pub fn open(path: &Path) -> Result<Book, BookError> {
        let mut state = State::default();
        match File::open(path) {
            Ok(f) => {
                let mut lines = BufReader::new(f).lines().peekable();
                while let Some(line) = lines.next() {
                    let line = line.map_err(io(path, "reading"))?;
                    match serde_json::from_str::<Line>(&line) {
                        Ok(l) => {
                            state.apply(&l);
                            state.lines += 1;
                        }
                        // The last line, cut short by a crash before it was synced.
                        Err(_) if lines.peek().is_none() => {}
                        Err(e) => {
                            return Err(BookError(format!(
                                "{} is not a grant book (line {}: {e})",
                                path.display(),
                                state.lines + 1
                            )))
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(path, "opening")(e)),
        }
        let book = Book {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                state: Mutex::new((state, None)),
            }),
        };
        // Start from a clean journal: it drops a torn last line and creates the file.
        {
            let mut held = book.lock();
            book.compact(&mut held)?;
        }
        Ok(book)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (State, Option<File>)> {
        // A panic while holding the lock happens before or after a whole append; the state
        // in memory matches the journal either way.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rewrites the journal as the state it describes, atomically.
    fn compact(&self, held: &mut (State, Option<File>)) -> Result<(), BookError> {
        let path = &self.inner.path;
        let tmp = path.with_extension("book-new");
        let mut out = String::new();
        let lines = held.0.snapshot();
        for l in &lines {
            out.push_str(&serde_json::to_string(l).expect("book lines serialize"));
            out.push('\n');
        }
        let mut f = File::create(&tmp).map_err(io(&tmp, "writing"))?;
        f.write_all(out.as_bytes()).map_err(io(&tmp, "writing"))?;
        f.sync_all().map_err(io(&tmp, "syncing"))?;
        std::fs::rename(&tmp, path).map_err(io(path, "replacing"))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The rename itself must reach the disk before the journal is appended to.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        held.0.lines = lines.len();
        held.1 = Some(
            OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(io(path, "opening"))?,
        );
        Ok(())
    }

    /// Appends `lines` (one synced write) and applies them.
    fn append(&self, held: &mut (State, Option<File>), lines: &[Line]) -> Result<(), BookError> {
        if lines.is_empty() {
            return Ok(());
        }
        let path = &self.inner.path;
        let mut out = String::new();
        for l in lines {
            out.push_str(&serde_json::to_string(l).expect("book lines serialize"));
            out.push('\n');
        }
        let file = held.1.as_mut().expect("an open book has its journal open");
        file.write_all(out.as_bytes())
            .and_then(|_| file.sync_data())
            .map_err(io(path, "writing"))?;
        for l in lines {
            held.0.apply(l);
        }
        held.0.lines += lines.len();
        if held.0.lines > 64 && held.0.lines > 4 * held.0.size() {
            self.compact(held)?;
        }
        Ok(())
    }

    /// Runs a change on the blocking pool (it waits for the disk).
    async fn change<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Book, &mut (State, Option<File>)) -> Result<T, BookError> + Send + 'static,
    ) -> Result<T, BookError> {
        let book = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut held = book.lock();
            f(&book, &mut held)
        })
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
    }

    /// Records a grant; an empty scope revokes it. Older news never overwrites newer.
    ///
    /// A revocation stays as a tombstone (scope 0) holding the time of the news, so a replayed
    /// older notification cannot bring the grant back. Statements carry whole seconds, so two
    /// can share a time: a revocation wins such a tie, while between two grants the later
    /// arrival wins, so a grant widened in the second it was made is recorded. The node, not
    /// the book, enforces grants either way.
    pub async fn put(
        &self,
        owner: &Name,
        node_url: &str,
        scope: Scope,
        expires: Option<u64>,
        time: u64,
    ) -> Result<(), BookError> {
        let entry = BookEntry {
            owner: owner.to_string(),
            node_url: node_url.to_owned(),
            scope: scope.bits(),
            expires,
            updated: time,
        };
        self.change(move |book, held| {
            match held.0.grants.get(&entry.owner) {
                Some(e) if e.updated > time => return Ok(()),
                Some(e) if e.updated == time && e.scope == 0 => return Ok(()),
                _ => {}
            }
            book.append(held, &[Line::Grant(entry)])
        })
        .await
    }

    /// Records that `owner`'s node is now `node_url` (it moved); `false` if no grant is booked.
    pub async fn set_node(&self, owner: &Name, node_url: &str) -> Result<bool, BookError> {
        let (owner, node_url) = (owner.to_string(), node_url.to_owned());
        self.change(move |book, held| {
            if !held.0.grants.contains_key(&owner) {
                return Ok(false);
            }
            book.append(held, &[Line::Node { owner, node_url }])?;
            Ok(true)
        })
        .await
    }

    /// The grant `owner` gave, if it is not revoked.
    pub fn get(&self, owner: &Name) -> Option<BookEntry> {
        let held = self.lock();
        held.0
            .grants
            .get(owner.as_str())
            .filter(|e| e.scope != 0)
            .cloned()
    }

    /// Every grant not revoked, by owner.
    pub fn all(&self) -> Vec<BookEntry> {
        let held = self.lock();
        held.0
            .grants
            .values()
            .filter(|e| e.scope != 0)
            .cloned()
            .collect()
    }

    /// Remembers a grant request (and forgets those past [`PENDING_TTL`]).
    pub async fn put_pending(&self, p: PendingGrant) -> Result<(), BookError> {
        self.change(move |book, held| {
            let old = p.created.saturating_sub(PENDING_TTL);
            let mut lines: Vec<Line> = held
                .0
                .pending
                .values()
                .filter(|q| q.created < old)
                .map(|q| Line::Taken(q.state.clone()))
                .collect();
            lines.push(Line::Pending(p));
            book.append(held, &lines)
        })
        .await
    }

    /// The pending request with this state, left in place.
    pub fn peek_pending(&self, state: &str) -> Option<PendingGrant> {
        self.lock().0.pending.get(state).cloned()
    }

    /// Takes (removes and returns) the pending request with this state.
    pub async fn take_pending(&self, state: &str) -> Result<Option<PendingGrant>, BookError> {
        let state = state.to_owned();
        self.change(move |book, held| {
            let Some(p) = held.0.pending.get(&state).cloned() else {
                return Ok(None);
            };
            book.append(held, &[Line::Taken(state)])?;
            Ok(Some(p))
        })
        .await
    }

    pub fn meta(&self, key: &str) -> Option<String> {
        self.lock().0.meta.get(key).cloned()
    }

    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), BookError> {
        let (k, v) = (key.to_owned(), value.to_owned());
        self.change(move |book, held| {
            if held.0.meta.get(&k) == Some(&v) {
                return Ok(());
            }
            book.append(held, &[Line::Meta(k, v)])
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gt-book-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("grants.book")
    }

    #[tokio::test]
    async fn a_revocation_cannot_be_rolled_back_by_older_news() {
        let book = Book::open(&temp("revoke")).unwrap();
        let alice = Name::parse("alice").unwrap();
        let both = Scope::from_bits(0b11);
        book.put(&alice, "https://a.example", both, None, 100)
            .await
            .unwrap();
        book.put(&alice, "https://a.example", Scope::NONE, None, 200)
            .await
            .unwrap();
        assert_eq!(book.get(&alice), None);
        // The grant's own notification, replayed after the revocation.
        book.put(&alice, "https://a.example", both, None, 100)
            .await
            .unwrap();
        assert_eq!(book.get(&alice), None);
        assert!(book.all().is_empty());
        book.put(&alice, "https://a.example", both, None, 300)
            .await
            .unwrap();
        assert_eq!(book.get(&alice).unwrap().scope, 0b11);
    }

    #[tokio::test]
    async fn a_revocation_wins_a_tie_and_a_widening_of_the_same_second_is_kept() {
        let book = Book::open(&temp("tie")).unwrap();
        let alice = Name::parse("alice").unwrap();
        book.put(&alice, "u", Scope::from_bits(0b01), None, 100)
            .await
            .unwrap();
        book.put(&alice, "u", Scope::from_bits(0b11), None, 100)
            .await
            .unwrap();
        assert_eq!(book.get(&alice).unwrap().scope, 0b11);
        book.put(&alice, "u", Scope::NONE, None, 100).await.unwrap();
        book.put(&alice, "u", Scope::from_bits(0b11), None, 100)
            .await
            .unwrap();
        assert_eq!(book.get(&alice), None);
    }

    /// Everything a change reported done is there after a reopen, a torn last line is
    /// dropped, and compaction keeps the state while bounding the file.
    #[tokio::test]
    async fn what_was_written_survives_a_reopen_a_torn_line_and_compaction() {
        let path = temp("reopen");
        let book = Book::open(&path).unwrap();
        let bob = Name::parse("bob").unwrap();
        for t in 1..=500u64 {
            book.put(
                &bob,
                "https://b.example",
                Scope::from_bits(t % 7 + 1),
                None,
                t,
            )
            .await
            .unwrap();
        }
        book.set_meta("registry_key", "ab").await.unwrap();
        let p = PendingGrant {
            state: "s1".into(),
            owner: bob.clone(),
            node_url: "https://b.example".into(),
            scope: Scope::from_bits(1),
            redirect_uri: "https://app.example/cb".into(),
            created: 1000,
        };
        book.put_pending(p.clone()).await.unwrap();
        drop(book);
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines < 100, "compaction bounds the journal ({lines} lines)");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"grant\":{\"owner\":\"bo").unwrap();
        drop(f);
        let book = Book::open(&path).unwrap();
        assert_eq!(book.get(&bob).unwrap().scope, 500 % 7 + 1);
        assert_eq!(book.get(&bob).unwrap().updated, 500);
        assert_eq!(book.meta("registry_key").as_deref(), Some("ab"));
        assert_eq!(book.peek_pending("s1"), Some(p.clone()));
        assert_eq!(book.take_pending("s1").await.unwrap(), Some(p));
        assert_eq!(book.take_pending("s1").await.unwrap(), None);
        // A damaged line that is not the last one is refused, not skipped.
        std::fs::write(&path, "garbage\n{\"taken\":\"x\"}\n").unwrap();
        assert!(Book::open(&path).is_err());
    }
}
