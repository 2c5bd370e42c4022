// RFC 6962 / RFC 9162 Merkle tree proofs over SHA-256 (the registry log is a C2SP tlog).

import { sha256 } from '@noble/hashes/sha2.js';
import { concat, equal } from './bytes.js';

/** @param {Uint8Array} l @param {Uint8Array} r */
export const nodeHash = (l, r) => sha256(concat(Uint8Array.of(1), l, r));
/** @param {Uint8Array} entry */
export const leafHash = (entry) => sha256(concat(Uint8Array.of(0), entry));

/**
 * Whether `proof` shows that the tree of size `first` with root `firstRoot` is a prefix of the
 * tree of size `second` with root `secondRoot` (RFC 9162 §2.1.4.2).
 * @param {number} first @param {number} second @param {Uint8Array} firstRoot @param {Uint8Array} secondRoot @param {Uint8Array[]} proof
 */
export function verifyConsistency(first, second, firstRoot, secondRoot, proof) {
  if (first > second) return false;
  if (first === second) return proof.length === 0 && equal(firstRoot, secondRoot);
  if (first === 0) return proof.length === 0;
  if (proof.length === 0) return false;
  let path = proof;
  let fn = BigInt(first) - 1n;
  let sn = BigInt(second) - 1n;
  if ((BigInt(first) & (BigInt(first) - 1n)) === 0n) path = [firstRoot, ...proof];
  while (fn & 1n) {
    fn >>= 1n;
    sn >>= 1n;
  }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0n) return false;
    if (fn & 1n || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (!(fn & 1n)) {
        while (!(fn & 1n) && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && equal(fr, firstRoot) && equal(sr, secondRoot);
}

/**
 * Whether `proof` shows that `leaf` (a leaf hash) is entry `index` of the tree of size `size`
 * with root `root` (RFC 9162 §2.1.3.2).
 * @param {number} index @param {number} size @param {Uint8Array} leaf @param {Uint8Array} root @param {Uint8Array[]} proof
 */
export function verifyInclusion(index, size, leaf, root, proof) {
  if (index >= size) return false;
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) return false;
    if (fn & 1n || fn === sn) {
      r = nodeHash(p, r);
      if (!(fn & 1n)) {
        while (!(fn & 1n) && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && equal(r, root);
}
