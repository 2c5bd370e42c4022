// Registry checkpoints as C2SP signed notes, and witnesses' cosignature/v1 lines (C2SP
// tlog-cosignature). Every signature is checked with `verifyStrict`.

import { sha256 } from '@noble/hashes/sha2.js';
import { concat, fromBase64, fromUtf8, toHex, utf8 } from './bytes.js';
import { verifyStrict } from './ed25519.js';
import { GrantNodeError } from './errors.js';

const ALG_ED25519 = 0x01;
const ALG_COSIGNATURE_V1 = 0x04;
const MAX_SIGNATURES = 32;

const untrusted = (m) => new GrantNodeError('registry.untrusted', m);
const malformed = (m) => new GrantNodeError('registry.malformed', m);

/** `SHA-256(name || "\n" || alg || key)[:4]` as a number. @param {string} name @param {number} alg @param {Uint8Array} key */
export function keyId(name, alg, key) {
  const d = sha256(concat(utf8(name), utf8('\n'), Uint8Array.of(alg), key));
  return ((d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]) >>> 0;
}

/** The origin line of the registry whose key is `key`. @param {Uint8Array} key */
export const originFor = (key) => `grant-node.registry/${toHex(key).slice(0, 16)}`;

/**
 * @typedef {{origin: string, size: number, root: Uint8Array, mapRoot: Uint8Array, time: number}} Checkpoint
 * @typedef {{name: string, key: Uint8Array, id: number}} Witness
 */

/** Parses a witness's verifier key `<name>+<hex id>+<base64(0x04 || key)>`. @param {string} vkey @returns {Witness} */
export function parseWitness(vkey) {
  const first = vkey.indexOf('+');
  const second = vkey.indexOf('+', first + 1);
  const parts = [vkey.slice(0, first), vkey.slice(first + 1, second), vkey.slice(second + 1)];
  if (first <= 0 || second < 0 || /\s/.test(parts[0])) throw new TypeError(`${vkey} is not a witness key`);
  const data = fromBase64(parts[2]);
  if (data.length !== 33 || data[0] !== ALG_COSIGNATURE_V1) throw new TypeError(`${vkey} is not a cosignature/v1 key`);
  const key = data.subarray(1);
  const id = keyId(parts[0], ALG_COSIGNATURE_V1, key);
  if (id.toString(16).padStart(8, '0') !== parts[1]) throw new TypeError(`${vkey}: the key id does not match the key`);
  return { name: parts[0], key, id };
}

/** Splits a note into its signed text and its signature lines. @param {string} note */
function splitNote(note) {
  if (!note.endsWith('\n')) throw malformed('a note ends with a newline');
  const at = note.lastIndexOf('\n\n');
  if (at < 0) throw malformed('a note has no signatures');
  const text = note.slice(0, at + 1);
  const sigs = [];
  for (const line of note.slice(at + 2).split('\n')) {
    if (!line) continue;
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m || m[1].includes('+')) throw malformed('malformed signature line');
    const data = fromBase64(m[2]);
    if (data.length < 5) throw malformed('malformed signature line');
    const id = ((data[0] << 24) | (data[1] << 16) | (data[2] << 8) | data[3]) >>> 0;
    sigs.push({ name: m[1], id, sig: data.subarray(4) });
    if (sigs.length > MAX_SIGNATURES) throw malformed('too many signatures');
  }
  return { text, sigs };
}

/** Parses a checkpoint body. @param {string} text @param {string} origin @returns {Checkpoint} */
export function parseCheckpoint(text, origin) {
  const lines = text.split('\n');
  if (lines.length !== 6 || lines[5] !== '') throw malformed('a checkpoint has five lines');
  const [o, size, root, map, time] = lines;
  if (o !== origin) throw untrusted(`checkpoint is for the log ${JSON.stringify(o)}, not ${JSON.stringify(origin)}`);
  if (!/^(0|[1-9][0-9]*)$/.test(size) || !/^time (0|[1-9][0-9]*)$/.test(time) || !map.startsWith('map ')) {
    throw malformed('malformed checkpoint');
  }
  const rootBytes = fromBase64(root);
  const mapRoot = fromBase64(map.slice(4));
  if (rootBytes.length !== 32 || mapRoot.length !== 32) throw malformed('malformed checkpoint root');
  return { origin: o, size: Number(size), root: rootBytes, mapRoot, time: Number(time.slice(5)) };
}

/**
 * Checks the registry's signature on a checkpoint note (strictly) and parses it; returns the
 * checkpoint and the witnesses among `witnesses` whose cosignature on it verifies.
 * @param {string} note @param {Uint8Array} registryKey @param {Witness[]} [witnesses]
 */
export function verifyCheckpoint(note, registryKey, witnesses = []) {
  const { text, sigs } = splitNote(note);
  const body = utf8(text);
  const origin = originFor(registryKey);
  const id = keyId(origin, ALG_ED25519, registryKey);
  const signed = sigs.some((s) => s.name === origin && s.id === id && s.sig.length === 64 && verifyStrict(s.sig, body, registryKey));
  if (!signed) throw untrusted('checkpoint signature does not verify');
  const checkpoint = parseCheckpoint(text, origin);
  const cosignedBy = witnesses.filter((w) =>
    sigs.some((s) => {
      if (s.name !== w.name || s.id !== w.id || s.sig.length !== 72) return false;
      const time = new DataView(s.sig.slice(0, 8).buffer).getBigUint64(0);
      const message = concat(utf8(`cosignature/v1\ntime ${time}\n`), body);
      return verifyStrict(s.sig.subarray(8), message, w.key);
    }),
  );
  return { checkpoint, cosignedBy, text: fromUtf8(body) };
}
