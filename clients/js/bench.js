// Figures for the README and the closing note, on this machine: signing a carte, verifying a
// light look-up (a real answer from the release registry-stub), and the default proof of work.
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import { Registry, SigningKey, signCarte, verifyLookup, solveProofOfWork, cborEncode, bytes, verifyStrict } from './src/index.js';
import { binaries, freePort, start, tempDir, writeKey } from './test/harness.js';

function time(label, n, f) {
  for (let i = 0; i < Math.min(n, 50); i++) f(i);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) f(i);
  const us = ((performance.now() - t0) * 1000) / n;
  console.log(`${label}: ${us.toFixed(1)} µs`);
  return us;
}

const key = SigningKey.generate();
const now = Math.floor(Date.now() / 1000);
const carte = signCarte({ owner: 'photo-app', audience: 'alice', beginning: now, deadline: now + 300, adminScope: 0x80000n }, key);
const message = bytes.fromHex('00'.repeat(100));
const sig = key.sign(message);
const verify = time('verifyStrict, one signature (baseline)', 2000, () => verifyStrict(sig, message, key.publicKey));
const sign = time('sign an admin carte', 2000, () => signCarte({ owner: 'photo-app', audience: 'alice', beginning: now, deadline: now + 300, adminScope: 0x80000n }, key));
console.log(`  carte: ${carte.length} characters; signing = ${(sign / verify).toFixed(2)}× a signature check`);

const bins = binaries();
if (bins) {
  const dir = tempDir('gn-js-bench-');
  const port = await freePort();
  const seed = bytes.toHex(bytes.randomBytes(32));
  writeKey(join(dir, 'registry.key'), seed);
  const stub = await start(bins.stub, ['--listen', `127.0.0.1:${port}`, '--data-dir', dir, '--pow-bits', '4'], /registry-stub listening/);
  const url = `http://127.0.0.1:${port}`;
  const registry = new Registry(url, { key: new SigningKey(bytes.fromHex(seed)).publicKey });
  for (let i = 0; i < 200; i++) {
    await registry.register({ name: `user${i}`, updatingKey: SigningKey.generate(), signingKey: SigningKey.generate(), nodeUri: 'https://node.example/', validFrom: now - 60 });
  }
  const answer = await (await fetch(`${url}/registry/names/user7/proof`)).json();
  const lookup = time('verify a light look-up (200 names; checkpoint, map proof, record)', 500, () => verifyLookup('user7', answer, { registryKey: registry.key }));
  console.log(`  = ${(lookup / verify).toFixed(2)}× a signature check`);
  stub.stop();
}

const payload = cborEncode([1, 'register', 'someone', new Uint8Array(32), new Uint8Array(32), now, 'https://n.example/', [], new Uint8Array(8)]);
const runs = 5;
let total = 0;
for (let i = 0; i < runs; i++) {
  const p = payload.slice();
  p[20] = i; // a different payload each run
  const t0 = performance.now();
  solveProofOfWork(p, 20);
  total += performance.now() - t0;
}
console.log(`proof of work, 20 bits (the default), mean of ${runs}: ${(total / runs / 1000).toFixed(2)} s`);
process.exit(0);
