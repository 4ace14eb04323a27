/**
 * The lab's acceptance checks, through the same doors a user has: OpenSSH's client against the
 * Proxmox stand-in (host key pinned in a known_hosts file, key-only), `pct` with Proxmox's syntax,
 * and `npx pgha lab ...`, on the lab of PGHA_LAB_INVENTORY (default runbooks/clusters/lab.yaml): CT
 * ids, names and addresses come from it. Faults are injected into the second HAProxy CT (haproxy2,
 * 101 in lab.yaml) and undone before the test ends. Skips only when the lab is not up. (Tear-down
 * is checked by hand: `pgha lab down` would take the lab from the tests that follow.)
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_INVENTORY, readLabInventory } from '../../lab/inventory';
import { labNotUpReason } from '../../lab/testing';
import { CLIENT_KEY, FINGERPRINT_FILE, HOST_KEY } from '../../lab/sshd';

const notUp = labNotUpReason();
// Outside CI the lab tests skip when the lab is down; CI brings the lab up, so there it must be up.
const skip = process.env.CI ? false : notUp;

void it(
  'the lab is up (required in CI, where .ci/run brings it up)',
  { skip: !process.env.CI && notUp },
  () => {
    assert.equal(notUp, undefined);
  },
);
const repo = join(__dirname, '..', '..');
const LAB = process.env.PGHA_LAB_INVENTORY ?? DEFAULT_INVENTORY;
const lab = readLabInventory(LAB);
const byRole = (role: string) => lab.nodes.filter((n) => n.role === role);
/** The CTs the checks use (lab.yaml: 100 haproxy1, 101 haproxy2, 103 pg103, 104 pg104, 110/111 etcd2/3). */
const [hp1, hp2] = byRole('haproxy');
const [, pgA, pgB] = byRole('postgres');
const [, etcdB, etcdC] = byRole('etcd');
const FAULT_CT = hp2!.vmid;

interface Out {
  code: number;
  stdout: string;
  stderr: string;
}

