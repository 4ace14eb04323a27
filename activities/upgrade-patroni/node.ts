/**
 * What the Patroni upgrade does on one node, through `pct exec` (argv only): a venv per version
 * beside the inventory's venv path, the venv path as a symlink to the active one, the unit's
 * KillMode, the switch of the link, the restart of the Patroni service alone. Each looks first.
 */
import { posix } from 'node:path';
import { PATRONI_UNIT_PATH, renderPatroniUnit, patroniConfigPath } from '../render/patroni';
import { ensurePatroniVenv } from '../nodes/packages';
import { probe, push, run } from '../nodes/shell';
import { nodeCt } from '../nodes/context';
import type { Ct } from '../nodes/types';
import type { Inventory } from '../../runbooks/schema';
import { versionedVenv } from '../../runbooks/patroni-versions';
import type { PatroniUpgradeDeps } from './types';
import { fail, refuse } from './common';

/** The offline directory and venv path of an inventory the upgrade can work on, or a refusal. */
export function installOf(inv: Inventory): { dir: string; venv: string } {
  const p = inv.install.patroni;
  if (p.method !== 'offline') {
    refuse(
      `install.patroni.method is ${p.method}: pgha upgrade patroni installs from an offline directory ` +
        `(install.patroni: { method: offline, dir: ..., venv: ... }); upgrade this cluster's Patroni by hand`,
    );
  }
  return { dir: p.dir, venv: p.venv.replace(/\/+$/, '') };
}

export async function memberCt(deps: PatroniUpgradeDeps, inv: Inventory, member: string): Promise<Ct> {
  return (await nodeCt({ shellFor: deps.shellFor }, inv, 'postgres', member)).ct;
}

/** The versions whose wheels the offline directory holds (its MANIFEST.json), read on the node. */
export async function wheelVersions(ct: Ct, dir: string): Promise<string[]> {
  const r = await probe(ct, ['cat', `${dir}/MANIFEST.json`]);
  if (r.code !== 0) return [];
  try {
    const m = JSON.parse(r.stdout) as { patroni?: { version: string }[] };
    return (m.patroni ?? []).map((x) => x.version);
  } catch {
    return [];
  }
}

/** `patroni --version` of an installed venv ("patroni 4.1.5" → 4.1.5), or undefined. */
export async function venvVersion(ct: Ct, venv: string): Promise<string | undefined> {
  const r = await probe(ct, [`${venv}/bin/patroni`, '--version'], 60_000);
  if (r.code !== 0) return undefined;
  return /(\d+\.\d+\.\d+)\s*$/.exec(r.stdout.trim())?.[1];
}

/** systemd's KillMode of the patroni unit as loaded now. */
export async function killModeOf(ct: Ct): Promise<string> {
  return (await run(ct, ['systemctl', 'show', 'patroni', '--property=KillMode', '--value'])).trim();
}

/** The patroni service's main PID (0 when it is not running). */
export async function mainPid(ct: Ct): Promise<number> {
  return Number((await run(ct, ['systemctl', 'show', 'patroni', '--property=MainPID', '--value'])).trim());
}

/** Version `v` of Patroni in its own venv (/opt/patroni-<v>) from the offline wheels; idempotent. */
export async function ensureVersionVenv(ct: Ct, inv: Inventory, v: string): Promise<string[]> {
  const { dir, venv } = installOf(inv);
  const target = versionedVenv(venv, v);
  const pinned: Inventory = { ...inv, versions: { ...inv.versions, patroni: v } };
  const done = await ensurePatroniVenv(ct, pinned, dir, target);
  if ((await venvVersion(ct, target)) !== v)
    fail(`${target}/bin/patroni does not report ${v} after installing it from ${dir}`);
  return done.map((d) => `${d} in ${target}`);
}

/**
 * The venv path as a symlink to a versioned venv. A real directory from an older deploy is renamed
 * to /opt/patroni-<its version> and linked back at once: the running Patroni keeps its files (same
 * inodes), and its scripts' `#!/opt/patroni/bin/python3` still resolve while the link points there.
 * A crash between the rename and the link leaves no venv path: the retry links it to the version
 * the member runs (`running`).
 */
