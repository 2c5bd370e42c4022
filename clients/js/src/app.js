// The application: one `App` that asks many owners' nodes for grants and calls them, signing
// cartes as needed. Mirrors the Rust toolkit (`crates/toolkit`).

import { signCarte } from './carte.js';
import { randomBytes, toBase64Url } from './bytes.js';
import { canonicalName } from './name.js';
import { Catalogue, GRANT } from './scope.js';
import { decodeReceipt, verifyNotification, verifyReceipt, decodeNotification } from './statements.js';
import { Registry, keyAt, refused } from './registry.js';
import { MemoryBook } from './book.js';
import { GrantNodeError, VerifyError } from './errors.js';

/** The protocol versions this library speaks. */
export const SUPPORTED_VERSIONS = [1];
/** Default lifetime of admin cartes, seconds. */
export const DEFAULT_TTL = 300;
const RENEW_BEFORE = 60;
/** How far in the future a notification may be dated (the nodes' clocks may run ahead). */
export const NOTIFICATION_SKEW = 300;
/** How long a verified record is reused, milliseconds. */
export const LOOKUP_TTL_MS = 30_000;

const nowSecs = () => Math.floor(Date.now() / 1000);

export class App {
  /** @type {import('./ed25519.js').SigningKey} */
  #key;

  /**
   * @param {{name: string, key: import('./ed25519.js').SigningKey, registry: Registry,
   *   book?: import('./book.js').GrantBook, fetch?: typeof fetch, ttl?: number, catalogue?: Catalogue}} config
   *   `registry`: a `Registry` (give it the registry's key and the witnesses you trust)
   */
  constructor(config) {
    this.name = canonicalName(config.name);
    this.registry = config.registry;
    this.book = config.book ?? new MemoryBook();
    this.fetch = config.fetch ?? globalThis.fetch.bind(globalThis);
    this.ttl = Math.max(10, config.ttl ?? DEFAULT_TTL);
    this.catalogue = config.catalogue ?? new Catalogue();
    // Private: the key never appears in `JSON.stringify(app)`, logs or errors.
    this.#key = config.key;
    /** @type {Map<string, {wire: string, deadline: number}>} */
    this.cartes = new Map();
    /** @type {Map<string, number>} learnt clock offsets per node URL, seconds */
    this.offsets = new Map();
    /** @type {Map<string, {record: any, at: number}>} */
    this.records = new Map();
  }

  /** A name's verified record (light look-up, reused for 30 s unless `fresh`). @param {string} name @param {boolean} [fresh] */
  async lookup(name, fresh = false) {
    const n = canonicalName(name);
    const hit = this.records.get(n);
    if (!fresh && hit && Date.now() - hit.at < LOOKUP_TTL_MS) return hit.record;
    const record = await this.registry.lookup(n);
    bounded(this.records).set(n, { record, at: Date.now() });
    return record;
  }

  /** @param {string} user @param {boolean} [fresh] */
  async nodeUrl(user, fresh = false) {
    const record = await this.lookup(user, fresh);
    if (!record) throw new GrantNodeError('name.unknown', `${user} is not a registered name`);
    return record.node_uri.replace(/\/+$/, '');
  }

  /** Finds `user`'s home node and checks it speaks our protocol. @param {string} user */
  async discover(user) {
    const url = await this.nodeUrl(user);
    const r = await this.fetch(`${url}/.well-known/grant-node`, { redirect: 'error' });
    if (!r.ok) throw await refused(r);
    const doc = await r.json();
    if (!SUPPORTED_VERSIONS.includes(doc.protocol_version)) {
      throw new GrantNodeError('node.unsupported-version', `${url} speaks protocol version ${doc.protocol_version}`);
    }
    return { url, protocolVersion: doc.protocol_version, nodeName: doc.node_name ?? null };
  }

  /**
   * Signs a carte for `audience` allowing `adminScope` (names or bits), valid `ttl` seconds.
   * @param {string} audience @param {bigint | string} adminScope @param {number} [ttl]
   */
  carte(audience, adminScope, ttl = this.ttl) {
    const now = nowSecs();
    return signCarte({
      owner: this.name, audience: canonicalName(audience), beginning: now - 5, deadline: now + ttl,
      adminScope: this.#scope(adminScope),
    }, this.#key);
  }

  /** @param {bigint | string | string[]} s */
  #scope(s) {
    return typeof s === 'bigint' ? s : this.catalogue.parse(s);
  }

