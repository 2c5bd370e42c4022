// What an owner's node signs for applications: the receipt of a grant (base64url, in the
// redirect) and the grant-updated notification (raw CBOR, POSTed to the application's node
// URI). Both are envelopes `[payload, signature]` signed by the owner's registered signing key.

import { decode, encode, envelope, openEnvelope } from './cbor.js';
import { concat, fromBase64Url, toBase64Url, utf8 } from './bytes.js';
import { verifyStrict } from './ed25519.js';
import { isCanonicalName } from './name.js';
import { VerifyError } from './errors.js';

export const RECEIPT_PREFIX = utf8('grant-node receipt v1\0');
export const NOTIFICATION_PREFIX = utf8('grant-node notification v1\0');

const isUint = (v) => (typeof v === 'number' && v >= 0) || typeof v === 'bigint';
const isTime = (v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * @typedef {{owner: string, application: string, scope: bigint, time: number, state: string}} Receipt
 * @typedef {{owner: string, application: string, scope: bigint, expires: number | null, time: number}} Notification
 */

/** @param {string} what @param {Uint8Array} bytes */
function open(what, bytes) {
  try {
    const { payload, signature } = openEnvelope(bytes);
    return { payload, signature, v: decode(payload) };
  } catch (e) {
    throw new VerifyError(`${what}.malformed`, String(e?.message ?? e));
  }
}

/** Decodes a receipt without checking its signature (to learn whose key to ask for). @param {string} wire */
export function decodeReceipt(wire) {
  let bytes;
  try {
    bytes = fromBase64Url(wire);
  } catch {
    throw new VerifyError('receipt.malformed', 'not unpadded base64url');
  }
  const { payload, signature, v } = open('receipt', bytes);
  if (!Array.isArray(v) || v.length !== 7 || v[0] !== 1 || v[1] !== 'receipt' || !isCanonicalName(v[2]) ||
    !isCanonicalName(v[3]) || !isUint(v[4]) || !isTime(v[5]) || typeof v[6] !== 'string') {
    throw new VerifyError('receipt.malformed', 'not a version 1 receipt');
  }
  /** @type {Receipt} */
  const receipt = { owner: v[2], application: v[3], scope: BigInt(v[4]), time: v[5], state: v[6] };
  return { receipt, payload, signature };
}

/** Verifies a receipt with the owner's key (the key it held at the receipt's time). @param {string} wire @param {Uint8Array} ownerKey */
export function verifyReceipt(wire, ownerKey) {
  const { receipt, payload, signature } = decodeReceipt(wire);
  if (!verifyStrict(signature, concat(RECEIPT_PREFIX, payload), ownerKey)) {
    throw new VerifyError('receipt.bad-signature', 'the receipt is not signed by the owner');
  }
  return receipt;
}

/** Decodes a notification body without checking its signature. @param {Uint8Array} body */
export function decodeNotification(body) {
  const { payload, signature, v } = open('notification', body);
  if (!Array.isArray(v) || v.length !== 7 || v[0] !== 1 || v[1] !== 'grant-updated' || !isCanonicalName(v[2]) ||
    !isCanonicalName(v[3]) || !isUint(v[4]) || !(v[5] === null || isTime(v[5])) || !isTime(v[6])) {
    throw new VerifyError('notification.malformed', 'not a version 1 grant-updated notification');
  }
  /** @type {Notification} */
  const notification = { owner: v[2], application: v[3], scope: BigInt(v[4]), expires: v[5], time: v[6] };
  return { notification, payload, signature };
}

/** @param {Uint8Array} body @param {Uint8Array} ownerKey */
export function verifyNotification(body, ownerKey) {
  const { notification, payload, signature } = decodeNotification(body);
  if (!verifyStrict(signature, concat(NOTIFICATION_PREFIX, payload), ownerKey)) {
    throw new VerifyError('notification.bad-signature', 'the notification is not signed by the owner');
  }
  return notification;
}

/** Signs a receipt (what a node does; for tests and for nodes written in JavaScript). @param {Receipt} r @param {import('./ed25519.js').SigningKey} key */
export function signReceipt(r, key) {
  const payload = encode([1, 'receipt', r.owner, r.application, BigInt(r.scope), r.time, r.state]);
  return toBase64Url(envelope(payload, key.sign(concat(RECEIPT_PREFIX, payload))));
}