export async function convergeLayout(ct: Ct, inv: Inventory, running: string | null): Promise<string[]> {
  const { venv } = installOf(inv);
  const kind = await probe(ct, ['stat', '-c', '%F', venv]);
  const what = kind.stdout.trim();
  if (kind.code === 0 && what === 'symbolic link') return [];
  if (kind.code === 0 && what === 'directory') {
    const v = await venvVersion(ct, venv);
    if (!v)
      fail(`${venv} is a directory without a working patroni: cannot tell its version; fix or remove it`);
    const target = versionedVenv(venv, v);
    if ((await probe(ct, ['test', '-e', target])).code === 0)
      fail(`${venv} is a directory (Patroni ${v}) and ${target} exists too: remove the one not in use`);
    await run(ct, ['mv', '-T', venv, target]);
    await run(ct, ['ln', '-sfnT', target, venv]);
    return [`${venv} (Patroni ${v}) moved to ${target}, ${venv} -> ${target}`];
  }
  if (kind.code !== 0 && running) {
    const target = versionedVenv(venv, running);
    if ((await venvVersion(ct, target)) === running) {
      await run(ct, ['ln', '-sfnT', target, venv]);
      return [`${venv} -> ${target} (the link was missing)`];
    }
  }
  fail(`${venv} is ${kind.code === 0 ? `a ${what}` : 'missing'}: expected a Patroni venv or a link to one`);
}

/** Where the venv link points now (the versioned venv), or undefined. */
export async function linkTarget(ct: Ct, inv: Inventory): Promise<string | undefined> {
  const r = await probe(ct, ['readlink', installOf(inv).venv]);
  return r.code === 0 ? r.stdout.trim() : undefined;
}

/** Points the venv link at version `v` atomically (a new link renamed over the old one). */
export async function pointLink(ct: Ct, inv: Inventory, v: string): Promise<string[]> {
  const { venv } = installOf(inv);
  const target = versionedVenv(venv, v);
  if ((await linkTarget(ct, inv)) === target) return [];
  const tmp = `${posix.dirname(venv)}/.${posix.basename(venv)}.pgha-new`;
  await run(ct, ['ln', '-sfnT', target, tmp]);
  await run(ct, ['mv', '-fT', tmp, venv]);
  return [`${venv} -> ${target}`];
}

/**
 * The unit as pgha renders it (KillMode=process: stopping Patroni leaves PostgreSQL running),
 * written if it differs, then a daemon-reload — no restart of anything. Refuses to go on if systemd
 * does not then report KillMode=process.
 */
export async function convergeUnit(ct: Ct, inv: Inventory): Promise<string[]> {
  const unit = renderPatroniUnit(inv);
  const done: string[] = [];
  const changed = await push(ct, PATRONI_UNIT_PATH, unit.content, {
    mode: unit.mode,
    owner: unit.owner,
    group: unit.group,
  });
  if (changed) {
    await run(ct, ['systemctl', 'daemon-reload']);
    done.push(`${PATRONI_UNIT_PATH} rewritten (KillMode=process), daemon-reload`);
  }
  const mode = await killModeOf(ct);
  if (mode !== 'process')
    fail(
      `the patroni unit has KillMode=${mode} after daemon-reload: restarting Patroni would stop PostgreSQL; ` +
        `check ${PATRONI_UNIT_PATH} and drop-ins (systemctl cat patroni)`,
    );
  return done;
}

/**
 * The new Patroni's own check of the live patroni.yml (`patroni --validate-config`). On a running
 * node it always says the REST API and PostgreSQL ports are in use (they are: by the running
 * services); any other line is a setting the new version rejects, and nothing is switched.
 */
export async function validateConfigWith(ct: Ct, inv: Inventory, v: string): Promise<void> {
  const { venv } = installOf(inv);
  const bin = `${versionedVenv(venv, v)}/bin/patroni`;
  const r = await probe(ct, [bin, '--validate-config', patroniConfigPath(inv)], 60_000);
  if (r.code === 0) return;
  const lines = `${r.stdout}\n${r.stderr}`
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^WARNING: Location .* is ignored/.test(l));
  const rejected = lines.filter((l) => !/didn't pass validation: Port \d+ is already in use\.?$/.test(l));
  if (rejected.length)
    refuse(
      `Patroni ${v} rejects ${patroniConfigPath(inv)}: ${rejected.join('; ')}. Nothing was switched; ` +
        `fix the configuration (runbooks/README.md, "Patroni upgrade") and run again`,
    );
}
