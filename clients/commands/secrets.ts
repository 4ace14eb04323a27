/**
 * `pgha secrets init --cluster FILE`: create every missing `file:` secret of an inventory with a
 * random password (mode 0600, new directories 0700). Never overwrites a file, never prints a value.
 * `env:` secrets are the operator's to set; they are only reported as set or not set.
 *
 * `pgha secrets check --cluster FILE`: say which secrets resolve (without their values).
 */
import type { Command } from 'commander';
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { resolveSecretRef } from '../../activities/secrets';
import { checkInventoryFile, formatIssues, secretNamesOf, type Inventory } from '../../runbooks/inventory';

/** 32 characters of base64url (192 bits): safe unquoted in YAML, .pgpass, haproxy.cfg and URLs. */
export function generatePassword(): string {
  return randomBytes(24).toString('base64url');
}

export interface SecretInitResult {
  field: string;
  ref: string;
  action: 'created' | 'exists' | 'env-set' | 'env-unset';
  note?: string;
}

/** Create the missing file: secrets of `inv`. Exclusive create: an existing file is never touched. */
export async function initSecrets(inv: Inventory): Promise<SecretInitResult[]> {
  const out: SecretInitResult[] = [];
  for (const name of secretNamesOf(inv)) {
    const ref = inv.secrets[name]!;
    const field = `secrets.${name}`;
    if (ref.startsWith('env:')) {
      const set = process.env[ref.slice(4)] !== undefined;
      out.push({ field, ref, action: set ? 'env-set' : 'env-unset' });
      continue;
    }
    const path = ref.slice(5);
    const st = await lstat(path).catch(() => undefined);
    if (st) {
      const loose = (st.mode & 0o077) !== 0;
      out.push({
        field,
        ref,
        action: 'exists',
        note: loose
          ? `mode ${(st.mode & 0o777).toString(8)} lets others read it: chmod 600 ${path}`
          : undefined,
      });
      continue;
    }
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    try {
      await writeFile(path, `${generatePassword()}\n`, { mode: 0o600, flag: 'wx' });
      out.push({ field, ref, action: 'created' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      out.push({ field, ref, action: 'exists' });
    }
  }
  return out;
}

async function loadOrFail(file: string): Promise<Inventory | undefined> {
  const r = await checkInventoryFile(file);
  if (!r.inventory) {
    process.stderr.write(
      `${r.file}: invalid inventory, nothing done\n${formatIssues(r)
        .map((l) => `  ${l}`)
        .join('\n')}\n`,
    );
    process.exitCode = 1;
  }
  return r.inventory;
}

const words: Record<SecretInitResult['action'], string> = {
  created: 'created (random, mode 0600)',
  exists: 'exists, kept',
  'env-set': 'environment variable is set',
  'env-unset': 'environment variable is NOT set: export it before running a worker',
};

export function register(program: Command): void {
  const secrets = program
    .command('secrets')
    .description("manage an inventory's secrets (values are never printed)");
  secrets
    .command('init')
    .description(
      'create every missing file: secret with a random password (0600 files, 0700 directories); never overwrites',
    )
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .action(async (opts: { cluster: string }) => {
      const inv = await loadOrFail(opts.cluster);
      if (!inv) return;
      for (const r of await initSecrets(inv))
        process.stdout.write(
          `${r.field}: ${r.ref}: ${words[r.action]}${r.note ? ` (warning: ${r.note})` : ''}\n`,
        );
    });
  secrets
    .command('check')
    .description('say which secrets resolve on this machine, without showing them; exit 1 if any does not')
    .requiredOption('--cluster <file>', 'inventory YAML, e.g. runbooks/clusters/lab.yaml')
    .action(async (opts: { cluster: string }) => {
      const inv = await loadOrFail(opts.cluster);
      if (!inv) return;
      let bad = 0;
      for (const name of secretNamesOf(inv)) {
        const ref = inv.secrets[name]!;
        const msg = await resolveSecretRef(ref).then(
          (v) => `ok (${v.length} characters)`,
          (e: Error) => {
            bad++;
            return `${e.message}; fix: ${ref.startsWith('file:') ? `pgha secrets init --cluster ${opts.cluster}` : `export ${ref.slice(4)}`}`;
          },
        );
        process.stdout.write(`secrets.${name}: ${msg}\n`);
      }
      if (bad) process.exitCode = 1;
    });
}
