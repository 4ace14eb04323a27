/**
 * majorCheck, on the leader while the old cluster serves: the new data directory made by the new
 * build's initdb with the old cluster's data checksum setting, encoding and locale (PostgreSQL 18's
 * initdb enables checksums by default: matched, not assumed), every extension of every database
 * available in the new build, then `pg_upgrade --check --link` against the running old cluster.
 * Converges: a new directory this step made already is reused; anything else there is refused.
 */
import { posix } from 'node:path';
import type { Inventory } from '../../runbooks/schema';
import { ensureDir, probe, run } from '../nodes/shell';
import { keepBeating } from '../poll';
import { asPg, bin, controlData, exists, memberCt, pgUpgradeArgv, psql, refuse } from './common';
import type { MajorCheckResult, MajorDeps } from './types';

export interface MajorLeaderArgs {
  /** The inventory as it is (the old major). */
  inv: Inventory;
  /** The inventory after the upgrade (runbooks/pg-version.ts majorTargetInput). */
  next: Inventory;
  leader: string;
}

/** initdb's locale arguments that reproduce the old cluster's template0. */
async function localeArgs(ct: Parameters<typeof psql>[0], inv: Inventory): Promise<string[]> {
  const [row] = await psql(
    ct,
    inv,
    "SELECT pg_encoding_to_char(encoding), datcollate, datctype, datlocprovider, coalesce(datlocale, '') FROM pg_database WHERE datname = 'template0'",
  );
  if (!row || row.length < 5) refuse(`could not read template0's encoding and locale on the leader`);
  const [encoding, collate, ctype, provider, locale] = row as [string, string, string, string, string];
  const args = [`--encoding=${encoding}`, `--lc-collate=${collate}`, `--lc-ctype=${ctype}`];
  if (provider === 'c') return [...args, '--locale-provider=libc'];
  if (provider === 'b') return [...args, '--locale-provider=builtin', `--builtin-locale=${locale}`];
  if (provider === 'i') return [...args, '--locale-provider=icu', `--icu-locale=${locale}`];
  refuse(
    `template0's locale provider ${JSON.stringify(provider)} is not one pgha knows (libc, builtin, icu)`,
  );
}

export async function majorCheck(deps: MajorDeps, args: MajorLeaderArgs): Promise<MajorCheckResult> {
  const { inv, next, leader } = args;
  const ct = await memberCt(deps, inv, leader);
  const newData = next.postgresql.dataDir;
  const pg = inv.postgresql;
  if (!(await exists(ct, `${next.postgresql.binDir}/pg_upgrade`)))
    refuse(
      `${leader}: ${next.postgresql.binDir}/pg_upgrade is missing: the new build is not installed beside the old`,
    );

  const [[checksumsSetting] = []] = await psql(ct, inv, 'SHOW data_checksums');
  const checksums = checksumsSetting === 'on';

  // The new directory: made here, or found as this step left it.
  let initdb = false;
  const version = await probe(ct, ['cat', `${newData}/PG_VERSION`]);
  if (version.code === 0) {
    if (version.stdout.trim() !== String(next.postgresql.major))
      refuse(
        `${leader}: ${newData} holds a PostgreSQL ${version.stdout.trim()} cluster, not ${next.postgresql.major}: move it away first`,
      );
  } else {
    const listing = await probe(ct, ['ls', '-A', newData]);
    if (listing.code === 0 && listing.stdout.trim() !== '')
      refuse(`${leader}: ${newData} exists and is not empty (and is no data directory): move it away first`);
    await ensureDir(ct, posix.dirname(newData), pg.osUser, 0o700);
    await run(
      ct,
      asPg(next, [
        bin(next, 'initdb'),
        '-D',
        newData,
        `--username=${pg.superuser}`,
        ...(await localeArgs(ct, inv)),
        checksums ? '--data-checksums' : '--no-data-checksums',
      ]),
      300_000,
    );
    initdb = true;
  }
  const newChecksums = (await controlData(ct, next, newData))?.['Data page checksum version'];
  if (newChecksums === undefined || (newChecksums !== '0') !== checksums)
    refuse(
      `${leader}: the new cluster's data checksums (version ${newChecksums}) do not match the old one's (${checksumsSetting}): remove ${newData} and run again`,
    );

  // Extensions: each one installed in a database must have a control file in the new build.
  const shareDir =
    (await probe(ct, [bin(next, 'pg_config'), '--sharedir'])).stdout.trim() ||
    posix.join(posix.dirname(next.postgresql.binDir), 'share');
  const dbs = (await psql(ct, inv, 'SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1')).map(
    (r) => r[0]!,
  );
  const extensions = new Set<string>();
  for (const db of dbs)
    for (const [ext] of await psql(ct, inv, 'SELECT extname FROM pg_extension', db)) extensions.add(ext!);
  const missing: string[] = [];
  for (const ext of extensions) {
    if (
      !/^[A-Za-z0-9_.-]+$/.test(ext) ||
      !(await exists(ct, posix.join(shareDir, 'extension', `${ext}.control`)))
    )
      missing.push(ext);
  }
  if (missing.length)
    refuse(
      `extension(s) ${missing.join(', ')} are installed in the old cluster but not available in PostgreSQL ${next.versions.postgresql} (${shareDir}/extension): install them into the new build first`,
    );

  // pg_upgrade --check reads every database's catalog: heartbeat through it.
  const check = await keepBeating(
    probe(
      ct,
      asPg(next, [...pgUpgradeArgv(inv, next, ['--check']), '-p', String(inv.ports.postgresql)]),
      600_000,
    ),
    { leader, step: 'pg_upgrade --check' },
  );
  const tail = `${check.stdout}\n${check.stderr}`.trim().split('\n').slice(-12).join('\n');
  if (check.code !== 0)
    refuse(`pg_upgrade --check on ${leader} failed (exit ${check.code}); nothing was changed:\n${tail}`);
  return { leader, checksums, initdb, extensions: [...extensions].sort(), check: tail };
}
