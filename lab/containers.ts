/**
 * The lab CTs: privileged LXC containers named by their Proxmox vmid, in the lab's own lxcpath
 * (so nothing here ever touches another container on the machine), each an overlay on the cached
 * base rootfs with its own machine-id and hostname, a static address on pglab0 and the offline
 * package directory mounted read-only.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { LabNode } from './inventory';
import { vethName } from './network';
import { BARMAN_MOUNT, BRIDGE, LXC_PATH, OFFLINE_MOUNT } from './paths';
import { daemonEnv, run, sleep } from './sh';

export type CtState = 'running' | 'stopped' | 'absent';

const ctDir = (vmid: number) => `${LXC_PATH}/${vmid}`;
const configPath = (vmid: number) => `${ctDir(vmid)}/config`;
const lxc = (vmid: number, ...args: string[]) => ['-n', String(vmid), '-P', LXC_PATH, ...args];

/** Proxmox's MAC prefix (BC:24:11) and the vmid, so a CT keeps its MAC across resets. */
export function hwaddr(vmid: number): string {
  const low = [(vmid >> 16) & 0xff, (vmid >> 8) & 0xff, vmid & 0xff];
  return ['BC', '24', '11', ...low.map((x) => x.toString(16).padStart(2, '0').toUpperCase())].join(':');
}

/** The file the lab's `pct set -mpN` writes a CT's mount points into (included by its config). */
export const mountPointsPath = (vmid: number) => `${ctDir(vmid)}/mp.conf`;

/**
 * The CT's LXC config. A backup CT also gets Barman's wheels (`barman`, read-only); a CT with mount
 * points set by `pct set -mpN` includes the file holding them.
 */
export function renderConfig(node: LabNode, base: string, offline: string, barman?: string): string {
  const dir = ctDir(node.vmid);
  return [
    `# pgha lab CT ${node.vmid} (${node.role}); written by \`pgha lab up\`, read by the lab's pct`,
    'lxc.include = /usr/share/lxc/config/common.conf',
    'lxc.arch = linux64',
    `lxc.uts.name = ${node.hostname}`,
    `lxc.rootfs.path = overlay:${base}:${dir}/delta`,
    'lxc.apparmor.profile = unconfined',
    'lxc.mount.auto = proc:mixed sys:mixed cgroup:mixed',
    'lxc.autodev = 1',
    'lxc.tty.max = 0',
    'lxc.pty.max = 64',
    'lxc.net.0.type = veth',
    `lxc.net.0.link = ${BRIDGE}`,
    'lxc.net.0.name = eth0',
    'lxc.net.0.flags = up',
    `lxc.net.0.hwaddr = ${hwaddr(node.vmid)}`,
    `lxc.net.0.veth.pair = ${vethName(node.vmid)}`,
    `lxc.net.0.ipv4.address = ${node.ip}/24`,
    `lxc.mount.entry = ${offline} ${OFFLINE_MOUNT.slice(1)} none bind,ro,create=dir 0 0`,
    ...(node.role === 'backup' && barman
      ? [`lxc.mount.entry = ${barman} ${BARMAN_MOUNT.slice(1)} none bind,ro,create=dir 0 0`]
      : []),
    `lxc.log.file = ${dir}/lxc.log`,
    'lxc.log.level = WARN',
    // Last, where `pct set` appends it.
    ...(existsSync(mountPointsPath(node.vmid)) ? [`lxc.include = ${mountPointsPath(node.vmid)}`] : []),
    '',
  ].join('\n');
}

export function ctState(vmid: number): CtState {
  if (!existsSync(configPath(vmid))) return 'absent';
  const r = run('lxc-info', lxc(vmid, '-s', '-H'), { allowFail: true, timeoutMs: 10_000 });
  return r.stdout.trim() === 'RUNNING' ? 'running' : 'stopped';
}

/** The vmids of every CT in the lab's lxcpath (also ones no longer in the inventory). */
export function labVmids(): number[] {
  if (!existsSync(LXC_PATH)) return [];
  return readdirSync(LXC_PATH)
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .sort((a, b) => a - b);
}

/** Identity of a fresh CT, written into its overlay before the first boot. */
function seedIdentity(node: LabNode): void {
  const etc = `${ctDir(node.vmid)}/delta/etc`;
  mkdirSync(etc, { recursive: true });
  writeFileSync(`${etc}/machine-id`, `${randomBytes(16).toString('hex')}\n`, { mode: 0o444 });
  writeFileSync(`${etc}/hostname`, `${node.hostname}\n`);
  writeFileSync(
    `${etc}/hosts`,
    `127.0.0.1\tlocalhost\n${node.ip}\t${node.hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`,
  );
}

