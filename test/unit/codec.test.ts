/** The payload codec (AES-256-GCM), its key handling and the codec server protocol. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultPayloadConverter } from '@temporalio/common';
import {
  AesGcmCodec,
  CodecKeyError,
  ENCRYPTED_ENCODING,
  loadCodecKey,
  startCodecServer,
  writeKeyFile,
} from '../../clients/codec';

const secretInput = { cluster: 'lab', password: 'correct horse battery staple' };
const plain = () => defaultPayloadConverter.toPayload(secretInput);
const text = (b?: Uint8Array | null) => Buffer.from(b ?? []).toString('latin1');

void describe('AesGcmCodec', () => {
  const codec = new AesGcmCodec(randomBytes(32));

  void test('round trip; the encoded payload holds no plaintext', async () => {
    const [enc] = await codec.encode([plain()]);
    assert.equal(text(enc!.metadata!.encoding), ENCRYPTED_ENCODING);
    assert.ok(!text(enc!.data).includes('correct horse'));
    assert.ok(!text(enc!.data).includes('json/plain'), 'the inner metadata is encrypted too');
    const [dec] = await codec.decode([enc!]);
    assert.deepEqual(defaultPayloadConverter.fromPayload(dec!), secretInput);
  });

  void test('the same input encrypts differently each time (random IV)', async () => {
    const [a, b] = await codec.encode([plain(), plain()]);
    assert.notEqual(text(a!.data), text(b!.data));
  });

  void test('a tampered payload is refused', async () => {
    const [enc] = await codec.encode([plain()]);
    const data = Buffer.from(enc!.data!);
    data[20] = data[20]! ^ 1;
    await assert.rejects(codec.decode([{ ...enc, data }]), /authenticate/);
  });

  void test('another key is refused with both key ids named', async () => {
    const [enc] = await codec.encode([plain()]);
    const other = new AesGcmCodec(randomBytes(32));
    await assert.rejects(other.decode([enc!]), (err: Error) => {
      assert.ok(err instanceof CodecKeyError);
      assert.ok(err.message.includes(codec.keyId) && err.message.includes(other.keyId), err.message);
      return true;
    });
  });

  void test('payloads not encrypted by the codec pass through decode', async () => {
    const p = plain();
    assert.deepEqual(await codec.decode([p]), [p]);
  });

  void test('a key that is not 32 bytes is refused', () => {
    assert.throws(() => new AesGcmCodec(randomBytes(16)), /32 bytes/);
  });
});

void describe('codec key', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgha-codec-'));

  void test('from PGHA_CODEC_KEY (base64); a malformed one is refused', () => {
    const key = randomBytes(32);
    assert.deepEqual(loadCodecKey({ PGHA_CODEC_KEY: key.toString('base64') }), key);
    assert.throws(() => loadCodecKey({ PGHA_CODEC_KEY: 'c2hvcnQ=' }), /PGHA_CODEC_KEY must hold 32 bytes/);
  });

  void test('keygen writes a 0600 file that loads; it never overwrites without force', () => {
    const file = join(dir, 'sub', 'codec.key');
    const r = writeKeyFile(file);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const key = loadCodecKey({ PGHA_CODEC_KEY_FILE: file });
    assert.equal(new AesGcmCodec(key).keyId, r.keyId);
    assert.throws(() => writeKeyFile(file), /already exists.*--force/);
    assert.equal(readFileSync(file, 'utf8').trim(), key.toString('base64'), 'the old key is still there');
    assert.notEqual(writeKeyFile(file, { force: true }).keyId, r.keyId);
  });

  void test('a key file readable by group or others is refused', () => {
    const file = join(dir, 'open.key');
    writeFileSync(file, randomBytes(32).toString('base64'), { mode: 0o644 });
    chmodSync(file, 0o644);
    assert.throws(
      () => loadCodecKey({ PGHA_CODEC_KEY_FILE: file }),
      /readable by group or others \(mode 644\): chmod 600/,
    );
    chmodSync(file, 0o600);
    assert.equal(loadCodecKey({ PGHA_CODEC_KEY_FILE: file }).length, 32);
  });

  void test('no key at all: the error says how to make one', () => {
    assert.throws(
      () => loadCodecKey({ PGHA_CODEC_KEY_FILE: join(dir, 'missing.key') }),
      /run `npx pgha keygen`/,
    );
  });
});

void describe('codec server (remote codec protocol for the Web UI)', () => {
  const codec = new AesGcmCodec(randomBytes(32));
  const ui = 'http://127.0.0.1:8233';

  void test('/encode then /decode round trip; CORS for the UI origin; other origins refused', async () => {
    const { server, url } = await startCodecServer({ codec, port: 0, origins: [ui] });
    try {
      const p = plain();
      const body = {
        payloads: [
          {
            metadata: { encoding: Buffer.from(p.metadata!.encoding!).toString('base64') },
            data: Buffer.from(p.data!).toString('base64'),
          },
        ],
      };
      const post = (path: string, b: unknown, origin = ui) =>
        fetch(`${url}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-namespace': 'default', origin },
          body: JSON.stringify(b),
        });
      const enc = await post('/encode', body);
      assert.equal(enc.status, 200);
      assert.equal(enc.headers.get('access-control-allow-origin'), ui);
      const encoded = (await enc.json()) as typeof body;
      assert.equal(
        Buffer.from(encoded.payloads[0]!.metadata.encoding, 'base64').toString(),
        ENCRYPTED_ENCODING,
      );
      assert.ok(
        !Buffer.from(encoded.payloads[0]!.data, 'base64').toString('latin1').includes('correct horse'),
      );

      const dec = await post('/decode', encoded);
      assert.equal(dec.status, 200);
      const decoded = (await dec.json()) as typeof body;
      assert.deepEqual(JSON.parse(Buffer.from(decoded.payloads[0]!.data, 'base64').toString()), secretInput);

      const preflight = await fetch(`${url}/decode`, {
        method: 'OPTIONS',
        headers: {
          origin: ui,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'x-namespace,content-type',
        },
      });
      assert.equal(preflight.status, 204);
      assert.equal(preflight.headers.get('access-control-allow-origin'), ui);
      assert.match(preflight.headers.get('access-control-allow-headers') ?? '', /X-Namespace/i);
      assert.equal(preflight.headers.get('access-control-allow-credentials'), 'true');

      const evil = await post('/decode', encoded, 'http://evil.example');
      assert.equal(evil.status, 403);
      assert.equal(evil.headers.get('access-control-allow-origin'), null);
      assert.equal((await post('/decode', { nope: 1 })).status, 400);
      const wrongKey = await startCodecServer({
        codec: new AesGcmCodec(randomBytes(32)),
        port: 0,
        origins: [ui],
      });
      try {
        const r = await fetch(`${wrongKey.url}/decode`, { method: 'POST', body: JSON.stringify(encoded) });
        assert.equal(r.status, 422);
        assert.match(await r.text(), /encrypted with codec key/);
      } finally {
        wrongKey.server.close();
      }
    } finally {
      server.close();
    }
  });
});
