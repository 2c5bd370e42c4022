// photo-app: a small Node.js web application on grant-node. A visitor types their name, is sent
// to their own node to grant `view-profile`, and comes back to see their profile, read from
// their node with a carte this app signs. When the owner revokes the grant, their node
// notifies the app (POST /, the node URI it registered) and the app shows it at once.
//
// On first start it makes its keys (KEY_DIR/NAME/, mode 0600) and registers NAME with the
// registry, proof of work included. Configuration from the environment:
//   REGISTRY      the registry (default http://127.0.0.1:8650, a node's embedded registry)
//   REGISTRY_KEY  its public key in hex (default: learnt from the registry on first use)
//   NAME          the app's name (default photo-js)     PORT  default 8700
//   KEY_DIR       default ./keys

import { createServer } from 'node:http';
import { mkdir, readFile } from 'node:fs/promises';
import { App, Registry, SigningKey, bytes } from '../src/index.js';
import { loadKeyFile, notificationListener, saveKeyFile } from '../src/node.js';

const registryUrl = process.env.REGISTRY ?? 'http://127.0.0.1:8650';
const name = process.env.NAME ?? 'photo-js';
const port = Number(process.env.PORT ?? 8700);
const keyDir = process.env.KEY_DIR ?? 'keys';
const base = `http://127.0.0.1:${port}`;

const registry = new Registry(registryUrl, {
  key: process.env.REGISTRY_KEY ? bytes.fromHex(process.env.REGISTRY_KEY) : undefined,
});

/** This app's signing key; on first start, new keys and the name registered. */
async function signingKey() {
  const path = `${keyDir}/${name}/signing.key`;
  try {
    await readFile(path);
    return await loadKeyFile(path);
  } catch (e) {
    if (e.code !== 'ENOENT') throw e;
  }
  await mkdir(`${keyDir}/${name}`, { recursive: true, mode: 0o700 });
  const updating = SigningKey.generate();
  const signing = SigningKey.generate();
  console.log(`registering ${name} (proof of work: a few seconds)…`);
  await registry.register({
    name, updatingKey: updating, signingKey: signing, nodeUri: `${base}/`, redirectUris: [`${base}/cb`],
    validFrom: Math.floor(Date.now() / 1000) - 60,
  });
  await saveKeyFile(`${keyDir}/${name}/updating.key`, updating);
  await saveKeyFile(`${keyDir}/${name}/signing.key`, signing);
  return signing;
}

const app = new App({ name, key: await signingKey(), registry });
const notifications = notificationListener(app);
/** @type {string[]} */
const events = [];

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (body) => `<!doctype html><html lang="en"><meta charset="utf-8"><title>${esc(name)}</title><main>${body}</main>`;

async function route(req, res) {
  const url = new URL(req.url, base);
  const send = (status, body, headers = {}) => res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', ...headers }).end(body);
  if (req.method === 'POST' && url.pathname === '/') {
    // A notification from an owner's node: verified against the owner's registered key.
    const before = JSON.stringify(await app.grants(), (_, v) => (typeof v === 'bigint' ? String(v) : v));
    notifications(req, res);
    res.on('finish', async () => {
      const after = JSON.stringify(await app.grants(), (_, v) => (typeof v === 'bigint' ? String(v) : v));
      if (before !== after) events.push(`grants changed at ${new Date().toISOString()}`);
    });
    return;
  }
  if (url.pathname === '/') {
    const grants = await app.grants();
    return send(200, page(`<h1>${esc(name)}</h1><form action="/start"><label>Your name <input name="user" required></label>
      <button>Show my profile</button></form><h2>Grants</h2><ul>${grants.map((g) => `<li>${esc(g.owner)}: ${esc(app.catalogue.format(g.scope))}</li>`).join('') || '<li>none</li>'}</ul>
      <h2>Notifications</h2><ul>${events.map((e) => `<li>${esc(e)}</li>`).join('') || '<li>none yet</li>'}</ul>`));
  }
  if (url.pathname === '/start') {
    const { url: to } = await app.startGrant(url.searchParams.get('user') ?? '', 'view-profile', `${base}/cb`);
    return send(303, '', { location: to });
  }
  if (url.pathname === '/cb') {
    const { owner } = await app.finishGrant(url.search);
    const profile = await app.get(owner, '/api/profile', 'view-profile');
    return send(200, page(`<h1>Hello, ${esc(owner)}</h1><p>Your profile, read from your node:</p><pre>${esc(JSON.stringify(profile.document, null, 2))}</pre><p><a href="/">Back</a></p>`));
  }
  return send(404, page('<p>Not found.</p>'));
}

createServer((req, res) => {
  route(req, res).catch((e) => {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/html; charset=utf-8' }).end(page(`<p>${esc(e.code ?? 'error')}: ${esc(e.message)}</p>`));
  });
}).listen(port, '127.0.0.1', () => console.log(`${name} on ${base}/`));
