//! The verifiable name map: a sparse Merkle tree from `SHA-256(name)` to the SHA-256 of the
//! name's current record, whose root every checkpoint carries. A look-up can come with a proof
//! that the record is the one the checkpoint commits to, or that the name is absent, so a
//! light client trusts one name without replaying the log. Pure: the algorithm runs over a
//! [`MapStore`]; the registry and full mirrors keep theirs in their database, [`NameMap`] is
//! the in-memory one.
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

pub fn leaf_hash(key: &[u8; 32], value: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(key);
    h.update(value);
    h.finalize().into()
}

pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
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
    let (whole, rest) = (depth / 8, depth % 8);
    if whole < 32 {
        // The first `rest` bits of the byte where the prefix ends are kept.
        let keep = if rest == 0 { 0 } else { 0xFFu8 << (8 - rest) };
        lo[whole] &= keep;
        hi[whole] |= !keep;
        lo[whole + 1..].fill(0);
        hi[whole + 1..].fill(0xFF);
    }
    (lo, hi)
}

fn flip(key: &[u8; 32], i: usize) -> [u8; 32] {
    let mut k = *key;
    k[i / 8] ^= 1 << (7 - i % 8);
    k
}

/// The id of a subtree: its depth (one byte; a subtree with two or more names is never 256
/// deep) and the first `depth` bits of its keys, in `depth.div_ceil(8)` bytes, the rest zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId {
    bytes: [u8; 33],
    len: u8,
}

impl NodeId {
    /// The subtree at `depth` on `key`'s path.
    pub fn of(key: &[u8; 32], depth: usize) -> NodeId {
        debug_assert!(depth < MAX_DEPTH);
        let (lo, _) = range(key, depth);
        let mut bytes = [0u8; 33];
        bytes[0] = depth as u8;
        let n = depth.div_ceil(8);
        bytes[1..=n].copy_from_slice(&lo[..n]);
        NodeId {
            bytes,
            len: 1 + n as u8,
        }
    }

    /// The stored form.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// The hashes of a subtree's two children (the subtree's own hash is [`node_hash`] of them).
pub type Children = ([u8; 32], [u8; 32]);

/// What a subtree holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occupants {
    None,
    One([u8; 32], [u8; 32]),
    Many,
}

/// Where a map is kept: its leaves (key → value) and, for every subtree with two or more
/// names, its children's hashes. The registry and full mirrors keep them in their database
/// and update them with each entry ([`refresh`]), so nothing is rebuilt at start; a proof
/// reads one stored subtree per level ([`prove_in`]). [`NameMap`] keeps them in memory.
pub trait MapStore {
    type Error;
    /// The leaves with keys in `lo..=hi`: none, exactly one (with its value), or more.
    fn occupants(&mut self, lo: &[u8; 32], hi: &[u8; 32]) -> Result<Occupants, Self::Error>;
    fn node(&mut self, id: &NodeId) -> Result<Option<Children>, Self::Error>;
    fn put_node(&mut self, id: &NodeId, children: &Children) -> Result<(), Self::Error>;
    fn drop_node(&mut self, id: &NodeId) -> Result<(), Self::Error>;
    /// The error for a store whose subtrees do not match its leaves.
    fn inconsistent() -> Self::Error;
}

/// Which leaves changed since the stored subtrees were last brought up to date.
enum Dirty<'a> {
    Keys(&'a [[u8; 32]]),
    All,
}

/// Brings the stored subtrees on the paths of `changed` (leaves set or removed since the last
/// refresh) up to date; returns the new root. Each subtree on those paths is computed once, so a
/// page of entries costs less than its entries one by one.
pub fn refresh<S: MapStore>(
    store: &mut S,
    mut changed: Vec<[u8; 32]>,
) -> Result<[u8; 32], S::Error> {
    changed.sort_unstable();
    changed.dedup();
    if changed.is_empty() {
        return root_of(store);
    }
    rehash(store, 0, &[0; 32], Dirty::Keys(&changed))
}

/// Computes every stored subtree from the leaves alone (a map filled in bulk, or one written
/// before subtrees were stored). Leaves must only have been added or changed, never removed.
pub fn rebuild<S: MapStore>(store: &mut S) -> Result<[u8; 32], S::Error> {
    rehash(store, 0, &[0; 32], Dirty::All)
}

