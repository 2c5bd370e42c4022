// Ed25519 with the node's exact verification rule: ed25519-dalek's `verify_strict`.
//
// @noble/curves does the curve arithmetic. Its own `verify` with `zip215: false` refuses
// non-canonical point encodings but not every small-order key or R, so the rule is written out
// here, step for step as `verify_strict` takes it: S < ℓ; R decodes to a point and A to a point
// (a non-canonical y is reduced, as dalek does); neither is of small order; then
// R must be, byte for byte, the encoding of [S]B − [k]A with k = SHA-512(R ‖ A ‖ M) mod ℓ.
// `test/vectors.test.js` checks every strictness vector of data/vectors/cartes.json.

import { ed25519 } from '@noble/curves/ed25519.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { equal } from './bytes.js';

const Point = ed25519.Point;
/** The order of the prime-order subgroup. */
export const L = 2n ** 252n + 27742317777372353535851937790883648493n;

/** @param {Uint8Array} b */
function leInt(b) {
  let n = 0n;
  for (let i = b.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i]);
  return n;
}

/**
 * Whether `signature` by `publicKey` on `message` passes `verify_strict`.
 * @param {Uint8Array} signature 64 bytes
 * @param {Uint8Array} message
 * @param {Uint8Array} publicKey 32 bytes
 */
export function verifyStrict(signature, message, publicKey) {
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  const rBytes = signature.subarray(0, 32);
  const s = leInt(signature.subarray(32));
  if (s >= L) return false;
  let A;
  let R;
  try {
    A = Point.fromBytes(publicKey, true);
    R = Point.fromBytes(rBytes, true);
  } catch {
    return false;
  }
  if (A.isSmallOrder() || R.isSmallOrder()) return false;
  const k = leInt(sha512(new Uint8Array([...rBytes, ...publicKey, ...message]))) % L;
  const expected = Point.BASE.multiplyUnsafe(s).subtract(A.multiplyUnsafe(k));
  return equal(expected.toBytes(), rBytes);
}

/** A signing key: the 32-byte seed, and the public key it gives. */
export class SigningKey {
  #seed;
  /** @param {Uint8Array} seed 32 bytes */
  constructor(seed) {
    if (!(seed instanceof Uint8Array) || seed.length !== 32) {
      throw new TypeError('a signing key is a 32-byte seed');
    }
    this.#seed = seed.slice();
    /** @type {Uint8Array} */
    this.publicKey = ed25519.getPublicKey(this.#seed);
  }

  /** A fresh random key. */
  static generate() {
    return new SigningKey(ed25519.utils.randomSecretKey());
  }

  /** @param {Uint8Array} message */
  sign(message) {
    return ed25519.sign(message, this.#seed);
  }

  /** The seed, for saving to a key file. Handle it as the secret it is. */
  exportSeed() {
    return this.#seed.slice();
  }

  // Keys stay out of logs, error messages and JSON: every way of printing one shows only
  // that it is a key and its public half.
  toString() {
    return `SigningKey(public ${Array.from(this.publicKey.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join('')}…)`;
  }
  toJSON() {
    return this.toString();
  }
  [Symbol.for('nodejs.util.inspect.custom')]() {
    return this.toString();
  }
}
