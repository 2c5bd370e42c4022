// Receipts and notifications: signed by the owner's key, refused when forged, tampered with,
// for another application or from the future; a replayed older notification changes nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { App, MemoryBook, Registry, SigningKey, signReceipt, verifyReceipt, verifyNotification, cborEncode, bytes } from '../src/index.js';
import { NOTIFICATION_PREFIX } from '../src/statements.js';

const owner = SigningKey.generate();

function notification(n, key = owner) {
  const payload = cborEncode([1, 'grant-updated', n.owner, n.application, BigInt(n.scope), n.expires ?? null, n.time]);
  return cborEncode([payload, key.sign(bytes.concat(NOTIFICATION_PREFIX, payload))]);
}

/** An App whose registry answers look-ups from a fixed record (no network: the look-up is replaced). */
function appWith(record) {
  const app = new App({ name: 'photo-app', key: SigningKey.generate(), registry: new Registry('http://127.0.0.1:1'), book: new MemoryBook() });
  app.lookup = async () => record;
  return app;
}

const record = {
  name: 'alice', keys: [{ key: bytes.toHex(owner.publicKey), valid_from: 0, compromised: false }],
  updating_key: '00'.repeat(32), node_uri: 'https://alice.example/', redirect_uris: [], created: 0, updated: 0, digest: '00'.repeat(32),
};

test('a receipt verifies with the owner\'s key only, and not once changed', () => {
  const wire = signReceipt({ owner: 'alice', application: 'photo-app', scope: 0x80000n, time: 100, state: 's' }, owner);
  assert.equal(verifyReceipt(wire, owner.publicKey).owner, 'alice');
  assert.throws(() => verifyReceipt(wire, SigningKey.generate().publicKey), (e) => e.code === 'receipt.bad-signature');
  const raw = bytes.fromBase64Url(wire);
  raw[10] ^= 1;
  assert.throws(() => verifyReceipt(bytes.toBase64Url(raw), owner.publicKey), (e) => /^receipt\./.test(e.code));
});

test('notifications: applied when newer, ignored when replayed, refused when forged, foreign or from the future', async () => {
  const app = appWith(record);
  const now = Math.floor(Date.now() / 1000);
  await app.acceptNotification(notification({ owner: 'alice', application: 'photo-app', scope: 0x80000, time: now - 10 }));
  assert.equal((await app.grants())[0].scope, 0x80000n);
  await app.acceptNotification(notification({ owner: 'alice', application: 'photo-app', scope: 0, time: now - 5 }));
  assert.deepEqual(await app.grants(), []);
  // The first one again, replayed after the revocation: verified, and changes nothing.
  await app.acceptNotification(notification({ owner: 'alice', application: 'photo-app', scope: 0x80000, time: now - 10 }));
  assert.deepEqual(await app.grants(), []);
  await assert.rejects(app.acceptNotification(notification({ owner: 'alice', application: 'photo-app', scope: 1, time: now }, SigningKey.generate())), (e) => e.code === 'notification.bad-signature');
  await assert.rejects(app.acceptNotification(notification({ owner: 'alice', application: 'other-app', scope: 1, time: now })), (e) => e.code === 'notification.not-for-us');
  await assert.rejects(app.acceptNotification(notification({ owner: 'alice', application: 'photo-app', scope: 1, time: now + 3600 })), (e) => e.code === 'notification.not-fresh');
  assert.throws(() => verifyNotification(new Uint8Array([1, 2, 3]), owner.publicKey), (e) => e.code === 'notification.malformed');
  const handler = app.notificationHandler();
  const r = await handler(new Request('http://app/', { method: 'POST', body: notification({ owner: 'alice', application: 'photo-app', scope: 1, time: now }, SigningKey.generate()) }));
  assert.equal(r.status, 401);
  assert.equal((await handler(new Request('http://app/', { method: 'GET' }))).status, 405);
});
