/**
 * Real etcd members on loopback for tests: Debian's etcd-server binary (unpacked by
 * scripts/test-services), random ports on 127.0.0.1, a temporary data directory per member.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Proc, freePort, toolPath, waitFor } from './local-common';

export interface LocalEtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  proc: Proc;
}

export interface LocalEtcdCluster {
  members: LocalEtcdMember[];
  /** Client URLs of every member, e.g. http://127.0.0.1:41234 */
  endpoints: string[];
  /** Stops one member hard (SIGKILL), as a crashed node. */
  kill(name: string): Promise<void>;
  stop(): Promise<void>;
}

async function healthy(clientUrl: string): Promise<boolean> {
  const res = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(1000) });
  const body = (await res.json()) as { health?: string };
  return res.ok && body.health === 'true';
}

type StartOptions = Parameters<typeof startOnce>[1];

/**
 * Starts an n-member etcd cluster on loopback and waits (bounded) until every member is healthy.
 * A free port can be taken between freePort() and etcd's bind (an outgoing connection's ephemeral
 * port, on a busy machine): with ports of its own choosing, that start is retried on new ports
 * (3 tries at most); any other failure is thrown at once.
 */
export async function startLocalEtcd(n = 1, opts: StartOptions = {}): Promise<LocalEtcdCluster> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(n, opts);
    } catch (err) {
      const raced = /address already in use/.test(String((err as Error).message));
      if (!raced || opts.clientPort !== undefined || opts.peerPort !== undefined || attempt >= 3) throw err;
    }
  }
}

async function startOnce(
  n: number,
  opts: {
    timeoutMs?: number;
    /** One loopback address per member (e.g. 127.0.0.51); default 127.0.0.1 with distinct ports. */
    hosts?: string[];
    /** Fixed ports (with distinct `hosts`); default free ports. */
    clientPort?: number;
    peerPort?: number;
  } = {},
): Promise<LocalEtcdCluster> {
  const etcd = toolPath('etcd-server', 'usr', 'bin', 'etcd');
  const dataRoot = await mkdtemp(join(tmpdir(), 'pgha-etcd-'));
  const specs: { name: string; host: string; clientPort: number; peerPort: number }[] = [];
  for (let i = 1; i <= n; i++) {
    specs.push({
      name: `etcd${i}`,
      host: opts.hosts?.[i - 1] ?? '127.0.0.1',
      clientPort: opts.clientPort ?? (await freePort()),
      peerPort: opts.peerPort ?? (await freePort()),
    });
  }
  const initialCluster = specs.map((s) => `${s.name}=http://${s.host}:${s.peerPort}`).join(',');
  const members: LocalEtcdMember[] = specs.map((s) => {
    const clientUrl = `http://${s.host}:${s.clientPort}`;
    const peerUrl = `http://${s.host}:${s.peerPort}`;
    const proc = new Proc(s.name, etcd, [
      `--name=${s.name}`,
      `--data-dir=${join(dataRoot, s.name)}`,
      `--listen-client-urls=${clientUrl}`,
      `--advertise-client-urls=${clientUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=${initialCluster}`,
      '--initial-cluster-state=new',
      '--initial-cluster-token=pgha-test',
      '--heartbeat-interval=50',
      '--election-timeout=500',
      '--log-level=warn',
    ]);
    return { name: s.name, clientUrl, peerUrl, proc };
  });
  const cluster: LocalEtcdCluster = {
    members,
    endpoints: members.map((m) => m.clientUrl),
    async kill(name) {
      const m = members.find((x) => x.name === name);
      if (!m) throw new Error(`no local etcd member ${name}`);
      await m.proc.kill();
    },
    async stop() {
      await Promise.all(members.map((m) => m.proc.stop()));
      await rm(dataRoot, { recursive: true, force: true });
    },
  };
  try {
    for (const m of members) {
      await waitFor(
        `local etcd member ${m.name} at ${m.clientUrl} to be healthy`,
        opts.timeoutMs ?? 20_000,
        async () => {
          if (!m.proc.running) throw new Error(`etcd exited: ${m.proc.output()}`);
          return healthy(m.clientUrl);
        },
      );
    }
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}
