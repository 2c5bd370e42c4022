//! The verifiable name map: a sparse Merkle tree from `SHA-256(name)` to the SHA-256 of the
//! name's current record, whose root every checkpoint carries. A look-up can come with a proof
//! that the record is the one the checkpoint commits to, or that the name is absent, so a
//! light client trusts one name without replaying the log. Pure and in memory: the registry
//! and full mirrors rebuild it from their records at start.
//!
//! The tree is the compact form key-transparency designs use (Diem's jellyfish tree, `akd`):
//! - an empty subtree hashes to 32 zero bytes;
//! - a subtree holding exactly one name hashes to `SHA-256(0x00 || key || value)`, placed at
//!   the shallowest depth where its key is alone;
//! - any other subtree hashes to `SHA-256(0x01 || left || right)`, bit 0 being the key's most
//!   significant bit (0 = left).
//!
//! A proof is the path from the root to where the key's path ends (an empty subtree, the
//! name's own leaf, or another name's leaf), with the non-empty sibling hashes. With n names
//! the path is about log₂ n deep, so a million names give proofs of about 700 bytes.

use std::collections::{BTreeMap, HashMap};

use ciborium::Value;
use sha2::{Digest, Sha256};

use super::NameRecord;
use crate::cbor;

/// The hash of an empty subtree.
pub const EMPTY: [u8; 32] = [0; 32];
const MAX_DEPTH: usize = 256;

/// The map key of a name.
pub fn key_of(name: &str) -> [u8; 32] {
    Sha256::digest(name.as_bytes()).into()
}

/// The map value of a record: SHA-256 over its canonical CBOR
/// `[name, [[key, valid_from, compromised, compromised_from?]…], updating_key, node_uri,
/// [redirect_uri…], created, updated, digest]` (`compromised_from` only for a compromise that
/// began after `valid_from`).
pub fn value_of(record: &NameRecord) -> [u8; 32] {
    let keys: Vec<RawKey> = record
        .keys
        .iter()
        .map(|k| (k.key.to_bytes(), k.valid_from, k.compromised))
        .collect();
    value_of_parts(&RawRecord {
        name: record.name.as_str(),
        keys: &keys,
        updating_key: record.updating_key.as_bytes(),
        node_uri: &record.node_uri,
        redirect_uris: &record.redirect_uris,
        created: record.created,
        updated: record.updated,
        digest: &record.digest,
    })
}

/// A map entry: the name's key and its record's value.
pub type MapEntry = ([u8; 32], [u8; 32]);

/// A key of a record as stored: bytes, `valid_from`, compromised as of.
pub type RawKey = ([u8; 32], u64, Option<u64>);

/// A record's fields as stored, for [`value_of_parts`] (no key decompression: rebuilding the
/// map of a million names at start must not cost a million point decodings).
pub struct RawRecord<'a> {
    pub name: &'a str,
    pub keys: &'a [RawKey],
    pub updating_key: &'a [u8; 32],
    pub node_uri: &'a str,
    pub redirect_uris: &'a [String],
    pub created: u64,
    pub updated: u64,
    pub digest: &'a [u8; 32],
}

/// [`value_of`] from stored fields.
pub fn value_of_parts(r: &RawRecord<'_>) -> [u8; 32] {
    let keys = r
        .keys
        .iter()
        .map(|(key, valid_from, compromised)| {
            let mut fields = vec![
                Value::Bytes(key.to_vec()),
                (*valid_from).into(),
                Value::Bool(compromised.is_some()),
            ];
            if let Some(from) = super::compromised_from(*valid_from, *compromised) {
                fields.push(from.into());
            }
            Value::Array(fields)
        })
        .collect();
    let encoded = cbor::encode(&Value::Array(vec![
        Value::Text(r.name.to_owned()),
        Value::Array(keys),
        Value::Bytes(r.updating_key.to_vec()),
        Value::Text(r.node_uri.to_owned()),
        Value::Array(
            r.redirect_uris
                .iter()
                .map(|u| Value::Text(u.clone()))
                .collect(),
        ),
        r.created.into(),
        r.updated.into(),
        Value::Bytes(r.digest.to_vec()),
    ]));
    Sha256::digest(encoded).into()
}

