// Cartes, version 1 (README "Wire formats"): sign, encode, decode and verify.

import { decode as cborDecode, encode, envelope, openEnvelope } from './cbor.js';
import { concat, fromBase64Url, randomBytes, toBase64Url, utf8 } from './bytes.js';
import { verifyStrict } from './ed25519.js';
import { isCanonicalName } from './name.js';
import { VerifyError } from './errors.js';

export const CARTE_PREFIX = utf8('grant-node carte v1\0');
export const MAX_WIRE_LEN = 4096;

/**
 * @typedef {object} Carte
 * @property {string} owner the signer's canonical name
 * @property {string | null} [audience] the node name (an owner) the carte is for
 * @property {string | null} [subject] the owner acted for (controlled accounts)
 * @property {number} beginning Unix seconds
 * @property {number} deadline Unix seconds
 * @property {bigint} [clientScope]
 * @property {bigint} [adminScope]
 * @property {Uint8Array[] | null} [addresses] 4 or 16 bytes each
 * @property {{scope: bigint, redirectUri: string, state: string} | null} [request]
 * @property {Uint8Array} [nonce] 16 bytes (random when omitted)
 */

/** The payload's canonical CBOR. @param {Carte} c */
export function encodePayload(c) {
  const nonce = c.nonce ?? randomBytes(16);
  if (nonce.length !== 16) throw new TypeError('a nonce is 16 bytes');
  return encode([
    1,
    'carte',
    c.owner,
    c.audience ?? null,
    c.subject ?? null,
    c.beginning,
    c.deadline,
    BigInt(c.clientScope ?? 0n),
    BigInt(c.adminScope ?? 0n),
    c.addresses ?? null,
    c.request ? [BigInt(c.request.scope), c.request.redirectUri, c.request.state] : null,
    nonce,
  ]);
}

/**
 * Signs a carte: its wire form, `base64url([payload, signature])`.
 * @param {Carte} carte @param {import('./ed25519.js').SigningKey} key
 */
export function signCarte(carte, key) {
  for (const n of [carte.owner, carte.audience, carte.subject]) {
    if (n != null && !isCanonicalName(n)) throw new TypeError(`${JSON.stringify(n)} is not a canonical name`);
  }
  if (!(carte.deadline >= carte.beginning)) throw new TypeError('deadline before beginning');
  const payload = encodePayload(carte);
  return toBase64Url(envelope(payload, key.sign(concat(CARTE_PREFIX, payload))));
}

const malformed = (why) => new VerifyError('carte.malformed', why);
const isUint = (v) => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) || typeof v === 'bigint';
const isNameOrNull = (v) => v === null || (typeof v === 'string' && isCanonicalName(v));

/**
 * Decodes a carte's wire form (format only: no time, audience or signature check).
 * @param {string} wire
 * @returns {{carte: Carte, payload: Uint8Array, signature: Uint8Array}}
 */
export function decodeCarte(wire) {
  if (typeof wire !== 'string' || wire.length > MAX_WIRE_LEN) throw malformed('longer than 4096 bytes');
  let bytes;
  try {
    bytes = fromBase64Url(wire);
  } catch {
    throw malformed('not unpadded base64url');
  }
  let payload;
  let signature;
  let v;
  try {
    ({ payload, signature } = openEnvelope(bytes));
    v = cborDecode(payload);
  } catch (e) {
    throw malformed(String(e?.message ?? e));
  }
  if (!Array.isArray(v) || v.length === 0) throw malformed('payload is not an array');
  if (v[0] !== 1) {
    if (isUint(v[0])) throw new VerifyError('carte.unsupported-version', `version ${v[0]}`);
    throw malformed('no version');
  }
  if (v.length !== 12) throw malformed('a version 1 payload has 12 fields');
  const [, kind, owner, audience, subject, beginning, deadline, cs, as, addresses, request, nonce] = v;
  if (kind !== 'carte') throw malformed('kind is not "carte"');
  if (typeof owner !== 'string' || !isCanonicalName(owner)) throw malformed('owner is not a canonical name');
  if (!isNameOrNull(audience) || !isNameOrNull(subject)) throw malformed('a name is not canonical');
  if (typeof beginning !== 'number' || typeof deadline !== 'number' || !isUint(beginning) || !isUint(deadline)) {
    throw malformed('times are not integers');
  }
  if (deadline < beginning) throw malformed('deadline before beginning');
  if (!isUint(cs) || !isUint(as)) throw malformed('scopes are not integers');
  if (addresses !== null && !(Array.isArray(addresses) && addresses.every((a) => a instanceof Uint8Array && (a.length === 4 || a.length === 16)))) {
    throw malformed('addresses');
  }
  if (request !== null && !(Array.isArray(request) && request.length === 3 && isUint(request[0]) && typeof request[1] === 'string' && typeof request[2] === 'string')) {
    throw malformed('request');
  }
  if (!(nonce instanceof Uint8Array) || nonce.length !== 16) throw malformed('nonce');
  /** @type {Carte} */
  const carte = {
    owner,
    audience,
    subject,
    beginning,
    deadline,
    clientScope: BigInt(cs),
    adminScope: BigInt(as),
    addresses,
    request: request && { scope: BigInt(request[0]), redirectUri: request[1], state: request[2] },
    nonce,
  };
  return { carte, payload, signature };
}

