/**
 * The Proxmox host stand-in: Debian's OpenSSH server with its own config, host key and client key
 * under /var/lib/pgha-lab/ssh, listening only on 10.213.50.1, key-only root login, and a PATH that
 * finds the lab's `pct`.
 */
import {
  copyFileSync,
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { resolve } from 'node:path';
import { LAB_HOST_IP } from './inventory';
import { BIN_DIR, LXC_PATH, SSH_DIR } from './paths';
import { daemonEnv, run, sleep, waitFor } from './sh';

export const HOST_KEY = `${SSH_DIR}/ssh_host_ed25519_key`;
export const CLIENT_KEY = `${SSH_DIR}/id_ed25519`;
export const FINGERPRINT_FILE = `${SSH_DIR}/host_key.sha256`;
const CONFIG = `${SSH_DIR}/sshd_config`;
const PIDFILE = `${SSH_DIR}/sshd.pid`;
const AUTHORIZED_KEYS = `${SSH_DIR}/authorized_keys`;
const SSHD = '/usr/sbin/sshd';
const PCT_SOURCE = resolve(__dirname, 'pct');

function writeIfChanged(path: string, content: string, mode: number): boolean {
  if (existsSync(path) && readFileSync(path, 'utf8') === content) return false;
  writeFileSync(path, content, { mode });
  chmodSync(path, mode);
  return true;
}

function ensureKeys(): void {
  mkdirSync(SSH_DIR, { recursive: true, mode: 0o700 });
  for (const [key, comment] of [
    [HOST_KEY, 'pgha-lab-host'],
    [CLIENT_KEY, 'pgha-lab-client'],
  ] as const) {
    if (!existsSync(key) || !existsSync(`${key}.pub`)) {
      run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', key], { input: 'y\n' });
    }
  }
  writeIfChanged(AUTHORIZED_KEYS, readFileSync(`${CLIENT_KEY}.pub`, 'utf8'), 0o600);
  const out = run('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${HOST_KEY}.pub`]).stdout;
  const fp = /SHA256:[A-Za-z0-9+/]+/.exec(out)?.[0];
  if (!fp) throw new Error(`cannot read the fingerprint of ${HOST_KEY}.pub: ${out}`);
  writeIfChanged(FINGERPRINT_FILE, `${fp}\n`, 0o644);
}

export function hostKeyFingerprint(): string | undefined {
  return existsSync(FINGERPRINT_FILE) ? readFileSync(FINGERPRINT_FILE, 'utf8').trim() : undefined;
}

/** The lab's `pct`, copied next to the sshd state so a session finds it on PATH. */
function installPct(): void {
  mkdirSync(BIN_DIR, { recursive: true, mode: 0o755 });
  const target = `${BIN_DIR}/pct`;
  if (!existsSync(target) || !readFileSync(target).equals(readFileSync(PCT_SOURCE))) {
    copyFileSync(PCT_SOURCE, `${target}.new`);
    chmodSync(`${target}.new`, 0o755);
    run('mv', ['-f', `${target}.new`, target]);
  }
}

function renderConfig(port: number): string {
  return [
    '# pgha lab: the Proxmox host stand-in (written by `pgha lab up`; removed by `pgha lab down`)',
    `ListenAddress ${LAB_HOST_IP}`,
    `Port ${port}`,
    `HostKey ${HOST_KEY}`,
    `PidFile ${PIDFILE}`,
    `AuthorizedKeysFile ${AUTHORIZED_KEYS}`,
    'AllowUsers root',
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'PrintMotd no',
    'PermitUserEnvironment no',
    // PATH finds the lab's pct. SHLVL=1 keeps bash from sourcing root's ~/.bashrc for every command
    // (it does so for sshd's top-level shells; this machine's pyenv init there costs ~100 ms).
    `SetEnv PATH=${BIN_DIR}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PGHA_LAB_LXCPATH=${LXC_PATH} SHLVL=1`,
    // pgha multiplexes many `pct exec` channels over one connection.
    'MaxSessions 64',
    'MaxStartups 64:30:128',
    'ClientAliveInterval 30',
    'Subsystem sftp /usr/lib/openssh/sftp-server',
    '',
  ].join('\n');
}

/** The pid of the lab's sshd, if it runs (checked against /proc, not just the pidfile). */
export function sshdPid(): number | undefined {
  if (!existsSync(PIDFILE)) return undefined;
  const pid = Number(readFileSync(PIDFILE, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 1) return undefined;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(CONFIG) ? pid : undefined;
  } catch {
    return undefined;
  }
}

function listening(port: number): boolean {
  const out = run('ss', ['-Hltn', 'src', LAB_HOST_IP, 'sport', `= :${port}`]).stdout;
  return out.trim() !== '';
}

/** Keys, config, pct and a running sshd; a no-op when all are in place. Returns what it did. */
export function ensureSshd(port: number): string {
  ensureKeys();
  installPct();
  const changed = writeIfChanged(CONFIG, renderConfig(port), 0o600);
  let pid = sshdPid();
  if (pid !== undefined && !changed && listening(port)) return 'running';
  if (pid !== undefined) stopSshd();
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 }); // sshd's privilege separation directory
  run(SSHD, ['-t', '-f', CONFIG]);
  run(SSHD, ['-f', CONFIG], { env: daemonEnv() });
  pid = waitFor('the lab sshd to listen', 10_000, 100, () =>
    sshdPid() !== undefined && listening(port) ? sshdPid() : undefined,
  );
  return `started (pid ${pid})`;
}

/** All descendants of `pid` (sessions of the lab sshd and the pct commands they run). */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may contain spaces and parentheses.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // the process exited meanwhile
    }
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    for (const child of children.get(queue.shift()!) ?? []) {
      out.push(child);
      queue.push(child);
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stop the lab sshd and every session it started; bounded (SIGTERM, then SIGKILL after 5 s). */
export function stopSshd(): void {
  const pid = sshdPid();
  if (pid === undefined) return;
  const all = [pid, ...descendants(pid)];
  for (const p of all) if (alive(p)) process.kill(p, 'SIGTERM');
  const deadline = Date.now() + 5_000;
  while (all.some(alive) && Date.now() < deadline) sleep(100);
  for (const p of all) if (alive(p)) process.kill(p, 'SIGKILL');
}
