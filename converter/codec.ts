/**
 * pgha's PayloadCodec: every payload (workflow and activity inputs and results, query, signal and
 * update arguments, failure messages) is encrypted with AES-256-GCM before it reaches the Temporal
 * server, so history holds only ciphertext. Used by the worker, the clients and the tests (this module
 * is shared by workers/ and clients/ so that neither imports the other); the codec server
 * (clients/codec.ts, `pgha codec-server`) lets the Web UI show payloads to someone holding the key.
 *
 * Key: PGHA_CODEC_KEY (base64 of 32 bytes) or the key file PGHA_CODEC_KEY_FILE (default
 * .pgha/codec.key, base64, mode 0600, written by `pgha keygen`). A key file readable by group or
 * others is refused.
 *
 * Wire format of an encrypted payload: metadata { encoding: "binary/encrypted",
 * "encryption-key-id": <first 16 hex of sha256(key)> }, data = iv (12) | ciphertext | tag (16) of the
 * original Payload protobuf.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { METADATA_ENCODING_KEY } from '@temporalio/common';
import type { DataConverter, Payload, PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { codecKeySource } from '../temporal.config';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const ProtoPayload = temporal.api.common.v1.Payload;

const utf8 = (s: string) => new TextEncoder().encode(s);
const str = (b: Uint8Array | null | undefined) => (b ? Buffer.from(b).toString('utf8') : undefined);

export class CodecKeyError extends Error {
  override readonly name = 'CodecKeyError';
}

export class AesGcmCodec implements PayloadCodec {
  readonly keyId: string;

  constructor(private readonly key: Uint8Array) {
    if (key.length !== 32) throw new CodecKeyError(`codec key must be 32 bytes (AES-256), got ${key.length}`);
    this.keyId = createHash('sha256').update(key).digest('hex').slice(0, 16);
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', this.key, iv);
      const plain = ProtoPayload.encode(p).finish();
      const data = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      return {
        metadata: { [METADATA_ENCODING_KEY]: utf8(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: utf8(this.keyId) },
        data,
      };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => {
      // Payloads written without the codec (or by the server) pass through unchanged.
      if (str(p.metadata?.[METADATA_ENCODING_KEY]) !== ENCRYPTED_ENCODING) return p;
      const keyId = str(p.metadata?.[KEY_ID_METADATA]);
      if (keyId !== this.keyId) {
        throw new CodecKeyError(
          `payload was encrypted with codec key ${keyId ?? '(unknown)'}, but this key is ${this.keyId}: ` +
            `use the key the worker uses (PGHA_CODEC_KEY or ${codecKeySource.defaultFile})`,
        );
      }
      const data = Buffer.from(p.data ?? new Uint8Array());
      if (data.length < IV_BYTES + TAG_BYTES) throw new CodecKeyError('encrypted payload is truncated');
      const decipher = createDecipheriv('aes-256-gcm', this.key, data.subarray(0, IV_BYTES));
      decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
      const plain = Buffer.concat([
        decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)),
        decipher.final(),
      ]);
      return ProtoPayload.decode(plain);
    });
  }
}

/** A new random key, base64. */
export function generateKey(): string {
  return randomBytes(32).toString('base64');
}

function parseKey(b64: string, where: string): Buffer {
  const text = b64.trim();
  const key = Buffer.from(text, 'base64');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text) || key.length !== 32) {
    throw new CodecKeyError(
      `${where} must hold 32 bytes in base64 (44 characters); run pgha keygen for a new one`,
    );
  }
  return key;
}

/** The key file in use: PGHA_CODEC_KEY_FILE or .pgha/codec.key. */
export function codecKeyFile(env: NodeJS.ProcessEnv = process.env): string {
  return env[codecKeySource.fileEnv] || codecKeySource.defaultFile;
}

/** Loads the codec key from PGHA_CODEC_KEY or the 0600 key file; a clear error says how to make one. */
export function loadCodecKey(env: NodeJS.ProcessEnv = process.env): Buffer {
  const fromEnv = env[codecKeySource.env];
  if (fromEnv) return parseKey(fromEnv, codecKeySource.env);
  const file = codecKeyFile(env);
  let mode: number;
  try {
    mode = statSync(file).mode;
  } catch {
    throw new CodecKeyError(
      `no payload codec key: ${file} does not exist and ${codecKeySource.env} is not set; ` +
        `run \`npx pgha keygen\` (or set ${codecKeySource.env} to the worker's key)`,
    );
  }
  if (mode & 0o077) {
    throw new CodecKeyError(
      `codec key file ${file} is readable by group or others (mode ${(mode & 0o777).toString(8)}): chmod 600 ${file}`,
    );
  }
  return parseKey(readFileSync(file, 'utf8'), `codec key file ${file}`);
}

/** Writes a new key file (mode 0600, directory 0700). Refuses to overwrite unless `force`. */
export function writeKeyFile(file: string, opts: { force?: boolean } = {}): { file: string; keyId: string } {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const key = generateKey();
  try {
    writeFileSync(file, `${key}\n`, { mode: 0o600, flag: opts.force ? 'w' : 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new CodecKeyError(
        `${file} already exists: payloads in history were encrypted with it. Use --force to replace it ` +
          `(old histories then cannot be decoded without the old key)`,
      );
    }
    throw err;
  }
  return { file, keyId: new AesGcmCodec(Buffer.from(key, 'base64')).keyId };
}

/** The codec with the configured key (or the given one). */
export function createCodec(key?: Uint8Array): AesGcmCodec {
  return new AesGcmCodec(key ?? loadCodecKey());
}

/** The data converter of every pgha client and worker: the codec plus failure messages encoded. */
export function pghaDataConverter(codec: PayloadCodec = createCodec()): DataConverter {
  return { payloadCodecs: [codec], failureConverterPath: require.resolve('./failure-converter') };
}
