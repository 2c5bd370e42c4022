// The README's examples and the example application, run as written against a real grant-node
// (its embedded registry): the Node example end to end, the browser snippet in headless
// Chromium, and examples/photo-app.js through a grant, a call and a revocation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Registry, SigningKey, signCarte, GRANT, keyFromFileText } from '../src/index.js';
import { saveKeyFile } from '../src/node.js';
import { Browser, binaries, chromium, freePort, hidden, start, tempDir } from './harness.js';

const bins = binaries();
const here = fileURLToPath(new URL('..', import.meta.url));
const readme = readFileSync(join(here, 'README.md'), 'utf8');
const blocks = (lang) => [...readme.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]);

/** Runs a Node script and resolves with the first stdout line matching `re` (and the process). */
function run(file, env, re, cwd) {
  const child = spawn(process.execPath, [file], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => {
    err += d;
  });
  const line = new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      const m = re.exec(out);
      if (m) resolve(m);
    });
    child.on('exit', (code) => reject(new Error(`${file} exited (${code}):\n${out}\n${err}`)));
  });
  return { child, line, output: () => out, errors: () => err };
}

/** Logs in (sets the password through the set-up link, once), allows on the consent page; the redirect. */
async function allow(b, nodeUrl, grantUrl) {
  let r = await b.get(grantUrl);
  assert.equal(r.status, 200, 'the consent page');
  const consent = await r.text();
  r = await b.postForm(`${nodeUrl}/grant`, {
    request_id: hidden(consent, 'request_id'), csrf: hidden(consent, 'csrf'), scope: 'view-profile', decision: 'allow',
  });
  assert.equal(r.status, 303);
  return r.headers.get('location');
}

test('the README examples and the example application, as written', { skip: !bins && 'the release binaries are not built' }, async (t) => {
  const dir = tempDir('gn-js-ex-');
  const port = await freePort();
  const nodeUrl = `http://127.0.0.1:${port}`;
  const node = await start(bins.node, [
    'serve', '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'node'), '--owner', 'alice', '--pow-bits', '12',
    '--allow-private-targets',
  ], /set its password at (\S+)/);
  t.after(() => node.stop());
  const b = new Browser(nodeUrl);
  const link = node.match[1];
  assert.equal((await b.get(link)).status, 200);
  const setup = await b.postForm(`${nodeUrl}/setup`, { token: new URL(link).searchParams.get('token'), password: 'correct horse battery' });
  assert.equal(setup.status, 200);
  const registry = new Registry(nodeUrl);

  await t.test('the Node example', async () => {
    // What `grant-node name register photo-app … --key-dir demo/keys` would have made.
    const updating = SigningKey.generate();
    const signing = SigningKey.generate();
    await registry.register({ name: 'photo-app', updatingKey: updating, signingKey: signing, nodeUri: 'http://127.0.0.1:8700/',
      redirectUris: ['http://127.0.0.1:8700/cb'], validFrom: Math.floor(Date.now() / 1000) - 60 });
    const cwd = join(dir, 'readme');
    (await import('node:fs')).mkdirSync(join(cwd, 'demo/keys/photo-app'), { recursive: true });
    await saveKeyFile(join(cwd, 'demo/keys/photo-app/signing.key'), signing);
    // In the package's folder, so that `grant-node-client` resolves to the package itself.
    const file = join(here, '.readme-example.mjs');
    writeFileSync(file, blocks('js')[0]);
    t.after(() => rmSync(file, { force: true }));
    const p = run(file, { REGISTRY: nodeUrl }, /send alice's browser to (\S+)/, cwd);
    t.after(() => p.child.kill());
    const [, url] = await p.line;
    const back = await allow(b, nodeUrl, url);
    assert.ok(back.startsWith('http://127.0.0.1:8700/cb?'), back);
    const r = await fetch(back).catch((e) => {
      throw new Error(`${e.cause ?? e}\n${p.output()}\n${p.errors()}`);
    });
    assert.equal(await r.text(), 'hello alice');
    await new Promise((resolve) => p.child.on('exit', resolve));
  });

  await t.test('the browser snippet', async (t2) => {
    const path = chromium();
    if (!path) return t2.skip('Chromium is not installed');
    const html = blocks('html')[0].replaceAll('http://127.0.0.1:8650', nodeUrl);
    const bundle = readFileSync(join(here, 'dist/grant-node-client.min.js'));
    let done;
    const seen = new Promise((r) => {
      done = r;
    });
    const report = `<script type="module">
      for (let i = 0; i < 100; i++) {
        const v = document.querySelector('#node').textContent;
        if (v) { await fetch('/seen', { method: 'POST', body: v }); break; }
        await new Promise((r) => setTimeout(r, 100));
      }</script>`;
    const server = createServer((req, res) => {
      if (req.url === '/') res.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html><html lang="en"><title>t</title>${html}${report}`);
      else if (req.url === '/grant-node-client.min.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle);
      else if (req.url === '/seen') {
        let body = '';
        req.on('data', (d) => {
          body += d;
        });
        req.on('end', () => {
          res.writeHead(204).end();
          done(body);
        });
      } else res.writeHead(404).end();
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    t2.after(() => server.close());
    const { port: pagePort } = /** @type {any} */ (server.address());
    const child = spawn(path, ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--user-data-dir=${join(dir, 'chromium')}`, `http://127.0.0.1:${pagePort}/`], { stdio: 'ignore' });
    t2.after(() => child.kill('SIGKILL'));
    assert.equal(await seen, `${nodeUrl}/`);
  });

  await t.test('the example application', async () => {
    const appPort = await freePort();
    const app = run(join(here, 'examples/photo-app.js'), { REGISTRY: nodeUrl, PORT: String(appPort), KEY_DIR: join(dir, 'keys') }, /photo-js on (\S+)/, here);
    t.after(() => app.child.kill());
    const [, appUrl] = await app.line;
    let r = await fetch(`${appUrl}start?user=alice`, { redirect: 'manual' });
    assert.equal(r.status, 303);
    const back = await allow(b, nodeUrl, r.headers.get('location'));
    r = await fetch(back);
    const hello = await r.text();
    assert.equal(r.status, 200, hello);
    assert.match(hello, /Hello, alice/);
    assert.match(hello, /"owner"|\{/);
    // alice revokes; her node notifies the app, which shows it.
    const aliceKey = keyFromFileText(readFileSync(join(dir, 'node/owners/alice/signing.key'), 'utf8'));
    const now = Math.floor(Date.now() / 1000);
    const carte = signCarte({ owner: 'alice', audience: 'alice', beginning: now - 5, deadline: now + 60, adminScope: GRANT }, aliceKey);
    r = await fetch(`${nodeUrl}/api/grants/photo-js`, { method: 'DELETE', headers: { authorization: `Carte ${carte}` } });
    assert.equal(r.status, 200);
    const end = Date.now() + 20000;
    for (;;) {
      const page = await (await fetch(appUrl)).text();
      if (/grants changed at/.test(page) && /<h2>Grants<\/h2><ul><li>none<\/li>/.test(page)) break;
      assert.ok(Date.now() < end, `no notification shown:\n${page}`);
      await new Promise((res) => setTimeout(res, 100));
    }
  });
});