  /**
   * The `/grant` URL to send `user`'s browser to, for `scope` and `redirectUri` (one of the
   * application's registered redirect URIs), with a fresh state; the request is remembered.
   * @param {string} user @param {bigint | string | string[]} scope @param {string} redirectUri
   */
  async startGrant(user, scope, redirectUri) {
    const owner = canonicalName(user);
    const node = await this.discover(owner);
    const state = toBase64Url(randomBytes(32));
    const bits = this.#scope(scope);
    const now = nowSecs();
    // Valid for half an hour: time enough to log in at the node.
    const carte = signCarte({
      owner: this.name, beginning: now, deadline: now + 1800, clientScope: GRANT,
      request: { scope: bits, redirectUri, state },
    }, this.#key);
    const q = new URLSearchParams({
      client_id: this.name, client_secret: carte, scope: this.catalogue.format(bits),
      redirect_uri: redirectUri, state, owner,
    });
    await this.book.putPending({ state, owner, nodeUrl: node.url, scope: bits, redirectUri, created: now });
    return { url: `${node.url}/grant?${q}`, state };
  }

  /**
   * Finishes a grant from the URL (or query) the browser came back with: matches the state,
   * verifies the owner's receipt against the registry, records the grant.
   * @param {string} redirected
   */
  async finishGrant(redirected) {
    const query = redirected.includes('?') ? redirected.slice(redirected.indexOf('?') + 1) : redirected;
    const params = new URLSearchParams(query);
    const state = params.get('state');
    const pending = state ? await this.book.takePending(state) : null;
    if (!pending) throw new GrantNodeError('grant.wrong-state', 'the state matches no grant request this application sent');
    if (params.get('error')) throw new GrantNodeError('grant.denied', `the user did not grant access (${params.get('error')})`);
    const wire = params.get('receipt');
    if (!wire) throw new VerifyError('receipt.missing', 'no receipt');
    const receipt = await this.#verifyReceipt(wire);
    if (receipt.owner !== pending.owner || params.get('node') !== pending.owner) {
      throw new VerifyError('receipt.wrong-owner', `signed by ${receipt.owner}, but the request went to ${pending.owner}`);
    }
    if (receipt.application !== this.name) throw new VerifyError('receipt.wrong-application', 'issued to another application');
    if (receipt.state !== state) throw new VerifyError('receipt.wrong-state', 'issued for another request');
    await this.book.put({ owner: receipt.owner, nodeUrl: pending.nodeUrl, scope: receipt.scope, expires: null, updated: receipt.time });
    return { owner: receipt.owner, scope: receipt.scope, nodeUrl: pending.nodeUrl };
  }

  /** The key `owner` held at `time`, asking the registry again once if need be. @param {string} owner @param {number} time @param {boolean} [fresh] */
  async ownerKey(owner, time, fresh = false) {
    const record = await this.lookup(owner, fresh);
    const key = record && keyAt(record, time);
    if (key) return key;
    if (!fresh) return this.ownerKey(owner, time, true);
    throw new VerifyError('receipt.key-not-valid', `${owner} held no valid key at ${time}`);
  }

  async #verifyReceipt(wire) {
    const { receipt } = decodeReceipt(wire);
    try {
      return verifyReceipt(wire, await this.ownerKey(receipt.owner, receipt.time));
    } catch (e) {
      if (!(e instanceof VerifyError) || e.code !== 'receipt.bad-signature') throw e;
      // What we know may be behind a key change: ask again, once.
      return verifyReceipt(wire, await this.ownerKey(receipt.owner, receipt.time, true));
    }
  }

  /** The grant book's entries. */
  grants() {
    return this.book.all();
  }

