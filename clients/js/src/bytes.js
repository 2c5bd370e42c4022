// Bytes: hex, base64 (standard and URL-safe), UTF-8 and comparison. No Node-only API.

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

/** @param {string} s */
export const utf8 = (s) => enc.encode(s);

/** Decodes UTF-8, refusing invalid sequences. @param {Uint8Array} b */
export const fromUtf8 = (b) => dec.decode(b);

/** @param {Uint8Array} b */
export function toHex(b) {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

/** Strict hex: an even number of [0-9a-fA-F]. @param {string} s */
export function fromHex(s) {
  if (typeof s !== 'string' || s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) {
    throw new TypeError('not hex');
  }
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const STD = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** @param {Uint8Array} b @param {string} alphabet @param {boolean} pad */
function encode64(b, alphabet, pad) {
  let out = '';
  for (let i = 0; i < b.length; i += 3) {
    const n = (b[i] << 16) | ((b[i + 1] ?? 0) << 8) | (b[i + 2] ?? 0);
    const chars = Math.min(4, Math.ceil(((b.length - i) * 8) / 6));
    for (let j = 0; j < chars; j++) out += alphabet[(n >> (18 - 6 * j)) & 63];
  }
  if (pad) while (out.length % 4) out += '=';
  return out;
}

/**
 * Strict base64: only the alphabet, padding exactly as required (or none, for URL-safe) and
 * zero trailing bits, so that every byte string has one spelling.
 * @param {string} s @param {string} alphabet @param {boolean} pad
 */
function decode64(s, alphabet, pad) {
  if (typeof s !== 'string') throw new TypeError('not base64');
  let body = s;
  if (pad) {
    if (s.length % 4 !== 0) throw new TypeError('not base64');
    body = s.replace(/={1,2}$/, '');
  }
  if (body.length % 4 === 1) throw new TypeError('not base64');
  const out = new Uint8Array(Math.floor((body.length * 6) / 8));
  let bits = 0;
  let acc = 0;
  let o = 0;
  for (const c of body) {
    const v = alphabet.indexOf(c);
    if (v < 0) throw new TypeError('not base64');
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  if ((acc & ((1 << bits) - 1)) !== 0) throw new TypeError('not base64: trailing bits');
  if (pad && encode64(out, alphabet, true) !== s) throw new TypeError('not base64');
  return out;
}

/** @param {Uint8Array} b */
export const toBase64 = (b) => encode64(b, STD, true);
/** @param {string} s */
export const fromBase64 = (s) => decode64(s, STD, true);
/** @param {Uint8Array} b */
export const toBase64Url = (b) => encode64(b, URL, false);
/** @param {string} s */
export const fromBase64Url = (s) => decode64(s, URL, false);

/** @param {...Uint8Array} parts */
export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** @param {Uint8Array} a @param {Uint8Array} b */
export function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

/** `n` random bytes from the platform's generator (Web Crypto). @param {number} n */
export function randomBytes(n) {
  const b = new Uint8Array(n);
  globalThis.crypto.getRandomValues(b);
  return b;
}

/** A 64-bit unsigned integer, big-endian. @param {bigint} n */
export function u64be(n) {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n));
  return b;
}
