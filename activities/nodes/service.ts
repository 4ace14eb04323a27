/**
 * A service converges on what is observed in its CT, not on what this attempt happened to change.
 *
 * The CT keeps, per service, a record of the configuration it last APPLIED: the sha256 of its
 * files on disk, written only after a start, reload or restart succeeded. A step compares that
 * record with the files on disk now: if they differ, the files were changed and never applied (by
 * this attempt, or by an earlier one that died between writing them and the reload), so the
 * service is validated where a validator exists and reloaded/restarted. Run again, nothing differs
 * and nothing restarts.
 *
 * A service with no record yet (deployed by a pgha before these records) is adopted as it runs
 * when this attempt changed none of its files; otherwise it is reloaded like any other.
 */
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { probe, push, run, unitState } from './shell';
import type { Ct } from './types';

/** Where the applied records live in the CT: one file per unit, root-only. */
export const APPLIED_DIR = '/var/lib/pgha/applied';

export interface ServiceWant {
  unit: string;
  /** The service's configuration files (their content on disk is what gets recorded). */
  files: string[];
  /** Whether this attempt changed any of them (only used for a service with no record yet). */
  filesChanged: boolean;
  /** Start it when it is not running (false: configure only; a running one is still reloaded). */
  running: boolean;
  onChange: 'reload' | 'restart';
  /** Queue the start/restart (etcd's Type=notify unit is not ready until the cluster has quorum). */
  noBlock?: boolean;
  /** argv that validates the live configuration before it is applied (e.g. `haproxy -c -f`). */
  validate?: string[];
}

/** The sha256 of the files on disk, in the given order (their paths included). */
export async function filesOnDisk(ct: Ct, files: string[]): Promise<string> {
  const out = await run(ct, ['sha256sum', '--', ...files]);
  return createHash('sha256').update(out).digest('hex');
}

const recordPath = (unit: string) => posix.join(APPLIED_DIR, `${unit}.sha256`);

/** The hash the service last applied, or undefined when there is no record. */
export async function appliedHash(ct: Ct, unit: string): Promise<string | undefined> {
  const r = await probe(ct, ['cat', '--', recordPath(unit)]);
  return r.code === 0 && /^[0-9a-f]{64}$/.test(r.stdout.trim()) ? r.stdout.trim() : undefined;
}

/** Record that the service now runs with configuration `hash` (only after it was applied). */
export async function recordApplied(ct: Ct, unit: string, hash: string): Promise<void> {
  await run(ct, ['install', '-d', '-m', '700', APPLIED_DIR]);
  await push(ct, recordPath(unit), `${hash}\n`, { mode: 0o600 });
}

/**
 * The unit enabled and, as asked, running with its current files applied. Returns what it did
 * (`patroni enabled`, `haproxy reloaded`, ...).
 */
export async function ensureService(ct: Ct, want: ServiceWant): Promise<string[]> {
  const { unit } = want;
  const did: string[] = [];
  const current = await filesOnDisk(ct, want.files);
  const applied = await appliedHash(ct, unit);
  const pending = applied === undefined ? want.filesChanged : applied !== current;
  // systemd reads changed unit files only on daemon-reload: before applying anything new, and
  // before a first start (a retry of a step that died after writing a new unit, before starting it)
  if (pending || applied === undefined) await run(ct, ['systemctl', 'daemon-reload']);
  const s = await unitState(ct, unit);
  if (!s.enabled) {
    await run(ct, ['systemctl', 'enable', '--quiet', unit]);
    did.push(`${unit} enabled`);
  }
  const block = want.noBlock ? ['--no-block'] : [];
  if (!s.active) {
    if (!want.running) return did; // applied when it starts (startPatroni records it)
    await run(ct, ['systemctl', 'start', ...block, unit], 180_000);
    did.push(`${unit} started`);
  } else if (pending) {
    if (want.validate) await run(ct, want.validate, 60_000);
    await run(ct, ['systemctl', want.onChange, ...block, unit], 180_000);
    did.push(`${unit} ${want.onChange}ed`);
  } else if (applied === current) {
    return did;
  }
  await recordApplied(ct, unit, current);
  return did;
}