/**
 * The key a name held at a time, from its key history: the key with the latest `validFrom <=
 * at`, unless it is marked compromised as of a time `<= at`.
 * @param {Array<{key: Uint8Array, validFrom: number, compromisedAt?: number | null}>} keys
 * @param {number} at
 * @returns {{key: Uint8Array} | {error: 'no-valid-key' | 'compromised'}}
 */
export function keyInHistory(keys, at) {
  let held = null;
  for (const k of keys) if (k.validFrom <= at && (!held || k.validFrom >= held.validFrom)) held = k;
  if (!held) return { error: 'no-valid-key' };
  if (held.compromisedAt != null && held.compromisedAt <= at) return { error: 'compromised' };
  return { key: held.key };
}

/** @param {Uint8Array} a */
function canonicalAddress(a) {
  // IPv4-mapped IPv6 equals its IPv4.
  if (a.length === 16 && a.subarray(0, 10).every((b) => b === 0) && a[10] === 0xff && a[11] === 0xff) {
    return a.subarray(12);
  }
  return a;
}

/**
 * Verifies a carte as a node does (README, "Verification"), in the same order with the same
 * codes. `keysOf(name)` returns the name's key history, or null for an unknown name.
 * @param {string} wire
 * @param {{now: number, acceptsAudience: (name: string) => boolean, peer?: Uint8Array | null,
 *   skew?: number, maxLifetime?: number,
 *   keysOf: (name: string) => Array<{key: Uint8Array, validFrom: number, compromisedAt?: number | null}> | null}} expect
 */
export function verifyCarte(wire, expect) {
  const { carte, payload, signature } = decodeCarte(wire);
  const skew = expect.skew ?? 60;
  const maxLifetime = expect.maxLifetime ?? 3600;
  if (expect.now + skew < carte.beginning) throw new VerifyError('carte.not-begun', 'not valid yet');
  if (expect.now > carte.deadline + skew) throw new VerifyError('carte.expired', 'expired');
  if (carte.deadline - carte.beginning > maxLifetime) throw new VerifyError('carte.lifetime-too-long', 'lives too long');
  if (carte.audience != null ? !expect.acceptsAudience(carte.audience) : carte.adminScope !== 0n) {
    throw new VerifyError('carte.wrong-node', 'not for this node');
  }
  if (carte.addresses) {
    const peer = expect.peer && canonicalAddress(expect.peer);
    const ok = peer && carte.addresses.some((a) => {
      const c = canonicalAddress(a);
      return c.length === peer.length && c.every((b, i) => b === peer[i]);
    });
    if (!ok) throw new VerifyError('carte.address-mismatch', 'not from an address it names');
  }
  const history = expect.keysOf(carte.owner);
  if (!history) throw new VerifyError('carte.unknown-signer', `${carte.owner} is not registered`);
  const held = keyInHistory(history, carte.beginning);
  if ('error' in held) throw new VerifyError('carte.key-not-valid', `${carte.owner} held no valid key then`);
  if (!verifyStrict(signature, concat(CARTE_PREFIX, payload), held.key)) {
    throw new VerifyError('carte.bad-signature', 'the signature does not verify');
  }
  return { principal: carte.owner, carte };
}
