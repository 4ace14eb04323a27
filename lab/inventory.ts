/**
 * The part of runbooks/clusters/lab.yaml the lab needs: the CTs (vmid, hostname, IP, role), the
 * subnet and the Proxmox stand-in's address. Read with `yaml` and checked here by hand, so the lab
 * does not depend on the full inventory schema. The lab refuses any address outside its subnet
 * 10.213.50.0/24: it never creates or reaches anything else.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse } from 'yaml';

export const LAB_SUBNET = '10.213.50.0/24';
export const LAB_PREFIX = '10.213.50.';
export const LAB_HOST_IP = '10.213.50.1';

export interface LabNode {
  vmid: number;
  hostname: string;
  ip: string;
  role: string;
}

export interface LabInventory {
  file: string;
  cluster: string;
  subnet: string;
  proxmox: { host: string; port: number; user: string };
  nodes: LabNode[];
  /** backup.storage.hostDir: the host directory `pgha lab up` makes for the backup CT's storage. */
  backupHostDir?: string;
}

export const DEFAULT_INVENTORY = resolve(__dirname, '..', 'runbooks', 'clusters', 'lab.yaml');

function fail(file: string, field: string, message: string): never {
  throw new Error(`${file}: ${field}: ${message}`);
}

function isLabAddress(ip: unknown): ip is string {
  if (typeof ip !== 'string' || !ip.startsWith(LAB_PREFIX)) return false;
  const last = Number(ip.slice(LAB_PREFIX.length));
  return /^\d{1,3}$/.test(ip.slice(LAB_PREFIX.length)) && last >= 1 && last <= 254;
}

export function readLabInventory(file = DEFAULT_INVENTORY): LabInventory {
  let doc: unknown;
  try {
    doc = parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file}: cannot read the lab inventory: ${(err as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null) fail(file, '(root)', 'expected a mapping');
  const d = doc as Record<string, unknown>;

  const subnet = d.subnet;
  if (subnet !== LAB_SUBNET) {
    fail(file, 'subnet', `the lab only uses ${LAB_SUBNET} (found ${JSON.stringify(subnet)})`);
  }
  const px = (d.proxmox ?? {}) as Record<string, unknown>;
  if (px.host !== LAB_HOST_IP) {
    fail(
      file,
      'proxmox.host',
      `the lab's Proxmox stand-in listens on ${LAB_HOST_IP} (found ${JSON.stringify(px.host)})`,
    );
  }
  const port = px.port ?? 2222;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    fail(file, 'proxmox.port', `expected a TCP port number (found ${JSON.stringify(port)})`);
  }
  const user = px.user ?? 'root';
  if (user !== 'root') fail(file, 'proxmox.user', 'the lab stand-in only accepts root, as pct needs');

  const groups = d.nodes;
  if (typeof groups !== 'object' || groups === null || Array.isArray(groups)) {
    fail(file, 'nodes', 'expected a mapping of role → list of { vmid, hostname, ip }');
  }
  const nodes: LabNode[] = [];
  for (const [role, list] of Object.entries(groups as Record<string, unknown>)) {
    if (!Array.isArray(list)) fail(file, `nodes.${role}`, 'expected a list of { vmid, hostname, ip }');
    list.forEach((raw: unknown, i) => {
      const where = `nodes.${role}[${i}]`;
      const n = (raw ?? {}) as Record<string, unknown>;
      if (typeof n.vmid !== 'number' || !Number.isInteger(n.vmid) || n.vmid < 100 || n.vmid > 999999999) {
        fail(
          file,
          `${where}.vmid`,
          `expected a Proxmox CT id (integer ≥ 100), found ${JSON.stringify(n.vmid)}`,
        );
      }
      if (typeof n.hostname !== 'string' || !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(n.hostname)) {
        fail(file, `${where}.hostname`, `expected a DNS label, found ${JSON.stringify(n.hostname)}`);
      }
      if (!isLabAddress(n.ip) || n.ip === LAB_HOST_IP) {
        fail(
          file,
          `${where}.ip`,
          `expected an address in ${LAB_SUBNET} other than ${LAB_HOST_IP}, found ${JSON.stringify(n.ip)}`,
        );
      }
      nodes.push({ vmid: n.vmid, hostname: n.hostname, ip: n.ip, role });
    });
  }
  if (nodes.length === 0) fail(file, 'nodes', 'the lab needs at least one CT');
  for (const key of ['vmid', 'hostname', 'ip'] as const) {
    const seen = new Set<unknown>();
    for (const n of nodes) {
      if (seen.has(n[key])) fail(file, 'nodes', `duplicate ${key} ${String(n[key])}`);
      seen.add(n[key]);
    }
  }
  nodes.sort((a, b) => a.vmid - b.vmid);
  const cluster = typeof d.cluster === 'string' ? d.cluster : 'lab';
  const storage = ((d.backup ?? {}) as { storage?: { hostDir?: unknown } }).storage ?? {};
  const hostDir = storage.hostDir;
  if (
    hostDir !== undefined &&
    (typeof hostDir !== 'string' || !/^\/[A-Za-z0-9._+@,=/-]+$/.test(hostDir) || hostDir.includes('..'))
  )
    fail(file, 'backup.storage.hostDir', `expected an absolute path, found ${JSON.stringify(hostDir)}`);
  return {
    file,
    cluster,
    subnet: LAB_SUBNET,
    proxmox: { host: LAB_HOST_IP, port, user: 'root' },
    nodes,
    ...(hostDir ? { backupHostDir: hostDir } : {}),
  };
}
