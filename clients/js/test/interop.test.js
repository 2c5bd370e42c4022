// The package against the real binaries: a registry-stub gathering cosignatures from two
// witnesses, which are two grant-node processes (alice's node is the first). From JavaScript:
// register a name with proof of work, look names up by proof with a quorum of two witnesses,
// get a grant through the real /grant page (the consent form posted as a browser does), call
// the node with cartes signed here, and receive and verify the revocation's notification.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { App, Registry, SigningKey, signCarte, GRANT, bytes, keyFromFileText, parseWitness, decodeReceipt } from '../src/index.js';
import { notificationListener } from '../src/node.js';
import { keyId } from '../src/note.js';
import { Browser, binaries, chromium, freePort, hidden, start, tempDir, writeKey } from './harness.js';

const bins = binaries();

function witnessVkey(name, pub) {
  return `${name}+${keyId(name, 4, pub).toString(16).padStart(8, '0')}+${bytes.toBase64(bytes.concat(Uint8Array.of(4), pub))}`;
}

/** Retries `f` until it stops throwing, for at most `ms`. */
async function eventually(f, ms = 20000) {
  const end = Date.now() + ms;
  for (;;) {
    try {
      return await f();
    } catch (e) {
      if (Date.now() > end) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

test('interoperability with registry-stub and grant-node', { skip: !bins && 'the release binaries are not built' }, async (t) => {
  const dir = tempDir('gn-js-');
  const [stubPort, portA, portB, appPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const stubUrl = `http://127.0.0.1:${stubPort}`;
  const registrySeed = bytes.toHex(bytes.randomBytes(32));
  writeKey(join(dir, 'registry/registry.key'), registrySeed);
  const registryKey = new SigningKey(bytes.fromHex(registrySeed)).publicKey;
  const witnesses = [];
  for (const [node, name] of [['a', 'w1.test'], ['b', 'w2.test']]) {
    const seed = bytes.toHex(bytes.randomBytes(32));
    writeKey(join(dir, node, 'witness.key'), seed);
    witnesses.push(witnessVkey(name, new SigningKey(bytes.fromHex(seed)).publicKey));
  }
  const stub = await start(bins.stub, [
    '--listen', `127.0.0.1:${stubPort}`, '--data-dir', join(dir, 'registry'), '--pow-bits', '8',
    '--witness', `http://127.0.0.1:${portA},${witnesses[0]}`, '--witness', `http://127.0.0.1:${portB},${witnesses[1]}`,
  ], /registry-stub listening/);
  t.after(() => stub.stop());
  const node = async (sub, port, owner, witness) => {
    const toml = join(dir, sub, 'node.toml');
    writeFileSync(toml, `witness_name = "${witness}"\n`);
    const p = await start(bins.node, [
      'serve', '--config', toml, '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, sub), '--owner', owner,
      '--registry', stubUrl, '--registry-key', bytes.toHex(registryKey), '--allow-private-targets', '--sync-interval', '1',
    ], /set its password at (\S+)/);
    t.after(() => p.stop());
    return p;
  };
  const a = await node('a', portA, 'alice', 'w1.test');
  await node('b', portB, 'bob', 'w2.test');
  const nodeUrl = `http://127.0.0.1:${portA}`;

  // Register the application's name from JavaScript, with the registry's proof of work.
  const registry = new Registry(stubUrl, { key: registryKey, witnesses: witnesses.map(parseWitness), quorum: 2 });
  const updating = SigningKey.generate();
  const signing = SigningKey.generate();
  const redirect = `http://127.0.0.1:${appPort}/cb`;
  const created = await registry.register({
    name: 'js-app', updatingKey: updating, signingKey: signing, nodeUri: `http://127.0.0.1:${appPort}/`, redirectUris: [redirect],
    validFrom: Math.floor(Date.now() / 1000) - 60,
  });
  assert.equal(created.name, 'js-app');
  assert.equal(created.keys[0].key, bytes.toHex(signing.publicKey));

  // Light look-ups, proven against checkpoints both witnesses cosigned.
  const app = new App({ name: 'js-app', key: signing, registry });
  const alice = await eventually(() => app.lookup('alice', true));
  assert.equal(alice.node_uri, `${nodeUrl}/`);
  assert.equal(await app.lookup('nobody-at-all', true), null, 'proven absent');
  const strict = new Registry(stubUrl, { key: registryKey, witnesses: [parseWitness(witnesses[0])], quorum: 2 });
  await assert.rejects(strict.lookup('alice'), /cosigned by 1 of the 2 witnesses required/);
  const wrongKey = new Registry(stubUrl, { key: SigningKey.generate().publicKey });
  await assert.rejects(wrongKey.lookup('alice'), (e) => e.code === 'registry.untrusted');

  // The application's node URI: where notifications arrive.
  const server = createServer(notificationListener(app));
  await new Promise((r) => server.listen(appPort, '127.0.0.1', r));
  t.after(() => server.close());

  // Ask alice for view-profile; she sets her password, then allows it on the consent page.
  const start_ = await app.startGrant('alice', 'view-profile', redirect);
  assert.ok(start_.url.startsWith(`${nodeUrl}/grant?`), start_.url);
  const b = new Browser(nodeUrl);
  const link = a.match[1];
  assert.equal((await b.get(link)).status, 200);
  const token = new URL(link).searchParams.get('token');
  const setup = await b.postForm(`${nodeUrl}/setup`, { token, password: 'correct horse battery' });
  assert.equal(setup.status, 200);
  let r = await b.get(start_.url);
  assert.equal(r.status, 200, 'logged in: the consent page');
  const consent = await r.text();
  assert.match(consent, /js-app/);
  r = await b.postForm(`${nodeUrl}/grant`, {
    request_id: hidden(consent, 'request_id'), csrf: hidden(consent, 'csrf'), scope: 'view-profile', decision: 'allow',
  });
  assert.equal(r.status, 303);
  const landed = r.headers.get('location');
  assert.ok(landed.startsWith(`${redirect}?`), landed);
  // The receipt the node signed verifies here, against alice's registered key.
  const granted = await app.finishGrant(landed);
  assert.deepEqual(granted, { owner: 'alice', scope: 0x80000n, nodeUrl });
  await assert.rejects(app.finishGrant(landed), (e) => e.code === 'grant.wrong-state', 'a state is used once');

  // The same checks in a browser: headless Chromium loads the browser bundle, proves alice's
  // record against the witnessed checkpoint and verifies the receipt, with no server it trusts.
  const receiptWire = new URL(landed).searchParams.get('receipt');
  const seen = await inBrowser(t, dir, {
    registry: stubUrl, registryKey: bytes.toHex(registryKey), witnesses, receipt: receiptWire,
    receiptTime: String(decodeReceipt(receiptWire).receipt.time),
  });
  if (seen) {
    assert.deepEqual(seen, { node_uri: `${nodeUrl}/`, cosigned: 2, receipt_owner: 'alice', scope: '524288', forged: 'registry.untrusted', work: true });
  }

  // Cartes signed here are accepted by the node.
  const profile = await app.get('alice', '/api/profile', 'view-profile');
  assert.equal(profile.owner, 'alice');
  await assert.rejects(app.get('alice', '/api/settings', 'view-settings'), (e) => e.code === 'grant.missing-scope' && e.status === 403);

  // alice revokes (with her own carte, as her console would); the node notifies the
  // application, which verifies the notification and empties its book.
  const aliceKey = keyFromFileText(readFileSync(join(dir, 'a/owners/alice/signing.key'), 'utf8'));
  const now = Math.floor(Date.now() / 1000);
  const ownerCarte = signCarte({ owner: 'alice', audience: 'alice', beginning: now - 5, deadline: now + 60, adminScope: GRANT }, aliceKey);
  r = await fetch(`${nodeUrl}/api/grants/js-app`, { method: 'DELETE', headers: { authorization: `Carte ${ownerCarte}` } });
  assert.equal(r.status, 200, await r.text());
  await eventually(async () => assert.deepEqual(await app.grants(), []));
  await assert.rejects(app.get('alice', '/api/profile', 'view-profile'), (e) => e.code === 'grant.missing-scope');
});

const PAGE = `<!doctype html><html lang="en"><title>grant-node-client</title><script type="module">
import { Registry, verifyLookup, verifyCheckpoint, verifyReceipt, parseWitness, keyAt, bytes, solveInWorker, workOf } from '/grant-node-client.min.js';
const f = await (await fetch('/fixture')).json();
let result;
try {
  // Straight from the registry, another origin: no server of the page's own is trusted.
  const key = bytes.fromHex(f.registryKey);
  const witnesses = f.witnesses.map(parseWitness);
  const registry = new Registry(f.registry, { key, witnesses, quorum: 2 });
  const record = await registry.lookup('alice');
  const answer = await (await fetch(f.registry + '/registry/names/alice/proof')).json();
  const { cosignedBy } = verifyCheckpoint(answer.checkpoint, key, witnesses);
  const receipt = verifyReceipt(f.receipt, keyAt(record, JSON.parse(f.receiptTime)));
  let forged = null;
  try {
    verifyLookup('alice', { ...answer, record: { ...answer.record, node_uri: 'https://evil.example/' } }, { registryKey: key, witnesses, quorum: 2 });
  } catch (e) {
    forged = e.code;
  }
  // The registry's proof of work, in a Worker so that the page stays responsive.
  const payload = new Uint8Array(64);
  crypto.getRandomValues(payload);
  const solved = await solveInWorker(payload, 12, '/pow-worker.min.js');
  const work = workOf(solved) >= 12 && solved.subarray(0, 56).every((b, i) => b === payload[i]);
  result = { node_uri: record.node_uri, cosigned: cosignedBy.length, receipt_owner: receipt.owner, scope: String(receipt.scope), forged, work };
} catch (e) {
  result = { error: String(e && e.stack || e) };
}
await fetch('/result', { method: 'POST', body: JSON.stringify(result) });
</script>`;

/**
 * Serves the bundle, a page and `fixture` on a loopback port, opens the page in headless
 * Chromium and returns what the page posted back (null when Chromium is missing and not
 * required).
 */
async function inBrowser(t, dir, fixture) {
  const browser = chromium();
  if (!browser) {
    t.diagnostic('Chromium is not installed: the browser part is skipped');
    return null;
  }
  const bundle = readFileSync(new URL('../dist/grant-node-client.min.js', import.meta.url));
  const worker = readFileSync(new URL('../dist/pow-worker.min.js', import.meta.url));
  let done;
  const posted = new Promise((r) => {
    done = r;
  });
  const server = createServer((req, res) => {
    if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
    } else if (req.url === '/grant-node-client.min.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle);
    } else if (req.url === '/pow-worker.min.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(worker);
    } else if (req.url === '/fixture') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(fixture));
    } else if (req.url === '/result' && req.method === 'POST') {
      let body = '';
      req.on('data', (d) => {
        body += d;
      });
      req.on('end', () => {
        res.writeHead(204).end();
        done(JSON.parse(body));
      });
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const { port } = /** @type {any} */ (server.address());
  const child = (await import('node:child_process')).spawn(browser, [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--user-data-dir=${join(dir, 'chromium')}`, `http://127.0.0.1:${port}/`,
  ], { stdio: 'ignore' });
  t.after(() => child.kill('SIGKILL'));
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('the page posted nothing in 30 s')), 30000).unref());
  return Promise.race([posted, timeout]);
}
