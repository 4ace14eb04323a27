/**
 * Patroni versions, pure: comparing them, which Patroni supports which PostgreSQL major (the
 * warning of `pgha validate` / `pgha status`), and where each version's virtualenv lives on a node
 * (the layout the Patroni upgrade converges to: one venv per version beside the inventory's venv
 * path, which becomes a symlink to the active one).
 */
import { VERSION_SHAPES } from './grammar';

export type Triple = [number, number, number];

/** "4.1.5" → [4, 1, 5]; undefined for anything else. */
export function parseVersion(v: string | null | undefined): Triple | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec((v ?? '').trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

/** <0, 0, >0 as a sorts before, equal to, after b. Both must parse (callers check with parseVersion). */
export function compareVersions(a: string, b: string): number {
  const x = parseVersion(a);
  const y = parseVersion(b);
  if (!x || !y)
    throw new Error(`cannot compare Patroni versions "${a}" and "${b}" (expected major.minor.patch)`);
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return (x[i] as number) - (y[i] as number);
  return 0;
}

/** Whether `v` has the shape of a Patroni release (the inventory's grammar). */
export function isPatroniVersion(v: unknown): v is string {
  return typeof v === 'string' && VERSION_SHAPES.patroni.re.test(v);
}

/**
 * The first Patroni release that supports each PostgreSQL major (Patroni's release notes): 4.0.7
 * for 18 (3.3.x counts PostgreSQL 18's io workers as client backends while stopping the primary).
 * Majors not listed are supported by every Patroni pgha deploys (3.x).
 */
export const PATRONI_MIN_FOR_POSTGRES: Readonly<Record<number, string>> = { 18: '4.0.7' };

/**
 * Why `patroni` does not support PostgreSQL `pgMajor` (a warning naming the fix), or undefined when
 * it does or the version cannot be read.
 */
export function patroniSupportWarning(patroni: string, pgMajor: number): string | undefined {
  const min = PATRONI_MIN_FOR_POSTGRES[pgMajor];
  if (!min || !parseVersion(patroni)) return undefined;
  if (compareVersions(patroni, min) >= 0) return undefined;
  return (
    `Patroni ${patroni} does not support PostgreSQL ${pgMajor} (first supported in Patroni ${min}); ` +
    `upgrade it without stopping PostgreSQL: pgha upgrade patroni --cluster FILE --to ${min} or later`
  );
}

/** PostgreSQL's server_version_num (180004) → its major (18). */
export function pgMajorOf(serverVersion: number | null | undefined): number | undefined {
  if (typeof serverVersion !== 'number' || serverVersion <= 0) return undefined;
  return Math.floor(serverVersion / 10000);
}

/** Where version `v`'s virtualenv lives beside the inventory's venv path: /opt/patroni → /opt/patroni-4.1.5. */
export function versionedVenv(venv: string, v: string): string {
  return `${venv.replace(/\/+$/, '')}-${v}`;
}
