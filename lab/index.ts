/**
 * The local Proxmox lab: `pgha lab up | down | status | reset | fault ...`.
 *
 * `up` converges the machine to the lab described by runbooks/clusters/lab.yaml: caches (base
 * rootfs, offline packages) → bridge → the Proxmox stand-in's sshd and pct → one CT per node,
 * started and waited for until systemd is `running`. Each step checks before it acts, so `up` on a
 * running lab changes nothing and `up` after a crash half-way finishes the job. `down` removes
 * everything `up` made except the machine-wide caches.
 */
import { existsSync, mkdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  destroy,
  ensureContainer,
  hardStop,
  labVmids,
  ctState,
  start,
  systemState,
  waitBooted,
} from './containers';
import type { LabInventory, LabNode } from './inventory';
import { LAB_HOST_IP, readLabInventory } from './inventory';
import { bridgeExists, ensureBridge, heal, linkState, partition, removeBridge } from './network';
import { BRIDGE, CACHE_DIR, LAB_DIR, LXC_PATH } from './paths';
import { run, sleep } from './sh';
import { CLIENT_KEY, ensureSshd, hostKeyFingerprint, sshdPid, stopSshd } from './sshd';

export interface LabOptions {
  /** The lab inventory (default runbooks/clusters/lab.yaml). */
  inventory?: string;
  log?: (line: string) => void;
  /**
   * `up`: also remove lab CTs that are not in this inventory. Off by default, so several lab
   * inventories (other vmids and addresses on the same bridge) can run side by side.
   */
  prune?: boolean;
}

const defaultLog = (line: string) => process.stdout.write(`${line}\n`);

function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error('the lab manages LXC containers, a bridge and an sshd: run it as root');
  }
}

const LOCK = '/run/pgha-lab.lock';

/**
 * One lab operation at a time on this machine (CI, a developer and tests may overlap): a lock
 * directory holding the owner's pid; a dead owner's lock is taken over. Waits at most 10 minutes.
 */