  /**
   * Calls `user`'s node: `Authorization: Carte …` with `scope`, re-signed near its deadline or
   * after a clock-related refusal (learning the node's clock from its `Date`), following the
   * registry (never the node) after `410 owner.moved`. Errors carry the node's code;
   * `grant.missing-scope` lists `details.missing`.
   * @param {string} user @param {string} method @param {string} path @param {bigint | string | string[]} scope @param {any} [body]
   */
  async call(user, method, path, scope, body) {
    const owner = canonicalName(user);
    const bits = this.#scope(scope);
    let node = (await this.book.get(owner))?.nodeUrl ?? (await this.discover(owner)).url;
    let fresh = false;
    let moved = false;
    for (;;) {
      const carte = this.#adminCarte(owner, bits, node, fresh);
      const r = await this.fetch(`${node}${path}`, {
        // A node URL comes from a verified record; a redirect would send the carte elsewhere.
        redirect: 'error',
        method,
        headers: { authorization: `Carte ${carte}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      if (r.ok) return r.status === 204 ? null : r.json();
      const err = await refused(r);
      if (r.status === 401 && !fresh && (err.code === 'carte.expired' || err.code === 'carte.not-begun')) {
        const date = Date.parse(r.headers.get('date') ?? '');
        if (!Number.isNaN(date)) bounded(this.offsets).set(node, Math.floor(date / 1000) - nowSecs());
        fresh = true;
        continue;
      }
      if (r.status === 410 && err.code === 'owner.moved' && !moved) {
        moved = true;
        const home = await this.nodeUrl(owner, true);
        if (home === node) throw err;
        const held = await this.book.get(owner);
        if (held) await this.book.put({ ...held, nodeUrl: home, updated: held.updated });
        node = home;
        continue;
      }
      throw err;
    }
  }

  /** @param {string} user @param {string} path @param {bigint | string | string[]} scope */
  get(user, path, scope) {
    return this.call(user, 'GET', path, scope);
  }

  /** @param {string} user @param {string} path @param {bigint | string | string[]} scope @param {any} body */
  put(user, path, scope, body) {
    return this.call(user, 'PUT', path, scope, body);
  }

  /** @param {string} user @param {string} path @param {bigint | string | string[]} scope @param {any} body */
  post(user, path, scope, body) {
    return this.call(user, 'POST', path, scope, body);
  }

  #adminCarte(owner, scope, node, fresh) {
    const now = nowSecs() + (this.offsets.get(node) ?? 0);
    const k = `${owner} ${scope}`;
    const hit = this.cartes.get(k);
    if (!fresh && hit && hit.deadline > now + RENEW_BEFORE) return hit.wire;
    const deadline = now + this.ttl;
    const wire = signCarte({ owner: this.name, audience: owner, beginning: now - 5, deadline, adminScope: scope }, this.#key);
    bounded(this.cartes).set(k, { wire, deadline });
    return wire;
  }

  /**
   * Verifies a grant-updated notification (the raw body a node POSTed) against the owner's
   * registered key and applies it to the grant book. Throws a `VerifyError` when it does not
   * verify or is not for this application.
   * @param {Uint8Array} body
   */
  async acceptNotification(body) {
    const { notification } = decodeNotification(body);
    if (notification.application !== this.name) {
      throw new VerifyError('notification.not-for-us', 'addressed to another application');
    }
    // Fresh: not from the future (beyond the clock skew a carte is allowed), so that no
    // notification can pin the book against every later one.
    if (notification.time > nowSecs() + NOTIFICATION_SKEW) {
      throw new VerifyError('notification.not-fresh', `dated ${notification.time}, in the future`);
    }
    let n;
    try {
      n = verifyNotification(body, await this.ownerKey(notification.owner, notification.time));
    } catch (e) {
      if (!(e instanceof VerifyError) || e.code !== 'notification.bad-signature') throw e;
      n = verifyNotification(body, await this.ownerKey(notification.owner, notification.time, true));
    }
    // Older news than the book holds (a replay) is verified but changes nothing.
    const held = await this.book.get(n.owner);
    const nodeUrl = held?.nodeUrl ?? (await this.nodeUrl(n.owner).catch(() => ''));
    await this.book.put({ owner: n.owner, nodeUrl, scope: n.scope, expires: n.expires, updated: n.time });
    return n;
  }

  /**
   * A Fetch API handler (`Request → Response`) for notifications, to mount at the
   * application's registered node URI: 204 when applied, 400 malformed or not for us, 401 when
   * the signature does not verify.
   */
  notificationHandler() {
    return async (/** @type {Request} */ request) => {
      if (request.method !== 'POST') return new Response(null, { status: 405, headers: { allow: 'POST' } });
      const body = new Uint8Array(await request.arrayBuffer());
      if (body.length > 8192) return json(413, 'notification.too-large');
      try {
        await this.acceptNotification(body);
        return new Response(null, { status: 204 });
      } catch (e) {
        const code = e?.code ?? 'notification.malformed';
        return json(code.endsWith('bad-signature') || code.endsWith('key-not-valid') ? 401 : 400, code);
      }
    };
  }

  toJSON() {
    return { name: this.name, registry: this.registry.url };
  }
}

/** The most entries each cache holds (cartes, records, clock offsets); a full one starts over. */
export const MAX_CACHED = 100_000;

/** `map`, emptied first when full: memory stays bounded however many users an app serves. @template K, V @param {Map<K, V>} map */
function bounded(map) {
  if (map.size >= MAX_CACHED) map.clear();
  return map;
}

/** @param {number} status @param {string} code */
function json(status, code) {
  return new Response(JSON.stringify({ error: code }), { status, headers: { 'content-type': 'application/json' } });
}
