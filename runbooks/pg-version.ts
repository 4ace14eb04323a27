/**
 * Version arithmetic for the upgrade runbooks, pure (the workflow and the CLI use it too): a
 * PostgreSQL version as typed (`18.6`), as a build in the offline directory's manifest (`18.6.0`),
 * as PostgreSQL reports it (server_version_num 180006), and where a build lives beside the others.
 */

/** Default bounds of the upgrade pre-check (issue 9): replicas within 10 MiB, no transaction older than 15 s. */
export const DEFAULT_MAX_LAG_BYTES = 10 * 1024 * 1024;
export const DEFAULT_MAX_XACT_AGE_MS = 15_000;

/** `18.6`, `18.6.0` → { major 18, minor 6 }; null when it is not such a version. */
export function parsePgVersion(v: string): { major: number; minor: number } | null {
  const m = /^(\d{1,3})\.(\d{1,3})(?:\.0)?$/.exec(v.trim());
  if (!m) return null;
  return { major: Number(m[1]), minor: Number(m[2]) };
}

/** server_version_num of a version (18.6 → 180006), as Patroni's GET /patroni server_version. */
export function pgVersionNum(v: string): number | null {
  const p = parsePgVersion(v);
  return p ? p.major * 10000 + p.minor : null;
}

/** 180006 → `18.6`. */
export function pgVersionText(num: number | null | undefined): string | null {
  if (num === null || num === undefined || !Number.isFinite(num) || num < 100000) return null;
  return `${Math.floor(num / 10000)}.${num % 10000}`;
}

/** A PostgreSQL build the install source offers (MANIFEST.json of the offline directory). */
export interface PgBuild {
  version: string;
  wheel: string;
  archive: string;
}

/** The build for `to` (18.6 matches 18.6.0), or undefined. */
export function findPgBuild(builds: readonly PgBuild[], to: string): PgBuild | undefined {
  const want = pgVersionNum(to);
  return builds.find((b) => pgVersionNum(b.version) === want);
}

/**
 * Where a build lives beside the others: the bin dir's parent (the link, /usr/pgsql-18) with the
 * build's version in place of the major (/usr/pgsql-18.6.0) — the layout deployCluster makes.
 */
export function pgBuildHome(binDir: string, buildVersion: string): { link: string; target: string } {
  const link = binDir.replace(/\/bin\/?$/, '');
  const target = /-\d+$/.test(link) ? link.replace(/\d+$/, buildVersion) : `${link}-${buildVersion}`;
  return { link, target };
}

/** Why an upgrade from `from` to `to` is refused, or null: another major, or a downgrade. */
export function upgradeProblem(member: string, fromNum: number, toNum: number): string | null {
  const from = pgVersionText(fromNum) ?? String(fromNum);
  const to = pgVersionText(toNum) ?? String(toNum);
  if (Math.floor(fromNum / 10000) !== Math.floor(toNum / 10000)) {
    return `${member} runs PostgreSQL ${from}, the target ${to} is another major version: this runbook does minor upgrades only (a major upgrade needs pg_upgrade)`;
  }
  if (toNum < fromNum) {
    return `${member} runs PostgreSQL ${from}, newer than the target ${to}: a downgrade is refused; give --to ${from} or newer`;
  }
  return null;
}

/**
 * The build a major upgrade goes to: `--to 18` → the newest 18.x build the install source has,
 * `--to 18.6` → exactly that one; undefined when there is none.
 */
export function findMajorBuild(builds: readonly PgBuild[], to: string): PgBuild | undefined {
  if (/^\d{1,3}$/.test(to.trim())) {
    const major = Number(to.trim());
    return builds
      .filter((b) => Math.floor((pgVersionNum(b.version) ?? 0) / 10000) === major)
      .sort((a, b) => pgVersionNum(b.version)! - pgVersionNum(a.version)!)[0];
  }
  return findPgBuild(builds, to);
}

/** A path with the segment naming major `from` (`17`, `pgsql-17`) naming `to` instead; null when none does. */
export function swapMajor(path: string, from: number, to: number): string | null {
  let swapped = false;
  const out = path.split('/').map((seg) => {
    const m = /^((?:pgsql|postgresql|postgres|pg)[-_]?)?(\d{1,2})((?:\.\d+){0,2})$/.exec(seg);
    if (!m || Number(m[2]) !== from) return seg;
    swapped = true;
    return `${m[1] ?? ''}${to}`;
  });
  return swapped ? out.join('/') : null;
}

/**
 * The inventory as it is after a major upgrade to `build` (18.6.0), pure: versions.postgresql the
 * new build, postgresql.binDir / dataDir the same layout with the new major (/usr/pgsql-17/bin →
 * /usr/pgsql-18/bin, /var/lib/pgsql/17/data → /var/lib/pgsql/18/data): the new data directory
 * beside the old, on the same file system, as pg_upgrade --link needs. Throws naming the field
 * when a directory does not say its major (the new one could not be put beside it).
 */
export function majorTargetInput<T extends MajorInventoryShape>(input: T, build: string): T {
  const from = parsePgVersion(String(input.versions?.postgresql ?? ''));
  const to = parsePgVersion(build);
  if (!from || !to)
    throw new Error(`versions.postgresql ${String(input.versions?.postgresql)}: not a version`);
  const pg = { ...(input.postgresql ?? {}) };
  for (const k of ['binDir', 'dataDir'] as const) {
    const v = pg[k];
    if (typeof v !== 'string') continue; // the default follows versions.postgresql
    const swapped = swapMajor(v, from.major, to.major);
    if (swapped === null)
      throw new Error(
        `postgresql.${k} ${v} names no PostgreSQL ${from.major} directory: the new one cannot be placed beside it; ` +
          `use the layout /usr/pgsql-<major>/bin and /var/lib/pgsql/<major>/data, or omit ${k}`,
      );
    pg[k] = swapped;
  }
  const out: T = {
    ...input,
    versions: { ...input.versions, postgresql: `${to.major}.${to.minor}` },
    postgresql: pg,
  };
  // With a backup CT: a Barman server of the new major's own (WAL of two majors does not mix).
  if (
    Array.isArray(input.nodes?.backup) &&
    input.nodes.backup.length > 0 &&
    typeof input.cluster === 'string'
  )
    out.backup = { ...(input.backup ?? {}), server: majorBarmanServer(input.cluster, to.major) };
  return out;
}

/** The Barman server of a cluster after its upgrade to `major`: `<cluster>-pg<major>`. */
export const majorBarmanServer = (cluster: string, major: number) => `${cluster}-pg${major}`;

/** The parts of an inventory (raw or parsed) a major upgrade changes. */
export interface MajorInventoryShape {
  cluster?: unknown;
  nodes?: { backup?: unknown };
  versions?: { postgresql?: unknown };
  postgresql?: { binDir?: unknown; dataDir?: unknown };
  backup?: { server?: unknown };
}