/**
 * Make the CT's directory, config and overlay match the inventory. An existing CT with the same
 * config is left alone; one with a different config is stopped and rewritten, and its overlay is
 * wiped when the base changed (an overlay is only valid on the lower layer it was made on).
 */
export function ensureContainer(
  node: LabNode,
  base: string,
  offline: string,
  barman?: string,
): 'created' | 'updated' | 'unchanged' {
  const desired = renderConfig(node, base, offline, barman);
  const path = configPath(node.vmid);
  const current = existsSync(path) ? readFileSync(path, 'utf8') : undefined;
  const seeded = existsSync(`${ctDir(node.vmid)}/delta/etc/machine-id`);
  if (current === desired && seeded) return 'unchanged';
  let outcome: 'created' | 'updated' = current === undefined ? 'created' : 'updated';
  if (current !== undefined) {
    if (ctState(node.vmid) === 'running') hardStop(node.vmid);
    const rootfs = (text: string) => /^lxc\.rootfs\.path = .*$/m.exec(text)?.[0];
    if (rootfs(current) !== rootfs(desired)) wipeOverlay(node.vmid);
  } else if (existsSync(ctDir(node.vmid))) {
    // A directory without a config (a crash while it was written, or a hand-deleted config): make
    // sure nothing runs on this overlay any more, then start this CT from scratch.
    run('lxc-stop', lxc(node.vmid, '-k'), { allowFail: true, timeoutMs: 60_000 });
    wipeOverlay(node.vmid);
    outcome = 'created';
  }
  mkdirSync(`${ctDir(node.vmid)}/delta`, { recursive: true, mode: 0o755 });
  if (!existsSync(`${ctDir(node.vmid)}/delta/etc/machine-id`)) seedIdentity(node);
  writeFileSync(`${path}.new`, desired);
  run('mv', ['-f', `${path}.new`, path]);
  return outcome;
}

function wipeOverlay(vmid: number): void {
  for (const d of ['delta', 'olwork']) rmSync(`${ctDir(vmid)}/${d}`, { recursive: true, force: true });
}

export function start(vmid: number): void {
  run('lxc-start', lxc(vmid), { timeoutMs: 60_000, env: daemonEnv() });
}

/** Hard stop (like `pct stop`): kill the CT's init at once. */
export function hardStop(vmid: number): void {
  if (ctState(vmid) !== 'running') return;
  run('lxc-stop', lxc(vmid, '-k'), { timeoutMs: 60_000 });
}

/** Stop and remove a CT: its config, overlay and logs. */
export function destroy(vmid: number): void {
  hardStop(vmid);
  rmSync(ctDir(vmid), { recursive: true, force: true });
}

/** `systemctl is-system-running` inside the CT ('offline' when it cannot be asked). */
export function systemState(vmid: number): string {
  const r = run('lxc-attach', lxc(vmid, '--clear-env', '--', 'systemctl', 'is-system-running'), {
    allowFail: true,
    timeoutMs: 10_000,
  });
  return r.stdout.trim() || 'offline';
}

function failedUnits(vmid: number): string {
  const r = run(
    'lxc-attach',
    lxc(vmid, '--clear-env', '--', 'systemctl', '--failed', '--no-legend', '--plain'),
    {
      allowFail: true,
      timeoutMs: 10_000,
    },
  );
  return (
    r.stdout
      .trim()
      .split('\n')
      .map((l) => l.split(/\s+/)[0])
      .filter(Boolean)
      .join(', ') || 'unknown'
  );
}

/**
 * Wait (bounded) until systemd has finished booting in every given CT, and return each CT's final
 * state: `running`, or `degraded` with the failed units named. Whoever calls decides whether
 * degraded is an error (a fresh CT must come up clean; a long-running one may have a failed service).
 */
export function waitBooted(
  vmids: number[],
  timeoutMs = 120_000,
): Map<number, { state: string; failed?: string }> {
  const pending = new Set(vmids);
  const done = new Map<number, { state: string; failed?: string }>();
  const last = new Map<number, string>();
  const deadline = Date.now() + timeoutMs;
  while (pending.size > 0) {
    for (const vmid of [...pending]) {
      const state = systemState(vmid);
      last.set(vmid, state);
      if (state === 'running') done.set(vmid, { state });
      else if (state === 'degraded') done.set(vmid, { state, failed: failedUnits(vmid) });
      else continue; // offline (bus not up yet), initializing, starting
      pending.delete(vmid);
    }
    if (pending.size === 0) break;
    if (Date.now() >= deadline) {
      const states = [...pending].map((v) => `${v}: ${last.get(v)}`).join(', ');
      throw new Error(`timed out after ${timeoutMs} ms waiting for systemd to finish booting (${states})`);
    }
    sleep(250);
  }
  return done;
}
