/**
 * majorUpdateExtensions, on the new leader after the upgrade: `ALTER EXTENSION … UPDATE` for every
 * extension of every database whose installed version is older than the new build's default
 * (pg_upgrade carries the old versions over: an extension keeps its old SQL objects until updated).
 * Check, then act: only what differs is updated; run again, nothing is left to do. Post-check:
 * every extension at its default version.
 */
import type { Inventory } from '../../runbooks/schema';
import { fail, memberCt, psql } from './common';
import type { MajorDeps } from './types';

export interface ExtensionUpdate {
  database: string;
  extension: string;
  from: string;
  to: string;
}

const OUTDATED =
  'SELECT name, installed_version, default_version FROM pg_available_extensions ' +
  'WHERE installed_version IS NOT NULL AND installed_version IS DISTINCT FROM default_version ORDER BY 1';

/** A catalog name as a quoted SQL identifier; anything outside the plain grammar is refused. */
function ident(name: string): string {
  if (!/^[A-Za-z0-9_.-]{1,63}$/.test(name))
    fail(`extension or database name ${JSON.stringify(name)} is outside pgha's grammar: update it by hand`);
  return `"${name}"`;
}

export async function majorUpdateExtensions(
  deps: MajorDeps,
  args: { inv: Inventory; leader: string },
): Promise<{ updated: ExtensionUpdate[] }> {
  const { inv, leader } = args;
  const ct = await memberCt(deps, inv, leader);
  const dbs = (await psql(ct, inv, 'SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1')).map(
    (r) => r[0]!,
  );
  const updated: ExtensionUpdate[] = [];
  for (const db of dbs) {
    for (const [name, from, to] of await psql(ct, inv, OUTDATED, db)) {
      await psql(ct, inv, `ALTER EXTENSION ${ident(name!)} UPDATE`, db);
      updated.push({ database: db, extension: name!, from: from!, to: to! });
    }
    const left = await psql(ct, inv, OUTDATED, db);
    if (left.length)
      fail(
        `database ${db} on ${leader}: ${left.map(([n, f, t]) => `${n} ${f} (default ${t})`).join(', ')} not updated by ALTER EXTENSION … UPDATE`,
      );
  }
  return { updated };
}
