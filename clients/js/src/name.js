// Names: the canonical form the node uses (NFC of the full case folding of NFC input), checked
// exactly for ASCII names. For other scripts JavaScript has no full case folding; the check
// here lowercases, which agrees with the node for almost every name, and the node and the
// registry remain the judges (they refuse a non-canonical name with `name.invalid`).

export class NameError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.code = 'name.invalid';
  }
}

const MAX_CHARS = 64;

/** The canonical form of a name, or a NameError. @param {string} input */
export function canonicalName(input) {
  if (typeof input !== 'string' || input.length === 0) throw new NameError('name is empty');
  if (input.length > MAX_CHARS * 12) throw new NameError('name is too long');
  // eslint-disable-next-line no-control-regex
  const ascii = /^[\x00-\x7f]*$/.test(input);
  const canonical = ascii ? input.toLowerCase() : input.normalize('NFC').toLowerCase().normalize('NFC');
  const chars = [...canonical];
  if (chars.length > MAX_CHARS) throw new NameError('name is too long');
  for (const c of chars) {
    if (!(c === '-' || c === '.' || /^[\p{L}\p{N}\p{M}]$/u.test(c))) {
      throw new NameError(`name has a character not allowed: ${JSON.stringify(c)}`);
    }
  }
  if (/^[-.\p{M}]/u.test(canonical) || /[-.]$/.test(canonical)) {
    throw new NameError('name starts or ends with a separator');
  }
  return canonical;
}

/** Whether `s` is a name in canonical form (as signed formats require). @param {string} s */
export function isCanonicalName(s) {
  try {
    return canonicalName(s) === s;
  } catch {
    return false;
  }
}