fn rehash<S: MapStore>(
    store: &mut S,
    depth: usize,
    lo: &[u8; 32],
    dirty: Dirty<'_>,
) -> Result<[u8; 32], S::Error> {
    let (lo, hi) = range(lo, depth);
    match store.occupants(&lo, &hi)? {
        Occupants::None => {
            // A subtree that held more names before (the in-memory map removes leaves).
            if matches!(dirty, Dirty::Keys(_)) && depth < MAX_DEPTH {
                store.drop_node(&NodeId::of(&lo, depth))?;
            }
            Ok(EMPTY)
        }
        Occupants::One(k, v) => {
            // A subtree that held more names before (the in-memory map removes leaves).
            if matches!(dirty, Dirty::Keys(_)) && depth < MAX_DEPTH {
                store.drop_node(&NodeId::of(&lo, depth))?;
            }
            Ok(leaf_hash(&k, &v))
        }
        Occupants::Many if depth >= MAX_DEPTH => Err(S::inconsistent()),
        Occupants::Many => {
            let id = NodeId::of(&lo, depth);
            let right_lo = flip(&lo, depth);
            let children = match dirty {
                Dirty::All => (
                    rehash(store, depth + 1, &lo, Dirty::All)?,
                    rehash(store, depth + 1, &right_lo, Dirty::All)?,
                ),
                Dirty::Keys(keys) => {
                    let split = keys.partition_point(|k| !bit(k, depth));
                    let (left, right) = keys.split_at(split);
                    // A side with no change keeps its hash: from this subtree's stored
                    // children when it had any, else from the side itself.
                    let old = if left.is_empty() || right.is_empty() {
                        store.node(&id)?
                    } else {
                        None
                    };
                    let side = |store: &mut S,
                                keys: &[[u8; 32]],
                                at: &[u8; 32],
                                kept: Option<[u8; 32]>| {
                        if !keys.is_empty() {
                            rehash(store, depth + 1, at, Dirty::Keys(keys))
                        } else if let Some(h) = kept {
                            Ok(h)
                        } else {
                            subtree_hash(store, at, depth + 1)
                        }
                    };
                    (
                        side(store, left, &lo, old.map(|o| o.0))?,
                        side(store, right, &right_lo, old.map(|o| o.1))?,
                    )
                }
            };
            store.put_node(&id, &children)?;
            Ok(node_hash(&children.0, &children.1))
        }
    }
}

/// The hash of the subtree at `depth` on `key`'s path, from the store as it is.
fn subtree_hash<S: MapStore>(
    store: &mut S,
    key: &[u8; 32],
    depth: usize,
) -> Result<[u8; 32], S::Error> {
    if depth < MAX_DEPTH {
        if let Some((l, r)) = store.node(&NodeId::of(key, depth))? {
            return Ok(node_hash(&l, &r));
        }
    }
    let (lo, hi) = range(key, depth);
    match store.occupants(&lo, &hi)? {
        Occupants::None => Ok(EMPTY),
        Occupants::One(k, v) => Ok(leaf_hash(&k, &v)),
        Occupants::Many => Err(S::inconsistent()),
    }
}

/// The root hash of a store whose subtrees are up to date.
pub fn root_of<S: MapStore>(store: &mut S) -> Result<[u8; 32], S::Error> {
    subtree_hash(store, &[0; 32], 0)
}

/// A proof of `key`'s value, or of its absence, from a store whose subtrees are up to date:
/// one stored subtree read per level, and one range read where the path ends.
pub fn prove_in<S: MapStore>(store: &mut S, key: &[u8; 32]) -> Result<MapProof, S::Error> {
    let mut siblings = Vec::new();
    let mut depth = 0;
    while depth < MAX_DEPTH {
        let Some((l, r)) = store.node(&NodeId::of(key, depth))? else {
            break;
        };
        siblings.push(if bit(key, depth) { l } else { r });
        depth += 1;
    }
    let (lo, hi) = range(key, depth);
    let terminal = match store.occupants(&lo, &hi)? {
        Occupants::None => None,
        Occupants::One(k, v) => Some((k, v)),
        Occupants::Many => return Err(S::inconsistent()),
    };
    Ok(MapProof { siblings, terminal })
}

/// The map in memory (tests, benchmarks, and tools that hold a small registry): the same
/// algorithm over a `BTreeMap` of leaves and a `HashMap` of subtrees, refreshed lazily.
#[derive(Debug, Default, Clone)]
pub struct NameMap {
    leaves: BTreeMap<[u8; 32], [u8; 32]>,
    nodes: HashMap<NodeId, Children>,
    dirty: Vec<[u8; 32]>,
}

