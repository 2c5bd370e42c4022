// Node.js helpers: key files as the CLI writes them, and notifications on a `node:http`
// server. The core (index.js) uses no Node-only API; this module does.

import { readFile, writeFile, stat } from 'node:fs/promises';
import { SigningKey } from './ed25519.js';
import { toHex } from './bytes.js';
import { keyFromFileText } from './index.js';

export * from './index.js';

/**
 * Loads a key file (the seed in hex); refuses one that others may read, as the node does.
 * @param {string} path
 */
export async function loadKeyFile(path) {
  const s = await stat(path);
  if ((s.mode & 0o077) !== 0) throw new Error(`${path} may be read by others (mode ${(s.mode & 0o777).toString(8)}); chmod 600 it`);
  return keyFromFileText(await readFile(path, 'utf8'));
}

/** `KEY_DIR/NAME/signing.key`, where `grant-node name register` writes it. @param {string} keyDir @param {string} name */
export function loadAppKey(keyDir, name) {
  return loadKeyFile(`${keyDir}/${name}/signing.key`);
}

/** Writes a key file with mode 0600, refusing to replace one. @param {string} path @param {SigningKey} key */
export async function saveKeyFile(path, key) {
  await writeFile(path, `${toHex(key.exportSeed())}\n`, { mode: 0o600, flag: 'wx' });
}

/**
 * A `node:http` request listener for notifications: mount it at the application's node URI.
 * @param {import('./app.js').App} app
 * @returns {(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void}
 */
export function notificationListener(app) {
  const handle = app.notificationHandler();
  return (req, res) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > 8192) req.destroy();
      else chunks.push(c);
    });
    req.on('end', async () => {
      const r = await handle(new Request('http://app.local/', { method: req.method, body: req.method === 'POST' ? Buffer.concat(chunks) : undefined }));
      res.writeHead(r.status, Object.fromEntries(/** @type {any} */ (r.headers)));
      res.end(Buffer.from(await r.arrayBuffer()));
    });
  };
}