function sh(cmd: string, args: string[], input?: string, timeoutMs = 60_000): Out {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8', timeout: timeoutMs, cwd: repo });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

let knownHosts = '';
let tmp = '';

/** `ssh root@10.213.50.1 <remote command>` with the lab key, the host key pinned, no fallbacks. */
function ssh(remote: string, input?: string): Out {
  const { host, port } = readLabInventory(LAB).proxmox;
  return sh(
    'ssh',
    [
      '-p',
      String(port),
      '-i',
      CLIENT_KEY,
      '-o',
      'BatchMode=yes',
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      `UserKnownHostsFile=${knownHosts}`,
      '-o',
      'ConnectTimeout=10',
      `root@${host}`,
      remote,
    ],
    input,
  );
}

/** `npx pgha <args>`; `lab` commands get this lab's inventory. */
function pgha(...args: string[]): Out {
  const argv = args[0] === 'lab' ? ['lab', '--inventory', LAB, ...args.slice(1)] : args;
  return sh('npx', ['pgha', ...argv], undefined, 300_000);
}

/** Is a TCP port on `ip` answered (open or refused) from inside a CT, or does it go unanswered? */
function reachable(fromVmid: number, ip: string): boolean {
  const probe = `import socket; s = socket.socket(); s.settimeout(1.5); print(s.connect_ex(("${ip}", 9)))`;
  const r = ssh(`pct exec ${fromVmid} -- python3 -c '${probe}'`);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim() === '111'; // ECONNREFUSED: the peer answered with a RST
}

void describe('the lab, as a user meets it', { skip }, () => {
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'pgha-lab-test-'));
    knownHosts = join(tmp, 'known_hosts');
    const { host, port } = readLabInventory(LAB).proxmox;
    writeFileSync(knownHosts, `[${host}]:${port} ${readFileSync(`${HOST_KEY}.pub`, 'utf8')}`);
  });
  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  void it('publishes the fingerprint of the key its sshd presents', () => {
    const fp = readFileSync(FINGERPRINT_FILE, 'utf8').trim();
    assert.match(fp, /^SHA256:[A-Za-z0-9+/]{43}$/);
    const r = sh('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${HOST_KEY}.pub`]);
    assert.ok(r.stdout.includes(fp));
    // and the sshd presents exactly that key: ssh with StrictHostKeyChecking=yes succeeds
    assert.equal(ssh('true').code, 0);
  });

  void it(`ssh … pct exec ${pgA!.vmid} -- hostname prints ${pgA!.hostname}`, () => {
    const r = ssh(`pct exec ${pgA!.vmid} -- hostname`);
    assert.deepEqual([r.code, r.stdout, r.stderr], [0, `${pgA!.hostname}\n`, '']);
  });

  void it('pct exec passes stdin, stdout, stderr and the exit status through', () => {
    const r = ssh(`pct exec ${pgB!.vmid} -- sh -c 'cat; echo to-stderr >&2; exit 7'`, 'from stdin\n');
    assert.deepEqual([r.code, r.stdout, r.stderr], [7, 'from stdin\n', 'to-stderr\n']);
  });

  void it(`pct config ${pgA!.vmid} | grep ip= shows ${pgA!.ip}`, () => {
    const r = ssh(`pct config ${pgA!.vmid} | grep ip=`);
    assert.equal(r.code, 0);
    assert.match(
      r.stdout,
      new RegExp(
        `^net0: name=eth0,bridge=pglab0,hwaddr=BC:24:11:[0-9A-F:]{8},ip=${pgA!.ip.replace(/\./g, '\\.')}/24,type=veth$`,
        'm',
      ),
    );
    assert.match(ssh(`pct config ${etcdC!.vmid}`).stdout, new RegExp(`^hostname: ${etcdC!.hostname}$`, 'm'));
  });

  void it('pct push writes a file with the requested mode and owner; pct pull reads it back', () => {
    const src = `/tmp/pgha-push-src-${process.pid}`;
    const back = `/tmp/pgha-pull-${process.pid}`;
    try {
      assert.equal(ssh(`printf 'x=1\\n' > ${src}`).code, 0);
      const r = ssh(`pct push ${pgA!.vmid} ${src} /tmp/pushed.conf --perms 0640 --user root --group daemon`);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(
        ssh(`pct exec ${pgA!.vmid} -- stat -c '%a %U %G' /tmp/pushed.conf`).stdout,
        '640 root daemon\n',
      );
      assert.equal(ssh(`pct pull ${pgA!.vmid} /tmp/pushed.conf ${back} --perms 0600`).code, 0);
      assert.equal(readFileSync(back, 'utf8'), 'x=1\n');
      assert.equal(sh('stat', ['-c', '%a', back]).stdout, '600\n');
    } finally {
      ssh(`rm -f ${src} ${back}; pct exec ${pgA!.vmid} -- rm -f /tmp/pushed.conf`);
    }
  });

  void it('pct exec 999 -- true fails as on Proxmox', () => {
    const r = ssh('pct exec 999 -- true');
    assert.equal(r.code, 255);
    assert.match(r.stderr, /^Configuration file 'nodes\/[^/]+\/lxc\/999\.conf' does not exist$/m);
    assert.equal(ssh('pct status 999').code, 255);
  });

  void it(`pct list and pct status show the ${lab.nodes.length} CTs running`, () => {
    const r = ssh('pct list');
    assert.equal(r.code, 0);
    const rows = r.stdout.trim().split('\n');
    assert.match(rows[0]!, /^VMID\s+Status\s+Lock\s+Name/);
    const inv = readLabInventory(LAB);
    // Other lab inventories may have CTs on the same host: this inventory's are listed, running.
    const mine = new Set(inv.nodes.map((n) => String(n.vmid)));
    assert.deepEqual(
      rows
        .slice(1)
        .map((l) => l.trim().split(/\s+/))
        .filter((r) => mine.has(r[0]!)),
      inv.nodes.map((n) => [String(n.vmid), 'running', n.hostname]),
    );
    assert.equal(ssh(`pct status ${etcdB!.vmid}`).stdout, 'status: running\n');
  });

  void it('pgha lab status: one line per CT with IP, state and systemd state, and the ssh endpoint', () => {
    const r = pgha('lab', 'status');
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const inv = readLabInventory(LAB);
    for (const n of inv.nodes) {
      assert.match(
        r.stdout,
        new RegExp(
          `^${n.vmid}\\s+${n.hostname}\\s+${n.ip.replace(/\./g, '\\.')}\\s+running\\s+running\\b`,
          'm',
        ),
      );
    }
    assert.ok(r.stdout.includes(readFileSync(FINGERPRINT_FILE, 'utf8').trim()));
    assert.ok(
      r.stdout.includes(
        `ssh -p ${lab.proxmox.port} -i /var/lib/pgha-lab/ssh/id_ed25519 root@${lab.proxmox.host}`,
      ),
      r.stdout,
    );
  });

  void it('every CT has its own machine-id and hostname, and the offline packages read-only', () => {
    const ids = new Set<string>();
    for (const n of readLabInventory(LAB).nodes) {
      const r = ssh(
        `pct exec ${n.vmid} -- sh -c 'cat /etc/machine-id; hostname; test -f /opt/pgha-offline/MANIFEST.json && ! touch /opt/pgha-offline/x 2>/dev/null && echo ro'`,
      );
      const [id, hostname, ro] = r.stdout.trim().split('\n');
      assert.match(id ?? '', /^[0-9a-f]{32}$/);
      ids.add(id!);
      assert.equal(hostname, n.hostname);
      assert.equal(ro, 'ro', `CT ${n.vmid}: /opt/pgha-offline missing or writable`);
    }
    assert.equal(ids.size, readLabInventory(LAB).nodes.length);
  });

  void it('the CTs reach each other and the host on 10.213.50.0/24, and have no route elsewhere', () => {
    assert.ok(reachable(hp1!.vmid, etcdC!.ip));
    assert.ok(reachable(hp1!.vmid, lab.proxmox.host));
    const r = ssh(`pct exec ${hp1!.vmid} -- ip -4 route`);
    assert.equal(r.stdout.trim(), `${lab.subnet} dev eth0 proto kernel scope link src ${hp1!.ip}`);
  });

  void it('lab up on a running lab changes nothing', () => {
    const pid = () =>
      sh('lxc-info', ['-n', String(pgA!.vmid), '-P', '/var/lib/pgha-lab/lxc', '-p', '-H']).stdout.trim();
    const before = pid();
    const r = pgha('lab', 'up');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^lab up in [\\d.]+ s: ${lab.nodes.length} CTs running`));
    assert.equal(r.stdout.trim().split('\n').length, 1, `up did something: ${r.stdout}`);
    assert.equal(pid(), before, `CT ${pgA!.vmid} was restarted`);
  });

  void it('fault partition/heal cuts a CT off the bridge and back', () => {
    try {
      assert.ok(reachable(hp1!.vmid, hp2!.ip));
      assert.equal(pgha('lab', 'fault', 'partition', String(FAULT_CT)).code, 0);
      assert.equal(reachable(hp1!.vmid, hp2!.ip), false, 'still reachable while partitioned');
      assert.match(pgha('lab', 'status').stdout, new RegExp(`^${FAULT_CT}\\s.*\\spartitioned$`, 'm'));
    } finally {
      assert.equal(pgha('lab', 'fault', 'heal', String(FAULT_CT)).code, 0);
    }
    assert.ok(reachable(hp1!.vmid, hp2!.ip), 'not reachable after heal');
  });

  void it('fault kill kills a service inside a CT', () => {
    const unit = 'pgha-fault-test';
    assert.equal(ssh(`pct exec ${FAULT_CT} -- systemd-run --unit ${unit} sleep 600`).code, 0);
    try {
      assert.equal(ssh(`pct exec ${FAULT_CT} -- systemctl is-active ${unit}`).stdout, 'active\n');
      const r = pgha('lab', 'fault', 'kill', String(FAULT_CT), unit);
      assert.equal(r.code, 0, r.stderr);
      let state = '';
      for (let i = 0; i < 20 && state !== 'failed\n'; i++) {
        state = ssh(`pct exec ${FAULT_CT} -- systemctl is-active ${unit}`).stdout;
      }
      assert.equal(state, 'failed\n');
      assert.notEqual(pgha('lab', 'fault', 'kill', String(FAULT_CT), 'no-such-unit-pgha').code, 0);
    } finally {
      ssh(
        `pct exec ${FAULT_CT} -- sh -c 'systemctl stop ${unit}; systemctl reset-failed ${unit}' 2>/dev/null`,
      );
    }
  });

  void it('fault stop-ct hard-stops a CT; pct start brings it back', () => {
    try {
      assert.equal(pgha('lab', 'fault', 'stop-ct', String(FAULT_CT)).code, 0);
      assert.equal(ssh(`pct status ${FAULT_CT}`).stdout, 'status: stopped\n');
      const r = ssh(`pct exec ${FAULT_CT} -- true`);
      assert.equal(r.code, 255);
      assert.match(r.stderr, new RegExp(`CT ${FAULT_CT} not running`));
      // push and pull work on a stopped CT, as on Proxmox
      const src = `/tmp/pgha-stopped-push-${process.pid}`;
      ssh(`printf 'while stopped\\n' > ${src}`);
      assert.equal(ssh(`pct push ${FAULT_CT} ${src} /etc/pgha-stopped-push --perms 0600`).code, 0);
      assert.equal(
        ssh(`pct pull ${FAULT_CT} /etc/pgha-stopped-push ${src}.back && cat ${src}.back`).stdout,
        'while stopped\n',
      );
      ssh(`rm -f ${src} ${src}.back`);
      assert.equal(ssh(`pct start ${FAULT_CT}`).code, 0);
      assert.equal(ssh(`pct status ${FAULT_CT}`).stdout, 'status: running\n');
      assert.equal(
        ssh(`pct exec ${FAULT_CT} -- stat -c '%a %U' /etc/pgha-stopped-push`).stdout,
        '600 root\n',
      );
      ssh(`pct exec ${FAULT_CT} -- rm -f /etc/pgha-stopped-push`);
    } finally {
      // whatever happened above, leave the lab whole (bounded: up waits at most 120 s)
      const r = pgha('lab', 'up');
      assert.equal(r.code, 0, r.stdout + r.stderr);
    }
    assert.equal(ssh(`pct exec ${FAULT_CT} -- systemctl is-system-running`).stdout, 'running\n');
  });
});
