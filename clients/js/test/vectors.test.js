// Every golden vector in data/vectors/cartes.json (the ones the Rust node is checked against)
// gets the same verdict here: the principal, or the same error code. The strictness vectors
// are the ones a plain Ed25519 verifier gets wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ed25519 } from '@noble/curves/ed25519.js';
import { verifyCarte, decodeCarte, verifyStrict, cborDecode, cborEncode, bytes, CARTE_PREFIX, SigningKey, signCarte } from '../src/index.js';

const vectors = JSON.parse(readFileSync(new URL('../../../data/vectors/cartes.json', import.meta.url), 'utf8'));

function keysOf(name) {
  const entries = vectors.registry.filter((r) => r.name === name);
  if (!entries.length) return null;
  return entries.map((r) => ({ key: bytes.fromHex(r.public_key), validFrom: r.valid_from, compromisedAt: r.compromised ? r.valid_from : null }));
}

const expect = {
  now: vectors.now,
  acceptsAudience: (n) => vectors.expectations.audiences.includes(n),
  peer: Uint8Array.from(vectors.expectations.peer.split('.').map(Number)),
  skew: vectors.expectations.skew,
  maxLifetime: vectors.expectations.max_lifetime,
  keysOf,
};

test('the signature prefix is the one the vectors pin', () => {
  assert.equal(bytes.toHex(CARTE_PREFIX), vectors.signature_prefix_hex);
});

for (const v of vectors.vectors) {
  test(`vector: ${v.description}`, () => {
    let got;
    try {
      got = { principal: verifyCarte(v.carte, expect).principal };
    } catch (e) {
      if (!e.code) throw e;
      got = { error: e.code };
    }
    assert.deepEqual(got, v.expect);
    if (v.payload_hex && !v.expect.error) {
      assert.equal(bytes.toHex(decodeCarte(v.carte).payload), v.payload_hex);
    }
  });
}

test('the strictness vectors fool a plain verifier, so passing them proves the strict rule', () => {
  let fooled = 0;
  for (const v of vectors.vectors.filter((x) => /small-order|mixed-order|non-canonical/.test(x.description) && x.expect.error)) {
    const { carte, payload, signature } = decodeCarte(v.carte);
    const history = keysOf(carte.owner);
    const key = history[history.length - 1].key;
    const message = bytes.concat(CARTE_PREFIX, payload);
    assert.equal(verifyStrict(signature, message, key), false, v.description);
    let plain = false;
    try {
      plain = ed25519.verify(signature, message, key, { zip215: true });
    } catch {
      plain = false;
    }
    if (plain) fooled += 1;
  }
  assert.ok(fooled >= 3, `a ZIP-215 verifier accepts ${fooled} of them`);
});

test('canonical CBOR: shortest forms only, nothing after the item, no maps, tags or floats', () => {
  assert.deepEqual(cborEncode([1, 'a', new Uint8Array([1]), null, true, 2n ** 63n]), bytes.fromHex('860161614101f6f51b8000000000000000'));
  for (const bad of ['1817', '190017', '0000', 'a0', 'c001', 'f93c00', '5f41ff', '20']) {
    assert.throws(() => cborDecode(bytes.fromHex(bad)), undefined, bad);
  }
  assert.equal(cborDecode(bytes.fromHex('1b0020000000000000')), 2n ** 53n);
  assert.equal(cborDecode(bytes.fromHex('1b001fffffffffffff')), 2 ** 53 - 1);
});

test('keys stay out of JSON, strings and inspection', () => {
  const key = SigningKey.generate();
  const seedHex = bytes.toHex(key.exportSeed());
  for (const shown of [JSON.stringify({ key }), String(key), `${key}`]) {
    assert.ok(!shown.includes(seedHex), shown);
  }
  const wire = signCarte({ owner: 'app', beginning: 1, deadline: 2 }, key);
  assert.equal(decodeCarte(wire).carte.owner, 'app');
});

test('ed25519-speccheck: every verdict is verify_strict\'s, where noble\'s zip215:false differs', () => {
  const cases = JSON.parse(readFileSync(new URL('../../../data/vectors/ed25519-speccheck.json', import.meta.url), 'utf8'));
  const { verdicts } = JSON.parse(readFileSync(new URL('../../../data/vectors/ed25519-speccheck-verify-strict.json', import.meta.url), 'utf8'));
  assert.equal(cases.length, 12);
  let differs = 0;
  cases.forEach((c, i) => {
    const [m, pk, sig] = [c.message, c.pub_key, c.signature].map(bytes.fromHex);
    assert.equal(verifyStrict(sig, m, pk), verdicts[i], `case ${i}`);
    let plain;
    try {
      plain = ed25519.verify(sig, m, pk, { zip215: false });
    } catch {
      plain = false;
    }
    if (plain !== verdicts[i]) differs += 1;
  });
  // noble's strict mode accepts a small-order R, which verify_strict refuses: 3 of the 12.
  assert.equal(differs, 3);
});
