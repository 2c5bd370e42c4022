//! Key histories: the rule that picks the key a name held at a given time.
//!
//! A name's signing keys form a history ordered by `valid_from`. The key in force at time T is
//! the one with the latest `valid_from` not after T; if that key is marked compromised as of a
//! time not after T, nothing signed as of T counts. The registry mirror and the in-memory [`KeyTable`] (tests, vectors,
//! benchmarks) both answer through [`key_in_history`], so the rule lives in one place.

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;

use super::verify::{KeyAt, KeyResolver};
use crate::name::Name;

/// One key in a name's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyEntry {
    pub key: VerifyingKey,
    /// Unix seconds from which this key signs for the name.
    pub valid_from: u64,
    /// Marked compromised: nothing it signed as of this time counts (`valid_from` for a key
    /// whose every signature is void).
    pub compromised: Option<u64>,
}

/// The key in force at `at` in a history sorted by `valid_from`.
pub fn key_in_history(history: &[KeyEntry], at: u64) -> KeyAt {
    match history.iter().rev().find(|e| e.valid_from <= at) {
        None => KeyAt::NoValidKey,
        Some(e) if e.compromised.is_some_and(|from| at >= from) => KeyAt::Compromised,
        Some(e) => KeyAt::Valid(e.key),
    }
}

/// A fixed, in-memory key resolver.
#[derive(Debug, Clone, Default)]
pub struct KeyTable {
    names: HashMap<Name, Vec<KeyEntry>>,
}

impl KeyTable {
    pub fn new() -> KeyTable {
        KeyTable::default()
    }

    /// Adds a key to `name`'s history, keeping it sorted by `valid_from`.
    pub fn add(&mut self, name: Name, entry: KeyEntry) {
        let history = self.names.entry(name).or_default();
        history.push(entry);
        history.sort_by_key(|e| e.valid_from);
    }
}

impl KeyResolver for KeyTable {
    fn key_at(&self, name: &Name, at: u64) -> KeyAt {
        match self.names.get(name) {
            None => KeyAt::UnknownName,
            Some(history) => key_in_history(history, at),
        }
    }
}