function withLock<T>(what: string, fn: () => T): T {
  const deadline = Date.now() + 600_000;
  for (;;) {
    try {
      mkdirSync(LOCK);
      writeFileSync(`${LOCK}/pid`, String(process.pid));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let pidText = '';
      try {
        pidText = readFileSync(`${LOCK}/pid`, 'utf8');
      } catch {
        // not written yet, or released meanwhile
      }
      const owner = Number(pidText);
      let stale: boolean;
      if (Number.isInteger(owner) && owner > 0) {
        try {
          stale = !process.kill(owner, 0);
        } catch {
          stale = true; // its owner died mid-operation
        }
      } else {
        // just created, pid not yet written; stale only if it stays so
        try {
          stale = Date.now() - statSync(LOCK).mtimeMs > 10_000;
        } catch {
          stale = false; // released meanwhile: try again
        }
      }
      if (stale) {
        rmSync(LOCK, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline)
        throw new Error(`lab ${what}: another lab operation holds ${LOCK} (pid ${owner})`);
      sleep(200);
    }
  }
  try {
    return fn();
  } finally {
    rmSync(LOCK, { recursive: true, force: true });
  }
}

function elapsed(t0: number): string {
  return `${((Date.now() - t0) / 1000).toFixed(1)} s`;
}

/** Run lab/bootstrap (idempotent; quiet when cached) and return the cached base and offline dirs. */
function prepareCaches(): { base: string; offline: string; barman: string } {
  // Its progress goes straight to the terminal: a cold build takes minutes.
  run(resolve(__dirname, 'bootstrap'), ['--quiet'], { inherit: true, timeoutMs: 3_600_000 });
  return {
    base: realpathSync(`${CACHE_DIR}/lab-base`),
    offline: realpathSync(`${CACHE_DIR}/offline`),
    barman: realpathSync(`${CACHE_DIR}/barman`),
  };
}

function findNode(inv: LabInventory, vmid: number): LabNode {
  const node = inv.nodes.find((n) => n.vmid === vmid);
  if (!node) {
    throw new Error(`CT ${vmid} is not in ${inv.file} (lab CTs: ${inv.nodes.map((n) => n.vmid).join(' ')})`);
  }
  return node;
}

export function up(opts: LabOptions = {}): void {
  requireRoot();
  withLock('up', () => converge(opts));
}

function converge(opts: LabOptions): void {
  const log = opts.log ?? defaultLog;
  const t0 = Date.now();
  const inv = readLabInventory(opts.inventory);
  const { base, offline, barman } = prepareCaches();
  // The backup storage a backup CT gets with `pct set -mpN` (a Proxmox site provides its own).
  if (inv.backupHostDir) mkdirSync(inv.backupHostDir, { recursive: true, mode: 0o755 });

  ensureBridge();
  const sshd = ensureSshd(inv.proxmox.port);
  if (sshd !== 'running') log(`sshd ${sshd} on ${LAB_HOST_IP}:${inv.proxmox.port}`);

  const wanted = new Set(inv.nodes.map((n) => n.vmid));
  for (const vmid of opts.prune ? labVmids() : []) {
    if (!wanted.has(vmid)) {
      destroy(vmid);
      log(`CT ${vmid}: removed (no longer in ${inv.file})`);
    }
  }
  const startedNow = new Set<number>();
  for (const node of inv.nodes) {
    const outcome = ensureContainer(node, base, offline, barman);
    if (outcome !== 'unchanged') log(`CT ${node.vmid} (${node.hostname}): ${outcome}`);
    if (ctState(node.vmid) !== 'running') {
      start(node.vmid);
      startedNow.add(node.vmid);
      log(`CT ${node.vmid} (${node.hostname}): started`);
    } else if (linkState(node.vmid) === 'partitioned') {
      heal(node.vmid);
      log(`CT ${node.vmid} (${node.hostname}): partition healed`);
    }
  }
  // A CT started now must boot clean; one that was running already may have a failed service of
  // the cluster in it (a test's fault, a broken deploy): that is reported, and `up` still succeeds.
  for (const [vmid, r] of waitBooted(inv.nodes.map((n) => n.vmid))) {
    if (r.state === 'running') continue;
    const why = `CT ${vmid}: systemd is ${r.state}; failed units: ${r.failed}`;
    if (startedNow.has(vmid)) throw new Error(`${why} (see: pct exec ${vmid} -- systemctl --failed)`);
    log(`warning: ${why}`);
  }
  log(
    `lab up in ${elapsed(t0)}: ${inv.nodes.length} CTs running on ${BRIDGE} ${inv.subnet}; ` +
      `Proxmox stand-in root@${LAB_HOST_IP}:${inv.proxmox.port} host key ${hostKeyFingerprint()}`,
  );
}

/** Destroy the CTs and make them again from the base: a fresh lab in seconds (bridge and sshd stay). */
export function reset(opts: LabOptions = {}): void {
  requireRoot();
  const log = opts.log ?? defaultLog;
  withLock('reset', () => {
    const t0 = Date.now();
    const labInv = readLabInventory(opts.inventory);
    const mine = new Set(labInv.nodes.map((n) => n.vmid));
    for (const vmid of labVmids()) if (mine.has(vmid)) destroy(vmid);
    // The backup CT's storage goes with it: a fresh cluster has a new system identifier, and the
    // old cluster's Barman state there would keep receive-wal from starting (converge makes it again).
    const storage = labInv.backupHostDir;
    if (storage?.startsWith(`${LAB_DIR}/`)) rmSync(storage, { recursive: true, force: true });
    log(`CTs ${[...mine].join(' ')} destroyed in ${elapsed(t0)}`);
    converge({ ...opts, log });
  });
}

/** Lab mounts left behind by a crash (a CT's mounts normally live in its own namespace). */
function labMounts(): string[] {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .map((m) => m.replace(/\\040/g, ' '))
    .filter((m) => m === LAB_DIR || m.startsWith(`${LAB_DIR}/`))
    .reverse();
}

export function down(opts: LabOptions = {}): void {
  requireRoot();
  withLock('down', () => removeAll(opts));
}

function removeAll(opts: LabOptions): void {
  const log = opts.log ?? defaultLog;
  const t0 = Date.now();
  // With an inventory (`pgha lab -i FILE down`): only its CTs. Several labs share this machine's
  // bridge, sshd and LAB_DIR (secrets, backup storage): they go only with the last CT. Before this,
  // `-i FILE down` removed every lab's CTs and LAB_DIR whatever FILE said.
  if (opts.inventory) {
    const mine = new Set(readLabInventory(opts.inventory).nodes.map((n) => n.vmid));
    const gone = labVmids().filter((v) => mine.has(v));
    for (const vmid of gone) destroy(vmid);
    const others = labVmids();
    if (others.length > 0) {
      log(
        `CTs ${gone.join(' ') || '(none)'}: stopped and removed in ${elapsed(t0)}; ` +
          `bridge, sshd and ${LAB_DIR} kept for the other lab CTs (${others.join(' ')})`,
      );
      return;
    }
  }
  const vmids = labVmids();
  for (const vmid of vmids) destroy(vmid);
  if (vmids.length > 0) log(`CTs ${vmids.join(' ')}: stopped and removed`);
  if (sshdPid() !== undefined) {
    stopSshd();
    log('sshd stopped');
  }
  if (bridgeExists()) {
    removeBridge();
    log(`bridge ${BRIDGE} removed`);
  }
  for (const m of labMounts()) run('umount', ['-l', m]);
  rmSync(LAB_DIR, { recursive: true, force: true });
  const left = [
    bridgeExists() && `bridge ${BRIDGE}`,
    sshdPid() !== undefined && 'sshd',
    existsSync(LAB_DIR) && LAB_DIR,
  ].filter(Boolean);
  if (left.length > 0) throw new Error(`lab down left behind: ${left.join(', ')}`);
  log(`lab down in ${elapsed(t0)} (caches kept in ${CACHE_DIR})`);
}

export interface CtStatus {
  vmid: number;
  hostname: string;
  ip: string;
  state: 'running' | 'stopped' | 'absent';
  systemd: string;
  network: string;
}

export interface LabStatus {
  cts: CtStatus[];
  ssh: { host: string; port: number; user: string; key: string; fingerprint?: string; running: boolean };
  bridge: boolean;
  /** Every CT running with systemd `running` and on the bridge, and the sshd up. */
  healthy: boolean;
}

export function status(opts: LabOptions = {}): LabStatus {
  const inv = readLabInventory(opts.inventory);
  const cts = inv.nodes.map((n): CtStatus => {
    const state = ctState(n.vmid);
    return {
      vmid: n.vmid,
      hostname: n.hostname,
      ip: n.ip,
      state,
      systemd: state === 'running' ? systemState(n.vmid) : '-',
      network: state === 'running' ? linkState(n.vmid) : '-',
    };
  });
  const ssh = {
    host: LAB_HOST_IP,
    port: inv.proxmox.port,
    user: inv.proxmox.user,
    key: CLIENT_KEY,
    fingerprint: hostKeyFingerprint(),
    running: sshdPid() !== undefined,
  };
  const healthy =
    ssh.running && bridgeExists() && cts.every((c) => c.systemd === 'running' && c.network === 'attached');
  return { cts, ssh, bridge: bridgeExists(), healthy };
}

export function formatStatus(s: LabStatus): string {
  const rows = [['VMID', 'HOSTNAME', 'IP', 'STATE', 'SYSTEMD', 'NETWORK']];
  for (const c of s.cts) rows.push([String(c.vmid), c.hostname, c.ip, c.state, c.systemd, c.network]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) =>
    r
      .map((cell, i) => cell.padEnd(widths[i]!))
      .join('  ')
      .trimEnd(),
  );
  lines.push(
    `proxmox: ssh -p ${s.ssh.port} -i ${s.ssh.key} ${s.ssh.user}@${s.ssh.host}  ` +
      `sshd ${s.ssh.running ? 'running' : 'stopped'}  host key ${s.ssh.fingerprint ?? '(none)'}`,
  );
  lines.push(`bridge ${BRIDGE}: ${s.bridge ? 'up' : 'absent'}; lab ${s.healthy ? 'healthy' : 'NOT healthy'}`);
  return lines.join('\n');
}

