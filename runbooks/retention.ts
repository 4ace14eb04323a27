/**
 * The retention policies a backup schedule accepts: exactly Barman's two forms,
 * `RECOVERY WINDOW OF <n> DAYS|WEEKS|MONTHS` and `REDUNDANCY <n>`. Pure (the CLI checks the flag
 * before anything is created; the workflow checks its input again before any step).
 */

const WINDOW = /^RECOVERY WINDOW OF ([1-9][0-9]{0,3}) (DAY|DAYS|WEEK|WEEKS|MONTH|MONTHS)$/;
const REDUNDANCY = /^REDUNDANCY ([1-9][0-9]{0,2})$/;

/** The policy in Barman's canonical spelling (upper case, single spaces), or a clear error naming `field`. */
export function parseRetention(field: string, text: string): string {
  const s = String(text).trim().replace(/\s+/g, ' ').toUpperCase();
  if (WINDOW.test(s) || REDUNDANCY.test(s)) return s;
  throw new Error(
    `${field} ${JSON.stringify(String(text).slice(0, 80))} is not a retention policy Barman accepts: ` +
      `give 'RECOVERY WINDOW OF <n> DAYS' (or WEEKS, MONTHS; n 1-9999) or 'REDUNDANCY <n>' (n 1-999), ` +
      `e.g. --retention 'RECOVERY WINDOW OF 7 DAYS' or --retention 'REDUNDANCY 3'`,
  );
}

/** Whether `text` is a retention policy (no error). */
export function isRetention(text: string): boolean {
  try {
    parseRetention('retention', text);
    return true;
  } catch {
    return false;
  }
}

/** A pgha backup name (the marker id): `pgha-<workflow id slug>-...`. */
export const BACKUP_NAME = /^pgha-[a-z0-9-]{1,80}$/;
/** Barman's backup ids: a timestamp, e.g. 20261129T121352. */
export const BACKUP_ID = /^\d{8}T\d{6}$/;

/** Which backup a drill or a restore takes: `latest`, a Barman backup id or a pgha backup name. */
export function parseBackupRef(field: string, text: string): string {
  const s = String(text).trim();
  if (s === 'latest' || BACKUP_ID.test(s) || BACKUP_NAME.test(s)) return s;
  throw new Error(
    `${field} ${JSON.stringify(s.slice(0, 80))}: expected latest, a Barman backup id (e.g. 20261129T121352, from barman list-backups) or a pgha backup name (pgha-...)`,
  );
}