fn leaf_hash(key: &[u8; 32], value: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(key);
    h.update(value);
    h.finalize().into()
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

fn bit(key: &[u8; 32], i: usize) -> bool {
    key[i / 8] >> (7 - i % 8) & 1 == 1
}

/// The smallest and largest keys sharing `key`'s first `depth` bits.
fn range(key: &[u8; 32], depth: usize) -> ([u8; 32], [u8; 32]) {
    let mut lo = *key;
    let mut hi = *key;
    for i in depth..MAX_DEPTH {
        let mask = 1u8 << (7 - i % 8);
        lo[i / 8] &= !mask;
        hi[i / 8] |= mask;
    }
    (lo, hi)
}

fn flip(key: &[u8; 32], i: usize) -> [u8; 32] {
    let mut k = *key;
    k[i / 8] ^= 1 << (7 - i % 8);
    k
}

/// The map.
#[derive(Debug, Default, Clone)]
pub struct NameMap {
    leaves: BTreeMap<[u8; 32], [u8; 32]>,
    /// Hashes of subtrees with two or more names, by (depth, smallest key of the subtree).
    cache: HashMap<(u16, [u8; 32]), [u8; 32]>,
}

impl NameMap {
    pub fn new() -> NameMap {
        NameMap::default()
    }

    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// Sets `key` to `value`; returns the previous value.
    pub fn set(&mut self, key: [u8; 32], value: [u8; 32]) -> Option<[u8; 32]> {
        // Nothing cached yet (a map being filled): nothing to invalidate.
        if !self.cache.is_empty() {
            for d in 0..=MAX_DEPTH {
                self.cache.remove(&(d as u16, range(&key, d).0));
            }
        }
        self.leaves.insert(key, value)
    }

    /// Removes `key` (used to undo a change that did not commit).
    pub fn remove(&mut self, key: &[u8; 32]) {
        for d in 0..=MAX_DEPTH {
            self.cache.remove(&(d as u16, range(key, d).0));
        }
        self.leaves.remove(key);
    }

    /// The names in `key`'s subtree at `depth`: none, exactly one, or more.
    fn occupants(&self, key: &[u8; 32], depth: usize) -> Occupants {
        let (lo, hi) = range(key, depth);
        let mut it = self.leaves.range(lo..=hi);
        match (it.next(), it.next()) {
            (None, _) => Occupants::None,
            (Some((k, v)), None) => Occupants::One(*k, *v),
            _ => Occupants::Many,
        }
    }

    fn subtree(&mut self, key: &[u8; 32], depth: usize) -> [u8; 32] {
        match self.occupants(key, depth) {
            Occupants::None => EMPTY,
            Occupants::One(k, v) => leaf_hash(&k, &v),
            Occupants::Many => {
                let id = (depth as u16, range(key, depth).0);
                if let Some(h) = self.cache.get(&id) {
                    return *h;
                }
                let (lo, _) = range(key, depth);
                let left = self.subtree(&lo, depth + 1);
                let right = self.subtree(&flip(&lo, depth), depth + 1);
                let h = node_hash(&left, &right);
                self.cache.insert(id, h);
                h
            }
        }
    }

    /// The root hash.
    pub fn root(&mut self) -> [u8; 32] {
        self.subtree(&[0; 32], 0)
    }

    /// A proof of `key`'s value, or of its absence.
    pub fn prove(&mut self, key: &[u8; 32]) -> MapProof {
        let mut siblings = Vec::new();
        let mut depth = 0;
        loop {
            match self.occupants(key, depth) {
                Occupants::None => {
                    return MapProof {
                        siblings,
                        terminal: None,
                    }
                }
                Occupants::One(k, v) => {
                    return MapProof {
                        siblings,
                        terminal: Some((k, v)),
                    }
                }
                Occupants::Many => {
                    siblings.push(self.subtree(&flip(key, depth), depth + 1));
                    depth += 1;
                }
            }
        }
    }
}

enum Occupants {
    None,
    One([u8; 32], [u8; 32]),
    Many,
}

/// Why a map proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("malformed map proof: {0}")]
    Malformed(&'static str),
    #[error("the map proof does not lead to the checkpoint's map root")]
    Mismatch,
}

/// A path from the root to where a key's path ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapProof {
    /// Sibling hashes from depth 0 down (empty ones included).
    pub siblings: Vec<[u8; 32]>,
    /// The one name in the subtree where the path ends, or `None` for an empty subtree.
    pub terminal: Option<([u8; 32], [u8; 32])>,
}

