/**
 * What a restore recovers to: the end of the archive (no target), a time, an LSN, a restore point's
 * name, or the backup's own consistent point (`immediate`). Pure: the CLI checks the flags before
 * anything starts, the workflow checks its input again before any step; every value that reaches
 * patroni.yml is of its own strict grammar here.
 */

export type RestoreTarget =
  | { kind: 'latest' }
  | { kind: 'time'; time: string }
  | { kind: 'lsn'; lsn: string }
  | { kind: 'name'; name: string }
  | { kind: 'immediate' };

export interface RestoreTargetFlags {
  targetTime?: string;
  targetLsn?: string;
  targetName?: string;
  targetImmediate?: boolean;
}

/** An ISO 8601 time with its zone (Z or ±hh:mm), to the microsecond at most. */
const TIME = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:?\d{2})$/;
export const LSN = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/i;
/** A restore point's name (pg_create_restore_point): a conservative subset, as it lands in a config file. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$/;

/** The target of the flags given (at most one), or a clear error naming the flag and the fix. */
export function parseRestoreTarget(f: RestoreTargetFlags): RestoreTarget {
  const given = [
    f.targetTime !== undefined && '--target-time',
    f.targetLsn !== undefined && '--target-lsn',
    f.targetName !== undefined && '--target-name',
    f.targetImmediate === true && '--target-immediate',
  ].filter((x): x is string => typeof x === 'string');
  if (given.length > 1)
    throw new Error(
      `${given.join(' and ')}: give at most one recovery target (none: recover to the end of the archive)`,
    );
  if (f.targetTime !== undefined) {
    const t = String(f.targetTime).trim();
    if (!TIME.test(t) || Number.isNaN(Date.parse(t.replace(' ', 'T'))))
      throw new Error(
        `--target-time ${JSON.stringify(t.slice(0, 60))} is not a time with its zone: give ISO 8601, e.g. --target-time 2026-11-29T23:05:00.250Z`,
      );
    return { kind: 'time', time: new Date(Date.parse(t.replace(' ', 'T'))).toISOString() };
  }
  if (f.targetLsn !== undefined) {
    const l = String(f.targetLsn).trim().toUpperCase();
    if (!LSN.test(l))
      throw new Error(
        `--target-lsn ${JSON.stringify(l.slice(0, 40))} is not an LSN: give it as PostgreSQL prints it, e.g. --target-lsn 0/3000148`,
      );
    return { kind: 'lsn', lsn: l };
  }
  if (f.targetName !== undefined) {
    const n = String(f.targetName).trim();
    if (!NAME.test(n))
      throw new Error(
        `--target-name ${JSON.stringify(n.slice(0, 70))}: a restore point name of letters, digits, _ . : - (at most 63), as given to pg_create_restore_point`,
      );
    return { kind: 'name', name: n };
  }
  if (f.targetImmediate) return { kind: 'immediate' };
  return { kind: 'latest' };
}

/** An LSN as a number (for comparisons). */
export function lsnValue(lsn: string): bigint {
  if (!LSN.test(lsn)) throw new Error(`${JSON.stringify(lsn)} is not an LSN`);
  const [hi, lo] = lsn.split('/') as [string, string];
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

/** PostgreSQL's recovery settings for the target (restore_command and the timeline aside). */
export function recoveryTargetSettings(t: RestoreTarget): Record<string, string> {
  switch (t.kind) {
    case 'time':
      // PostgreSQL reads it when the configuration is loaded, before time zone abbreviations are:
      // 'Z' is refused there ("invalid value"), a numeric offset is not
      return { recovery_target_time: t.time.replace('T', ' ').replace(/Z$/, '+00') };
    case 'lsn':
      return { recovery_target_lsn: t.lsn };
    case 'name':
      return { recovery_target_name: t.name };
    case 'immediate':
      return { recovery_target: 'immediate' };
    default:
      return {};
  }
}

/** The target in words, for plans and messages. */
export function describeTarget(t: RestoreTarget): string {
  switch (t.kind) {
    case 'time':
      return `time ${t.time}`;
    case 'lsn':
      return `LSN ${t.lsn}`;
    case 'name':
      return `restore point ${t.name}`;
    case 'immediate':
      return "the backup's consistent point";
    default:
      return 'the end of the archive';
  }
}
