/**
 * No secret in clear anywhere Temporal or a worker keeps something (issue 13's secrets item). Run
 * last by `npm test` (the file list is sorted), it reads what the whole run left in its artifacts
 * directory (PGHA_TEST_ARTIFACTS, set by scripts/test): every test server's database (each holds
 * the histories of that file's runs, unit, workflow and lab alike), every worker process's log, and
 * also the saved histories in test/histories (exported without the codec) and the state of
 * `scripts/up` (.pgha: its server's database and its worker's log) when present. The values looked
 * for: the lab's secrets (passwords, from the files its inventory names), the Proxmox SSH private
 * key, every test process's payload codec key and every webhook URL a test gave a notify.webhook
 * reference (webhook-*.url, test/workflow/notify.test.ts) — each as it is, and in base64 at each of the
 * three alignments (exported payloads are base64 inside JSON).
 *
 * A test file run on its own has no artifacts directory: then this one skips, saying so.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadInventory, secretNamesOf } from '../../runbooks/inventory';
import { repoRoot } from '../helpers/local-common';

const dir = process.env.PGHA_TEST_ARTIFACTS;
const SSH_KEY = '/var/lib/pgha-lab/ssh/id_ed25519';
const MIN = 12;

/** A value and its base64 forms at the three byte alignments (the stable middle of each). */
function forms(value: string): string[] {
  const b = Buffer.from(value);
  const out = [value];
  for (let pad = 0; pad < 3; pad++) {
    const enc = Buffer.concat([Buffer.alloc(pad), b]).toString('base64');
    // drop the characters that depend on the bytes before (pad) and after (the tail) the value
    const start = Math.ceil((pad * 4) / 3) + (pad ? 1 : 0);
    const end = Math.floor(((pad + b.length) * 4) / 3) - 1;
    const mid = enc.slice(start, end);
    if (mid.length >= MIN) out.push(mid);
  }
  return out;
}

function files(root: string, pick: (f: string) => boolean = () => true): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true, encoding: 'utf8' })
    .map((f) => join(root, f))
    .filter((f) => statSync(f).isFile() && pick(f));
}

void test(
  'no secret in any test server database, worker log or saved history of this run',
  { skip: dir ? false : 'no PGHA_TEST_ARTIFACTS: run through scripts/test (npm test)' },
  async () => {
    const secrets: [string, string][] = [];
    const inv = await loadInventory(join(repoRoot, 'runbooks/clusters/lab.yaml'));
    for (const n of secretNamesOf(inv)) {
      const ref = inv.secrets[n]!;
      const path = ref.startsWith('file:') ? ref.slice(5) : undefined;
      if (path && existsSync(path)) secrets.push([`lab secret ${n}`, readFileSync(path, 'utf8').trim()]);
    }
    if (existsSync(SSH_KEY)) {
      // The body's first two lines are the format's fixed header and the public key: the private
      // part follows.
      const body = readFileSync(SSH_KEY, 'utf8')
        .split('\n')
        .filter((l) => l && !l.startsWith('-----'));
      for (const line of body.slice(2))
        if (line.length >= MIN) secrets.push(['the Proxmox SSH private key', line]);
    }
    const keys = files(dir!, (f) => /codec-\d+\.key$/.test(f));
    for (const k of keys) secrets.push([`a test codec key (${k})`, readFileSync(k, 'utf8').trim()]);
    const isHook = (f: string) => /webhook-[\w.-]+\.url$/.test(f);
    for (const u of files(dir!, isHook))
      secrets.push([`a webhook URL (${u})`, readFileSync(u, 'utf8').trim()]);
    const codecKey = join(repoRoot, '.pgha/codec.key');
    if (existsSync(codecKey))
      secrets.push(['the codec key of scripts/up', readFileSync(codecKey, 'utf8').trim()]);

    const haystacks = [
      ...files(dir!, (f) => !/codec-\d+\.key$/.test(f) && !isHook(f)),
      ...files(join(repoRoot, 'test/histories'), (f) => f.endsWith('.json')),
      ...files(join(repoRoot, '.pgha'), (f) => /\.(db|log)$/.test(f)),
    ];
    const dbs = haystacks.filter((f) => f.endsWith('.db'));
    assert.ok(dbs.length > 0, `the run left no test server database in ${dir}`);
    assert.ok(keys.length > 0, `the run left no codec key in ${dir}`);
    const needles = secrets
      .filter(([, v]) => v.length >= MIN)
      .flatMap(([what, v]) => forms(v).map((f) => [what, Buffer.from(f)] as const));
    assert.ok(needles.length > 0, 'something to look for');

    const found: string[] = [];
    let bytes = 0;
    for (const f of haystacks) {
      const data = readFileSync(f);
      bytes += data.length;
      for (const [what, n] of needles) if (data.includes(n)) found.push(`${what} in ${f}`);
    }
    console.log(
      `secrets scan: ${secrets.length} values (${needles.length} forms) in ${haystacks.length} files ` +
        `(${dbs.length} server databases, ${(bytes / 1048576).toFixed(1)} MiB)`,
    );
    assert.deepEqual([...new Set(found)], [], 'secrets found in clear');
  },
);
