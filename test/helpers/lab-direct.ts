/**
 * What the lab tests use to check the cluster from outside pgha: a command in a CT straight through
 * LXC (not pgha's ssh + pct transport), and SQL as the superuser with the password read from the
 * inventory's secret file.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Client } from 'pg';
import { LXC_PATH } from '../../lab/paths';
import type { Inventory } from '../../runbooks/schema';

/** argv inside CT `vmid` (stdin optional); its stdout, or a thrown error with the exit status. */
export function inCt(
  vmid: number,
  argv: string[],
  opts: { stdin?: string; timeoutMs?: number } = {},
): string {
  return execFileSync('lxc-attach', ['-n', String(vmid), '-P', LXC_PATH, '--', ...argv], {
    encoding: 'utf8',
    input: opts.stdin,
    timeout: opts.timeoutMs ?? 30_000,
  });
}

const secret = (ref: string) => readFileSync(ref.replace(/^file:/, ''), 'utf8').trim();

/** One connection as the inventory's superuser for `fn`, closed afterwards. */
export async function sqlAs<T>(
  inv: Inventory,
  host: string,
  port: number,
  fn: (c: Client) => Promise<T>,
): Promise<T> {
  const c = new Client({
    host,
    port,
    user: inv.postgresql.superuser,
    password: secret(inv.secrets.superuserPassword),
    database: 'postgres',
    connectionTimeoutMillis: 5000,
  });
  c.on('error', () => undefined); // a server going away must not crash the test process
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}