/** Fault injection for tests: each acts on one lab CT and says what it did. */
export const fault = {
  stopCt(vmid: number, opts: LabOptions = {}): string {
    requireRoot();
    const node = findNode(readLabInventory(opts.inventory), vmid);
    if (ctState(vmid) !== 'running') return `CT ${vmid} (${node.hostname}) was not running`;
    hardStop(vmid);
    return `CT ${vmid} (${node.hostname}) hard-stopped`;
  },
  /**
   * A CT gone for good, as `pct destroy` leaves it: stopped, its config and root filesystem removed
   * (`pgha lab up` makes it again, empty, from the base: the operator's "create a fresh CT").
   */
  destroyCt(vmid: number, opts: LabOptions = {}): string {
    requireRoot();
    const node = findNode(readLabInventory(opts.inventory), vmid);
    if (ctState(vmid) === 'absent') return `CT ${vmid} (${node.hostname}) does not exist`;
    destroy(vmid);
    return `CT ${vmid} (${node.hostname}) destroyed`;
  },
  partition(vmid: number, opts: LabOptions = {}): string {
    requireRoot();
    const node = findNode(readLabInventory(opts.inventory), vmid);
    if (linkState(vmid) === 'partitioned') return `CT ${vmid} (${node.hostname}) already partitioned`;
    partition(vmid);
    return `CT ${vmid} (${node.hostname}) cut off ${BRIDGE}`;
  },
  heal(vmid: number, opts: LabOptions = {}): string {
    requireRoot();
    const node = findNode(readLabInventory(opts.inventory), vmid);
    if (linkState(vmid) === 'attached') return `CT ${vmid} (${node.hostname}) already on ${BRIDGE}`;
    heal(vmid);
    return `CT ${vmid} (${node.hostname}) back on ${BRIDGE}`;
  },
  kill(vmid: number, service: string, signal = 'SIGKILL', opts: LabOptions = {}): string {
    requireRoot();
    const node = findNode(readLabInventory(opts.inventory), vmid);
    if (ctState(vmid) !== 'running') throw new Error(`CT ${vmid} (${node.hostname}) is not running`);
    const r = run(
      'lxc-attach',
      [
        '-n',
        String(vmid),
        '-P',
        LXC_PATH,
        '--clear-env',
        '--',
        'systemctl',
        'kill',
        `--signal=${signal}`,
        '--',
        service,
      ],
      { allowFail: true, timeoutMs: 30_000 },
    );
    if (r.code !== 0) throw new Error(`CT ${vmid}: systemctl kill ${service} failed: ${r.stderr.trim()}`);
    return `CT ${vmid} (${node.hostname}): sent ${signal} to ${service}`;
  },
};
