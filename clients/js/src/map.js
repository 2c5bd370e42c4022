// The name map: a sparse Merkle tree from SHA-256(name) to the SHA-256 of a record's canonical
// CBOR, and its compact proofs (README, "The name map and light look-ups").

import { sha256 } from '@noble/hashes/sha2.js';
import { concat, equal, fromHex, utf8 } from './bytes.js';
import { encode } from './cbor.js';
import { GrantNodeError } from './errors.js';

const EMPTY = new Uint8Array(32);
const MAX_DEPTH = 256;
const malformed = (m) => new GrantNodeError('registry.untrusted', `malformed map proof: ${m}`);

/** @param {string} name */
export const keyOf = (name) => sha256(utf8(name));
const leafHash = (k, v) => sha256(concat(Uint8Array.of(0), k, v));
const nodeHash = (l, r) => sha256(concat(Uint8Array.of(1), l, r));
const bit = (key, i) => ((key[i >> 3] >> (7 - (i & 7))) & 1) === 1;

/**
 * @typedef {{key: string, valid_from: number, compromised: boolean, compromised_from?: number}} KeyJson
 * @typedef {{name: string, keys: KeyJson[], updating_key: string, node_uri: string,
 *   redirect_uris: string[], created: number, updated: number, digest: string}} RecordJson
 */

/** The map value of a record (its JSON form, as the registry serves it). @param {RecordJson} r */
export function valueOf(r) {
  const keys = r.keys.map((k) => {
    const at = k.compromised ? (k.compromised_from ?? k.valid_from) : null;
    const fields = [fromHex(k.key), k.valid_from, k.compromised];
    if (at !== null && at > k.valid_from) fields.push(at);
    return fields;
  });
  return sha256(encode([r.name, keys, fromHex(r.updating_key), r.node_uri, r.redirect_uris, r.created, r.updated, fromHex(r.digest)]));
}

/** @param {Uint8Array} bytes */
export function decodeMapProof(bytes) {
  let at = 0;
  const take = (n) => {
    if (at + n > bytes.length) throw malformed('truncated');
    const s = bytes.subarray(at, at + n);
    at += n;
    return s;
  };
  const d = take(2);
  const depth = (d[0] << 8) | d[1];
  if (depth > MAX_DEPTH) throw malformed('deeper than 256');
  const bitmap = take(Math.ceil(depth / 8));
  const siblings = [];
  for (let i = 0; i < depth; i++) {
    if (bit(bitmap, i)) {
      const s = take(32);
      if (equal(s, EMPTY)) throw malformed('an empty sibling marked non-empty');
      siblings.push(s);
    } else {
      siblings.push(EMPTY);
    }
  }
  const t = take(1)[0];
  let terminal = null;
  if (t === 1) terminal = { key: take(32), value: take(32) };
  else if (t !== 0) throw malformed('unknown terminal');
  for (let i = depth; i < bitmap.length * 8; i++) if (bit(bitmap, i)) throw malformed('padding bits set');
  if (at !== bytes.length) throw malformed('trailing bytes');
  return { siblings, terminal };
}

/**
 * Checks a proof for `key` against a map root: the value the map holds for the key, or null
 * when the proof shows it absent.
 * @param {{siblings: Uint8Array[], terminal: {key: Uint8Array, value: Uint8Array} | null}} proof
 * @param {Uint8Array} root @param {Uint8Array} key
 */
export function verifyMapProof(proof, root, key) {
  const depth = proof.siblings.length;
  let h = EMPTY;
  let value = null;
  if (proof.terminal) {
    const { key: k, value: v } = proof.terminal;
    for (let i = 0; i < depth; i++) if (bit(k, i) !== bit(key, i)) throw malformed('the leaf is not on the key\'s path');
    h = leafHash(k, v);
    if (equal(k, key)) value = v;
  }
  for (let d = depth - 1; d >= 0; d--) {
    const s = proof.siblings[d];
    h = bit(key, d) ? nodeHash(s, h) : nodeHash(h, s);
  }
  if (!equal(h, root)) throw new GrantNodeError('registry.untrusted', 'the map proof does not lead to the checkpoint\'s map root');
  return value;
}