impl MapProof {
    /// Checks the proof against `root` for `key`: the value the map holds for it, or `None`
    /// if the map holds no value for it.
    pub fn verify(&self, root: &[u8; 32], key: &[u8; 32]) -> Result<Option<[u8; 32]>, MapError> {
        let depth = self.siblings.len();
        if depth > MAX_DEPTH {
            return Err(MapError::Malformed("deeper than 256"));
        }
        let (mut h, value) = match &self.terminal {
            None => (EMPTY, None),
            Some((k, v)) => {
                if range(k, depth).0 != range(key, depth).0 {
                    return Err(MapError::Malformed("the leaf is not on the key's path"));
                }
                (leaf_hash(k, v), (k == key).then_some(*v))
            }
        };
        for d in (0..depth).rev() {
            let s = &self.siblings[d];
            h = if bit(key, d) {
                node_hash(s, &h)
            } else {
                node_hash(&h, s)
            };
        }
        if h != *root {
            return Err(MapError::Mismatch);
        }
        Ok(value)
    }

    /// The compact wire form: depth (2 bytes, big-endian), a bitmap of which siblings are
    /// non-empty (one bit per level, most significant first), the non-empty siblings, then
    /// `0x00` (empty subtree) or `0x01` and the leaf's key and value.
    pub fn encode(&self) -> Vec<u8> {
        let depth = self.siblings.len();
        let mut out = (depth as u16).to_be_bytes().to_vec();
        let mut bitmap = vec![0u8; depth.div_ceil(8)];
        for (i, s) in self.siblings.iter().enumerate() {
            if *s != EMPTY {
                bitmap[i / 8] |= 1 << (7 - i % 8);
            }
        }
        out.extend_from_slice(&bitmap);
        for s in self.siblings.iter().filter(|s| **s != EMPTY) {
            out.extend_from_slice(s);
        }
        match &self.terminal {
            None => out.push(0),
            Some((k, v)) => {
                out.push(1);
                out.extend_from_slice(k);
                out.extend_from_slice(v);
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<MapProof, MapError> {
        let m = MapError::Malformed;
        let take = |at: &mut usize, n: usize| -> Result<&[u8], MapError> {
            let s = bytes.get(*at..*at + n).ok_or(m("truncated"))?;
            *at += n;
            Ok(s)
        };
        let mut at = 0;
        let depth =
            u16::from_be_bytes(take(&mut at, 2)?.try_into().map_err(|_| m("depth"))?) as usize;
        if depth > MAX_DEPTH {
            return Err(m("deeper than 256"));
        }
        let bitmap = take(&mut at, depth.div_ceil(8))?.to_vec();
        let mut siblings = Vec::with_capacity(depth);
        for i in 0..depth {
            if bitmap[i / 8] >> (7 - i % 8) & 1 == 1 {
                let s: [u8; 32] = take(&mut at, 32)?.try_into().map_err(|_| m("sibling"))?;
                if s == EMPTY {
                    return Err(m("an empty sibling marked non-empty"));
                }
                siblings.push(s);
            } else {
                siblings.push(EMPTY);
            }
        }
        let terminal = match take(&mut at, 1)?[0] {
            0 => None,
            1 => {
                let k: [u8; 32] = take(&mut at, 32)?.try_into().map_err(|_| m("key"))?;
                let v: [u8; 32] = take(&mut at, 32)?.try_into().map_err(|_| m("value"))?;
                Some((k, v))
            }
            _ => return Err(m("unknown terminal")),
        };
        if at != bytes.len() || bitmap_padding_set(&bitmap, depth) {
            return Err(m("trailing bytes"));
        }
        Ok(MapProof { siblings, terminal })
    }
}

fn bitmap_padding_set(bitmap: &[u8], depth: usize) -> bool {
    (depth..bitmap.len() * 8).any(|i| bitmap[i / 8] >> (7 - i % 8) & 1 == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(i: u32) -> [u8; 32] {
        key_of(&format!("name{i}"))
    }

    fn v(i: u32) -> [u8; 32] {
        Sha256::digest(i.to_be_bytes()).into()
    }

    #[test]
    fn proofs_of_presence_and_absence_verify_and_nothing_else_does() {
        let mut map = NameMap::new();
        assert_eq!(map.root(), EMPTY);
        let p = map.prove(&k(1));
        assert_eq!(p.verify(&EMPTY, &k(1)), Ok(None));
        for i in 0..500 {
            map.set(k(i), v(i));
        }
        let root = map.root();
        for i in [0, 1, 250, 499] {
            let p = map.prove(&k(i));
            let p = MapProof::decode(&p.encode()).unwrap();
            assert_eq!(p.verify(&root, &k(i)), Ok(Some(v(i))));
            // The same proof does not prove another name, nor another value.
            assert!(p.verify(&root, &k(i + 1000)).map_or(true, |x| x.is_none()));
            let mut forged = p.clone();
            if let Some((_, val)) = &mut forged.terminal {
                val[0] ^= 1;
            }
            assert_eq!(forged.verify(&root, &k(i)), Err(MapError::Mismatch));
        }
        for i in [1000, 1001, 77777] {
            let p = map.prove(&k(i));
            assert_eq!(p.verify(&root, &k(i)), Ok(None));
            // An absence proof does not verify against an older root.
            map.set(k(i), v(i));
            let newer = map.root();
            assert_eq!(p.verify(&newer, &k(i)), Err(MapError::Mismatch));
            assert_eq!(map.prove(&k(i)).verify(&newer, &k(i)), Ok(Some(v(i))));
            map.remove(&k(i));
            assert_eq!(map.root(), root);
        }
    }

    #[test]
    fn the_root_does_not_depend_on_insertion_order_and_tracks_updates() {
        let mut a = NameMap::new();
        let mut b = NameMap::new();
        for i in 0..200 {
            a.set(k(i), v(i));
            b.set(k(199 - i), v(199 - i));
        }
        assert_eq!(a.root(), b.root());
        a.set(k(7), v(1000));
        assert_ne!(a.root(), b.root());
        let mut fresh = NameMap::new();
        for i in 0..200 {
            fresh.set(k(i), if i == 7 { v(1000) } else { v(i) });
        }
        assert_eq!(a.root(), fresh.root());
    }

    #[test]
    fn malformed_proofs_are_refused() {
        assert!(MapProof::decode(&[]).is_err());
        assert!(MapProof::decode(&[1, 1]).is_err());
        assert!(MapProof::decode(&[0, 0, 0, 9]).is_err());
        assert!(MapProof::decode(&[0, 0, 2]).is_err());
        assert_eq!(
            MapProof::decode(&[0, 0, 0]).unwrap(),
            MapProof {
                siblings: vec![],
                terminal: None
            }
        );
    }
}
