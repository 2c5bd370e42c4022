// grant-node-client: web and Node.js applications ask grant nodes for grants and call them,
// with cartes they sign themselves, and verify everything a node or the registry says.

export { App, DEFAULT_TTL, SUPPORTED_VERSIONS } from './app.js';
export { MemoryBook, isNewer } from './book.js';
export { SigningKey, verifyStrict } from './ed25519.js';
export { signCarte, decodeCarte, verifyCarte, keyInHistory, encodePayload, CARTE_PREFIX } from './carte.js';
export { signReceipt, verifyReceipt, decodeReceipt, verifyNotification, decodeNotification } from './statements.js';
export { Registry, verifyLookup, keyAt, keyHistory } from './registry.js';
export { verifyCheckpoint, parseWitness, originFor } from './note.js';
export { verifyConsistency, verifyInclusion, leafHash } from './tlog.js';
export { decodeMapProof, verifyMapProof, valueOf, keyOf } from './map.js';
export { solve as solveProofOfWork, solveInWorker, leadingZeroBits, workOf } from './pow.js';
export { Catalogue, GRANT } from './scope.js';
export { canonicalName, isCanonicalName } from './name.js';
export { GrantNodeError, VerifyError } from './errors.js';
export { encode as cborEncode, decode as cborDecode } from './cbor.js';
export * as bytes from './bytes.js';

import { SigningKey } from './ed25519.js';
import { fromHex } from './bytes.js';

/** A signing key from a key file's text (the seed in hex, as `grant-node name register` writes it). @param {string} text */
export function keyFromFileText(text) {
  return new SigningKey(fromHex(text.trim()));
}
