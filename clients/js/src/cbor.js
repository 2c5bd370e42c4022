// Canonical CBOR (RFC 8949 §4.2.1, as grant-node uses it): unsigned integers, byte strings,
// text, arrays, booleans and null; shortest forms, definite lengths, no tags, no floats, no
// maps. The decoder refuses every other encoding of the same value and anything after the
// top-level item. Integers above 2^53 - 1 decode as bigint, the rest as number.

import { concat, fromUtf8, utf8 } from './bytes.js';

export class CborError extends Error {}

/** @typedef {number | bigint | Uint8Array | string | boolean | null | Array<any>} CborValue */

/** @param {number} major @param {number | bigint} n */
function head(major, n) {
  const v = BigInt(n);
  if (v < 0n || v > 0xffffffffffffffffn) throw new CborError('integer out of range');
  const m = major << 5;
  if (v < 24n) return Uint8Array.of(m | Number(v));
  if (v < 0x100n) return Uint8Array.of(m | 24, Number(v));
  if (v < 0x10000n) return Uint8Array.of(m | 25, Number(v >> 8n), Number(v & 0xffn));
  if (v < 0x100000000n) {
    const b = new Uint8Array(5);
    b[0] = m | 26;
    new DataView(b.buffer).setUint32(1, Number(v));
    return b;
  }
  const b = new Uint8Array(9);
  b[0] = m | 27;
  new DataView(b.buffer).setBigUint64(1, v);
  return b;
}

/** Encodes a value canonically. @param {CborValue} v @returns {Uint8Array} */
export function encode(v) {
  if (v === null) return Uint8Array.of(0xf6);
  if (v === true) return Uint8Array.of(0xf5);
  if (v === false) return Uint8Array.of(0xf4);
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw new CborError('only unsigned integers');
    return head(0, v);
  }
  if (typeof v === 'bigint') return head(0, v);
  if (v instanceof Uint8Array) return concat(head(2, v.length), v);
  if (typeof v === 'string') {
    const b = utf8(v);
    return concat(head(3, b.length), b);
  }
  if (Array.isArray(v)) return concat(head(4, v.length), ...v.map(encode));
  throw new CborError('a value CBOR here cannot carry');
}

/** Decodes exactly one canonical item. @param {Uint8Array} bytes @returns {CborValue} */
export function decode(bytes) {
  let at = 0;
  const take = (n) => {
    if (at + n > bytes.length) throw new CborError('truncated');
    const s = bytes.subarray(at, at + n);
    at += n;
    return s;
  };
  /** @returns {bigint} */
  const arg = (info) => {
    if (info < 24) return BigInt(info);
    const dv = (n) => new DataView(take(n).slice().buffer);
    let v;
    let min;
    if (info === 24) [v, min] = [BigInt(take(1)[0]), 24n];
    else if (info === 25) [v, min] = [BigInt(dv(2).getUint16(0)), 0x100n];
    else if (info === 26) [v, min] = [BigInt(dv(4).getUint32(0)), 0x10000n];
    else if (info === 27) [v, min] = [dv(8).getBigUint64(0), 0x100000000n];
    else throw new CborError('indefinite or reserved length');
    if (v < min) throw new CborError('not the shortest form');
    return v;
  };
  const len = (info) => {
    const n = arg(info);
    if (n > BigInt(bytes.length)) throw new CborError('truncated');
    return Number(n);
  };
  const item = (depth) => {
    if (depth > 16) throw new CborError('nested too deep');
    const b = take(1)[0];
    const major = b >> 5;
    const info = b & 31;
    switch (major) {
      case 0: {
        const v = arg(info);
        return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
      }
      case 2:
        return take(len(info)).slice();
      case 3: {
        try {
          return fromUtf8(take(len(info)));
        } catch {
          throw new CborError('text is not UTF-8');
        }
      }
      case 4: {
        const n = len(info);
        const out = [];
        for (let i = 0; i < n; i++) out.push(item(depth + 1));
        return out;
      }
      case 7:
        if (b === 0xf4) return false;
        if (b === 0xf5) return true;
        if (b === 0xf6) return null;
        throw new CborError('floats and other simple values are not used');
      default:
        throw new CborError('negative integers, maps and tags are not used');
    }
  };
  const v = item(0);
  if (at !== bytes.length) throw new CborError('bytes after the item');
  return v;
}

/** The envelope `[payload, signature]`. @param {Uint8Array} payload @param {Uint8Array} signature */
export const envelope = (payload, signature) => encode([payload, signature]);

/** Splits an envelope; refuses anything but an array of two byte strings (64-byte signature). @param {Uint8Array} bytes */
export function openEnvelope(bytes) {
  const v = decode(bytes);
  if (!Array.isArray(v) || v.length !== 2 || !(v[0] instanceof Uint8Array) || !(v[1] instanceof Uint8Array) || v[1].length !== 64) {
    throw new CborError('not an envelope [payload, signature]');
  }
  return { payload: v[0], signature: v[1] };
}
