// The grant book: what each owner granted, on which node, and the grant requests waiting for
// their redirect. `MemoryBook` keeps it in memory; an application that must keep it across
// restarts passes its own object with the same five async methods (its database, a file).

/**
 * @typedef {{owner: string, nodeUrl: string, scope: bigint, expires: number | null, updated: number}} BookEntry
 * @typedef {{state: string, owner: string, nodeUrl: string, scope: bigint, redirectUri: string, created: number}} PendingGrant
 * @typedef {{
 *   get(owner: string): Promise<BookEntry | null>,
 *   put(entry: BookEntry): Promise<void>,
 *   all(): Promise<BookEntry[]>,
 *   putPending(p: PendingGrant): Promise<void>,
 *   takePending(state: string): Promise<PendingGrant | null>,
 * }} GrantBook
 */

/**
 * Whether news of `time` and `scope` replaces what the book holds: older news never does, and
 * a revocation (scope 0) wins a tie, so a replayed notification cannot bring a grant back.
 * @param {BookEntry | null | undefined} held @param {number} time
 */
export function isNewer(held, time) {
  if (!held) return true;
  if (held.updated > time) return false;
  if (held.updated === time && held.scope === 0n) return false;
  return true;
}

/** How long a grant request waits for its redirect, seconds. */
export const PENDING_TTL = 24 * 3600;

/** @implements {GrantBook} */
export class MemoryBook {
  constructor() {
    /** @type {Map<string, BookEntry>} */
    this.grants = new Map();
    /** @type {Map<string, PendingGrant>} */
    this.pending = new Map();
  }

  async get(owner) {
    const e = this.grants.get(owner);
    return e && e.scope !== 0n ? { ...e } : null;
  }

  async put(entry) {
    if (isNewer(this.grants.get(entry.owner), entry.updated)) this.grants.set(entry.owner, { ...entry });
  }

  async all() {
    return [...this.grants.values()].filter((e) => e.scope !== 0n).map((e) => ({ ...e }));
  }

  async putPending(p) {
    for (const [s, q] of this.pending) if (q.created < p.created - PENDING_TTL) this.pending.delete(s);
    this.pending.set(p.state, { ...p });
  }

  async takePending(state) {
    const p = this.pending.get(state) ?? null;
    this.pending.delete(state);
    return p;
  }
}
