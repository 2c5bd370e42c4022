// Errors carry the node's stable codes (`carte.expired`, `grant.missing-scope`, …) so that an
// application can act on them. None of them ever carries a key.

export class GrantNodeError extends Error {
  /**
   * @param {string} code the stable code, as the README's "Errors" lists them
   * @param {string} message
   * @param {{status?: number, details?: any}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(`${code}: ${message}`);
    this.name = 'GrantNodeError';
    this.code = code;
    /** HTTP status when a node or registry answered, else undefined. */
    this.status = extra.status;
    this.details = extra.details;
  }
}

/** A carte, receipt or notification that does not verify. */
export class VerifyError extends GrantNodeError {}
