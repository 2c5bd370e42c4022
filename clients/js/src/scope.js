// Scopes: bitmasks (bigint) and the node's built-in catalogue of names. A node may define more
// scopes (bits 32–62); pass their names and bits to `Catalogue` to use them.

const BUILTIN = [
  ['other', 0x1], ['view-content', 0x4], ['add-post', 0x8], ['update-post', 0x10],
  ['add-comment', 0x20], ['update-comment', 0x40], ['react', 0x80],
  ['delete-own-content', 0x100], ['block', 0x800], ['friend', 0x1000],
  ['remote-identify', 0x2000], ['drafts', 0x4000], ['view-feeds', 0x8000],
  ['update-feeds', 0x10000], ['name', 0x20000], ['plugins', 0x40000],
  ['view-profile', 0x80000], ['update-profile', 0x100000], ['sheriff', 0x200000],
  ['view-settings', 0x400000], ['update-settings', 0x800000], ['subscribe', 0x1000000],
  ['tokens', 0x2000000], ['user-lists', 0x4000000], ['grant', 0x8000000],
  ['upload-public-media', 0x10000000], ['upload-private-media', 0x20000000],
  ['lease-media', 0x40000000],
];

export class ScopeError extends Error {
  /** @param {string} name */
  constructor(name) {
    super(`unknown scope ${JSON.stringify(name)}`);
    this.code = 'scope.unknown';
  }
}

/** Scope names to bits and back. */
export class Catalogue {
  /** @param {Array<[string, number]>} [custom] a node's own scopes: [name, bit number 32–62] */
  constructor(custom = []) {
    /** @type {Map<string, bigint>} */
    this.bits = new Map(BUILTIN.map(([n, v]) => [String(n), BigInt(v)]));
    for (const [name, bit] of custom) this.bits.set(name, 1n << BigInt(bit));
  }

  /** `"view-profile,update-profile"` (commas or spaces) to a bitmask. @param {string | string[]} text */
  parse(text) {
    const parts = Array.isArray(text) ? text : text.split(/[,\s]+/);
    let bits = 0n;
    for (const p of parts) {
      if (!p) continue;
      const b = this.bits.get(p);
      if (b === undefined) throw new ScopeError(p);
      bits |= b;
    }
    return bits;
  }

  /** The names in a bitmask, in bit order. @param {bigint} scope */
  names(scope) {
    return [...this.bits.entries()]
      .filter(([, b]) => (BigInt(scope) & b) !== 0n)
      .sort((a, b) => (a[1] < b[1] ? -1 : 1))
      .map(([n]) => n);
  }

  /** @param {bigint} scope */
  format(scope) {
    return this.names(scope).join(',');
  }
}

export const GRANT = 0x8000000n;
