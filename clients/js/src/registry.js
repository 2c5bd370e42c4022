// The registry's API: read records, register and update names (with the proof of work), and
// light look-ups proven against a signed, witnessed checkpoint.

import { concat, fromBase64, fromBase64Url, fromHex, toHex, utf8 } from './bytes.js';
import { encode, envelope } from './cbor.js';
import { canonicalName } from './name.js';
import { solveInWorker } from './pow.js';
import { verifyCheckpoint } from './note.js';
import { verifyConsistency } from './tlog.js';
import { decodeMapProof, keyOf, valueOf, verifyMapProof } from './map.js';
import { GrantNodeError } from './errors.js';
import { keyInHistory } from './carte.js';

export const OP_PREFIX = utf8('grant-node registry op v1\0');

/**
 * A record's key history in the form `keyInHistory` and `verifyCarte` take.
 * @param {import('./map.js').RecordJson} record
 */
export function keyHistory(record) {
  return record.keys.map((k) => ({
    key: fromHex(k.key),
    validFrom: k.valid_from,
    compromisedAt: k.compromised ? (k.compromised_from ?? k.valid_from) : null,
  }));
}

/** The signing key `record`'s name held at `time` (or null). @param {import('./map.js').RecordJson} record @param {number} time */
export function keyAt(record, time) {
  const held = keyInHistory(keyHistory(record), time);
  return 'key' in held ? held.key : null;
}

/** Throws the node's or registry's error, typed. @param {Response} r */
export async function refused(r) {
  let body = {};
  try {
    body = await r.json();
  } catch {
    /* not JSON */
  }
  return new GrantNodeError(body.error ?? `http.${r.status}`, body.message ?? r.statusText, { status: r.status, details: body });
}

/** @typedef {{size: number, root: Uint8Array}} Trusted */

export class Registry {
  /**
   * @param {string} url the registry's base URL
   * @param {{fetch?: typeof fetch, key?: Uint8Array, witnesses?: import('./note.js').Witness[], quorum?: number, powWorker?: string | URL}} [options]
   *   `key`: the registry's public key (pinned; else fetched from /registry/metadata on first use)
   */
  constructor(url, options = {}) {
    this.url = url.replace(/\/+$/, '');
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.key = options.key ?? null;
    this.witnesses = options.witnesses ?? [];
    this.quorum = options.quorum ?? 0;
    this.powWorker = options.powWorker;
    /** @type {Trusted | null} the last checkpoint trusted by light look-ups */
    this.trusted = null;
  }

