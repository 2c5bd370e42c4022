// The proof-of-work solver as a module Worker: `{payload, bits}` in, the solved payload out.
import { solve } from './pow.js';

self.onmessage = (e) => {
  const solved = solve(new Uint8Array(e.data.payload), e.data.bits);
  /** @type {any} */ (self).postMessage(solved, [solved.buffer]);
};
