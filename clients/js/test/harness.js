// Real servers for the interoperability tests: the release `registry-stub` and `grant-node`
// binaries on loopback ports, each in a temporary folder, stopped when the test ends.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));

/** The release binaries (scripts/test.sh builds them), or null when they are missing and not required. */
export function binaries() {
  const node = process.env.GRANT_NODE_BIN ?? join(root, 'target/release/grant-node');
  const stub = process.env.REGISTRY_STUB_BIN ?? join(root, 'target/release/registry-stub');
  if (existsSync(node) && existsSync(stub)) return { node, stub };
  if (process.env.GRANT_NODE_REQUIRE_INTEROP) throw new Error(`the release binaries are missing: ${node}, ${stub}`);
  return null;
}

export const tempDir = (prefix) => mkdtempSync(join(tmpdir(), prefix));

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {any} */ (s.address());
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** A key file as the CLI writes it: the seed in hex, mode 0600. */
export function writeKey(path, seedHex) {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, `${seedHex}\n`, { mode: 0o600 });
}

/**
 * Starts a process and waits until a line of its standard output matches `ready`; returns the
 * process, the match and every line seen so far.
 */
export function start(bin, args, ready, env = {}) {
  const child = spawn(bin, args, { env: { ...process.env, RUST_LOG: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${bin} did not start:\n${lines.join('\n')}\n${stderr}`)), 30000);
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      let at;
      while ((at = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, at);
        buf = buf.slice(at + 1);
        lines.push(line);
        const m = ready.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve({ child, match: m, lines, stop: () => child.kill('SIGKILL') });
        }
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${bin} exited (${code}):\n${lines.join('\n')}\n${stderr}`));
    });
  });
}

/** A browser: a cookie jar, `Origin` on form posts, no automatic redirects. */
export class Browser {
  constructor(origin) {
    this.origin = origin;
    /** @type {Map<string, string>} */
    this.cookies = new Map();
  }

  async request(url, init = {}) {
    const headers = { ...(init.headers ?? {}) };
    if (this.cookies.size) headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    const r = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const c of r.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const at = pair.indexOf('=');
      const [k, v] = [pair.slice(0, at), pair.slice(at + 1)];
      if (/Max-Age=0/i.test(c) || v === '') this.cookies.delete(k);
      else this.cookies.set(k, v);
    }
    return r;
  }

  get(url) {
    return this.request(url);
  }

  postForm(url, fields) {
    return this.request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: this.origin },
      body: new URLSearchParams(fields).toString(),
    });
  }
}

/** The value of a hidden input named `name` in a page. */
export function hidden(html, name) {
  const m = new RegExp(`name="${name}" value="([^"]*)"`).exec(html);
  if (!m) throw new Error(`no ${name} field in:\n${html}`);
  return m[1].replaceAll('&amp;', '&').replaceAll('&quot;', '"').replaceAll('&lt;', '<').replaceAll('&gt;', '>');
}

/** Debian's Chromium, or null when it is missing and not required. */
export function chromium() {
  const path = process.env.CHROMIUM ?? '/usr/bin/chromium';
  if (existsSync(path)) return path;
  if (process.env.GRANT_NODE_REQUIRE_CHROMIUM) throw new Error(`Chromium is required but missing at ${path}`);
  return null;
}
