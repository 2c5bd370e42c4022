// The registry's proof of work: blake3(payload) must begin with `bits` zero bits; the last 8
// bytes of a register payload are the nonce a solver patches.

import { blake3 } from '@noble/hashes/blake3.js';

/** Leading zero bits of a hash, byte 0's high bit first. @param {Uint8Array} h */
export function leadingZeroBits(h) {
  let n = 0;
  for (const b of h) {
    if (b === 0) {
      n += 8;
      continue;
    }
    return n + Math.clz32(b) - 24;
  }
  return n;
}

/** The work a payload carries: the leading zero bits of its blake3. @param {Uint8Array} payload */
export const workOf = (payload) => leadingZeroBits(blake3(payload));

/**
 * Finds a nonce: patches the payload's last 8 bytes until blake3 has `bits` leading zeros.
 * Synchronous; browsers run it in a Worker (see `solveInWorker`).
 * @param {Uint8Array} payload @param {number} bits @param {number} [start]
 */
export function solve(payload, bits, start = 0) {
  const p = payload.slice();
  const at = p.length - 8;
  const view = new DataView(p.buffer, p.byteOffset + at, 8);
  for (let n = start; ; n++) {
    view.setUint32(0, Math.floor(n / 2 ** 32));
    view.setUint32(4, n >>> 0);
    if (leadingZeroBits(blake3(p)) >= bits) return p;
  }
}

/**
 * `solve` off the main thread: in a browser, a module Worker at `workerUrl` (the package's
 * `dist/pow-worker.min.js` or `src/pow-worker.js`); elsewhere, in line.
 * @param {Uint8Array} payload @param {number} bits @param {string | URL} [workerUrl]
 * @returns {Promise<Uint8Array>}
 */
export function solveInWorker(payload, bits, workerUrl) {
  if (typeof Worker === 'undefined' || !workerUrl || typeof document === 'undefined') {
    return Promise.resolve(solve(payload, bits));
  }
  return new Promise((resolve, reject) => {
    const w = new Worker(workerUrl, { type: 'module' });
    w.onmessage = (e) => {
      w.terminate();
      resolve(new Uint8Array(e.data));
    };
    w.onerror = (e) => {
      w.terminate();
      reject(new Error(`proof-of-work worker: ${e.message}`));
    };
    w.postMessage({ payload, bits });
  });
}