  async #get(path) {
    const r = await this.fetch(`${this.url}${path}`, { redirect: 'error' });
    if (!r.ok) throw await refused(r);
    return r.json();
  }

  /** `GET /registry/metadata`. */
  metadata() {
    return this.#get('/registry/metadata');
  }

  /** The registry's key: pinned, or learnt (trust on first use). */
  async registryKey() {
    if (!this.key) this.key = fromHex((await this.metadata()).public_key);
    return this.key;
  }

  /** A record as the registry serves it, unverified (`null` when not registered). @param {string} name */
  async record(name) {
    const r = await this.fetch(`${this.url}/registry/names/${encodeURIComponent(canonicalName(name))}`, { redirect: 'error' });
    if (r.status === 404) return null;
    if (!r.ok) throw await refused(r);
    return r.json();
  }

  /**
   * A light look-up: the record (or its proven absence), checked against a checkpoint the
   * registry signed and `quorum` of `witnesses` cosigned, consistent with the last checkpoint
   * this object trusted, through the name map proof. Trusts nothing the registry says otherwise.
   * @param {string} name
   * @returns {Promise<import('./map.js').RecordJson | null>}
   */
  async lookup(name) {
    const canonical = canonicalName(name);
    const known = this.trusted ? `?known=${this.trusted.size}` : '';
    const answer = await this.#get(`/registry/names/${encodeURIComponent(canonical)}/proof${known}`);
    const { record, trusted } = verifyLookup(canonical, answer, {
      registryKey: await this.registryKey(),
      witnesses: this.witnesses,
      quorum: this.quorum,
      trusted: this.trusted,
    });
    this.trusted = trusted;
    return record;
  }

  /** Posts a signed operation envelope. @param {Uint8Array} op */
  async submit(op) {
    const r = await this.fetch(`${this.url}/registry/ops`, {
      redirect: 'error',
      method: 'POST',
      headers: { 'content-type': 'application/cbor' },
      body: op,
    });
    if (!r.ok) throw await refused(r);
    return r.json();
  }

  /**
   * Registers `name`: signed by the updating key, with the registry's proof of work (off the
   * main thread in browsers when `powWorker` is given).
   * @param {{name: string, updatingKey: import('./ed25519.js').SigningKey, signingKey: import('./ed25519.js').SigningKey,
   *   nodeUri: string, redirectUris?: string[], validFrom?: number, powBits?: number}} r
   */
  async register(r) {
    const bits = r.powBits ?? (await this.metadata()).pow_bits;
    const validFrom = r.validFrom ?? Math.floor(Date.now() / 1000);
    const payload = encode([
      1, 'register', canonicalName(r.name), r.updatingKey.publicKey, r.signingKey.publicKey,
      validFrom, r.nodeUri, r.redirectUris ?? [], new Uint8Array(8),
    ]);
    const solved = await solveInWorker(payload, bits, this.powWorker);
    return this.submit(envelope(solved, r.updatingKey.sign(concat(OP_PREFIX, solved))));
  }

  /**
   * Updates `name`, signed by its current updating key; `previousDigest` defaults to the
   * record's digest now.
   * @param {{name: string, updatingKey: import('./ed25519.js').SigningKey, previousDigest?: Uint8Array,
   *   newSigningKey?: {key: Uint8Array, validFrom: number}, nodeUri?: string, redirectUris?: string[],
   *   newUpdatingKey?: Uint8Array, compromisedKey?: Uint8Array, compromisedSince?: number}} u
   */
  async update(u) {
    const name = canonicalName(u.name);
    let digest = u.previousDigest;
    if (!digest) {
      const rec = await this.record(name);
      if (!rec) throw new GrantNodeError('name.unknown', `${name} is not registered`);
      digest = fromHex(rec.digest);
    }
    const fields = [
      1, 'update', name, digest,
      u.newSigningKey ? [u.newSigningKey.key, u.newSigningKey.validFrom] : null,
      u.nodeUri ?? null, u.redirectUris ?? null, u.newUpdatingKey ?? null, u.compromisedKey ?? null,
    ];
    if (u.compromisedSince != null) fields.push(u.compromisedSince);
    const payload = encode(fields);
    return this.submit(envelope(payload, u.updatingKey.sign(concat(OP_PREFIX, payload))));
  }
}

/**
 * Checks a `GET /registry/names/{name}/proof` answer (pure). Returns the record (or null when
 * proven absent) and the checkpoint to trust from now on.
 * @param {string} name canonical
 * @param {{record: import('./map.js').RecordJson | null, proof: string, checkpoint: string, consistency: string[]}} answer
 * @param {{registryKey: Uint8Array, witnesses?: import('./note.js').Witness[], quorum?: number, trusted?: Trusted | null}} opts
 */
export function verifyLookup(name, answer, opts) {
  const untrusted = (m) => new GrantNodeError('registry.untrusted', m);
  const { checkpoint, cosignedBy } = verifyCheckpoint(answer.checkpoint, opts.registryKey, opts.witnesses ?? []);
  const quorum = opts.quorum ?? 0;
  if (cosignedBy.length < quorum) {
    throw untrusted(`the checkpoint is cosigned by ${cosignedBy.length} of the ${quorum} witnesses required`);
  }
  const now = { size: checkpoint.size, root: checkpoint.root };
  const old = opts.trusted;
  if (old) {
    const [small, large] = old.size <= now.size ? [old, now] : [now, old];
    const proof = (answer.consistency ?? []).map((h) => fromBase64(h));
    if (!verifyConsistency(small.size, large.size, small.root, large.root, small.size === large.size ? [] : proof)) {
      throw untrusted('the checkpoint is not consistent with the one trusted before');
    }
  }
  let proof;
  try {
    proof = decodeMapProof(fromBase64Url(answer.proof));
  } catch (e) {
    throw e instanceof GrantNodeError ? e : untrusted('malformed map proof');
  }
  const value = verifyMapProof(proof, checkpoint.mapRoot, keyOf(name));
  let record = null;
  if (value && answer.record) {
    if (answer.record.name !== name || toHex(valueOf(answer.record)) !== toHex(value)) {
      throw untrusted('the record is not the one the checkpoint commits to');
    }
    record = answer.record;
  } else if (value) {
    throw untrusted('the map holds a record not sent');
  } else if (answer.record) {
    throw untrusted('a record the map proves absent');
  }
  const keep = old && old.size > now.size ? old : now;
  return { record, trusted: keep, checkpoint };
}