/// The in-memory map's subtrees never disagree with its leaves.
#[derive(Debug)]
pub struct Inconsistent;

impl MapStore for NameMap {
    type Error = Inconsistent;
    fn occupants(&mut self, lo: &[u8; 32], hi: &[u8; 32]) -> Result<Occupants, Inconsistent> {
        let mut it = self.leaves.range(*lo..=*hi);
        Ok(match (it.next(), it.next()) {
            (None, _) => Occupants::None,
            (Some((k, v)), None) => Occupants::One(*k, *v),
            _ => Occupants::Many,
        })
    }
    fn node(&mut self, id: &NodeId) -> Result<Option<Children>, Inconsistent> {
        Ok(self.nodes.get(id).copied())
    }
    fn put_node(&mut self, id: &NodeId, children: &Children) -> Result<(), Inconsistent> {
        self.nodes.insert(*id, *children);
        Ok(())
    }
    fn drop_node(&mut self, id: &NodeId) -> Result<(), Inconsistent> {
        self.nodes.remove(id);
        Ok(())
    }
    fn inconsistent() -> Inconsistent {
        Inconsistent
    }
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
        self.dirty.push(key);
        self.leaves.insert(key, value)
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &[u8; 32]) {
        self.dirty.push(*key);
        self.leaves.remove(key);
    }

    fn flush(&mut self) {
        if !self.dirty.is_empty() {
            let dirty = std::mem::take(&mut self.dirty);
            refresh(self, dirty).expect("the in-memory map is consistent");
        }
    }

    /// The root hash.
    pub fn root(&mut self) -> [u8; 32] {
        self.flush();
        root_of(self).expect("the in-memory map is consistent")
    }

    /// A proof of `key`'s value, or of its absence.
    pub fn prove(&mut self, key: &[u8; 32]) -> MapProof {
        self.flush();
        prove_in(self, key).expect("the in-memory map is consistent")
    }
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
    fn pages_refreshed_together_rebuilt_from_leaves_and_set_one_by_one_agree() {
        let mut one_by_one = NameMap::new();
        let mut paged = NameMap::new();
        let mut bulk = NameMap::new();
        let mut roots = Vec::new();
        for page in 0..5u32 {
            for i in page * 97..(page + 1) * 97 {
                // Every page also changes a name of the pages before it.
                let (key, value) = if i % 7 == 0 && i > 0 {
                    (k(i / 2), v(i))
                } else {
                    (k(i), v(i))
                };
                one_by_one.set(key, value);
                one_by_one.root();
                paged.set(key, value);
                bulk.leaves.insert(key, value);
            }
            roots.push(paged.root());
        }
        assert_eq!(one_by_one.root(), *roots.last().unwrap());
        assert_eq!(rebuild(&mut bulk).unwrap(), one_by_one.root());
        assert_eq!(bulk.nodes, one_by_one.nodes);
        assert_eq!(bulk.nodes.len(), one_by_one.nodes.len());
        for i in [0, 5, 96, 300, 484] {
            assert_eq!(bulk.prove(&k(i)), one_by_one.prove(&k(i)));
        }
    }

    #[test]
    fn keys_that_differ_only_in_their_last_bit_are_proven_apart() {
        let mut map = NameMap::new();
        let a = [0xAB; 32];
        let mut b = a;
        b[31] ^= 1;
        map.set(a, v(1));
        map.set(b, v(2));
        map.set(k(3), v(3));
        let root = map.root();
        let p = map.prove(&a);
        assert_eq!(p.siblings.len(), 256);
        assert_eq!(p.verify(&root, &a), Ok(Some(v(1))));
        assert_eq!(map.prove(&b).verify(&root, &b), Ok(Some(v(2))));
        map.remove(&b);
        let p = map.prove(&a);
        assert_eq!(p.verify(&map.root(), &a), Ok(Some(v(1))));
        assert!(p.siblings.len() < 8);
    }

    #[test]
    fn a_range_keeps_exactly_the_prefix() {
        let key = [0b1010_1010; 32];
        for depth in 0..=MAX_DEPTH {
            let (lo, hi) = range(&key, depth);
            for i in 0..MAX_DEPTH {
                let kept = if i < depth { bit(&key, i) } else { false };
                assert_eq!(bit(&lo, i), kept, "lo, depth {depth}, bit {i}");
                let kept = if i < depth { bit(&key, i) } else { true };
                assert_eq!(bit(&hi, i), kept, "hi, depth {depth}, bit {i}");
            }
        }
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
