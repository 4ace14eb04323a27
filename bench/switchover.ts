/**
 * `npm run bench:switchover` — the write gap of a Patroni switchover behind HAProxy, four ways, in
 * one run on a deployed lab cluster (PGHA_LAB_INVENTORY, default runbooks/clusters/lab.yaml). It
 * rewrites haproxy.cfg and drops a table: it refuses, before anything, an inventory that is not a
 * lab's (subnet 10.213.50.0/24, the lab's Proxmox stand-in; lab/inventory.ts checks it).
 *
 *   seed   the seed's haproxy.cfg (GET /patroni checks, inter 3s fall 3 rise 3) + plain POST /switchover;
 *          first 30 s with no switchover, counting writes (and new connections) that reach a replica;
 *   naive  the seed's file with checks on GET /primary, inter 1s fall 2 rise 1; plain POST /switchover;
 *   pghacfg pgha's rendered HAProxy files (haproxy.cfg, its unit, the server-state file) + a plain
 *          POST /switchover and no orchestration: what the config alone gives;
 *   pghanohold pgha's rendered files with the write frontend's hold taken out (its tcp-request
 *          lines) + the runbook's activities: the same hand-off, new connections refused while no
 *          write server is usable (the comparison for the hold);
 *   pgha   pgha's rendered haproxy.cfg + the switchover runbook's activities (pre-check, the hand-off
 *          that drains the old leader and the candidate just before the POST, so HAProxy holds new
 *          write connections, and routes HAProxy the instant the candidate accepts writes,
 *          verification) — the same code the workflow runs, called in-process.
 *
 * A writer commits one row per transaction through HAProxy's write port at BENCH_RATE (default 250/s)
 * with increasing ids on one kept connection, reconnecting at once after any error. Per switchover:
 * the longest gap between acknowledged commits, failed attempts, attempts that reached a replica
 * (SQLSTATE 25006), the breakdown POST → last commit on the old leader → the candidate's /primary
 * answers 200 → first commit on the new leader, and the routing lag (the candidate's first
 * pg_is_in_recovery() = false, polled directly every 10 ms → first commit acknowledged through
 * HAProxy). After each series every acknowledged id is looked up on the final leader.
 * Writes that reach a replica are counted the same way for every config and in every window: the
 * writer runs from the moment the config is installed (HAProxy stopped, the files pushed, started:
 * its first seconds included) to the end of its last switchover.
 * BENCH_N switchovers per config (default 5, at least 5), targets rotating over the replicas.
 * pgha's HAProxy files are restored at the end, whatever happened. Every wait is bounded.
 * The writer's connect timeout is haproxy.writeHold + 2 s (what README "What clients must know"
 * asks of clients); every connect is timed: max_connect_wait_ms is the longest one of the pgha series.
 */
import { join } from 'node:path';
import { createEtcdActivities } from '../activities/etcd';
import { createHaproxyActivities, runnerFromCtExec } from '../activities/haproxy';
import { createPatroniActivities } from '../activities/patroni';
import { createPostgresActivities } from '../activities/postgres';
import { createProxmoxFactory } from '../activities/proxmox';
import type { ProxmoxHost } from '../activities/proxmox';
import { HAPROXY_CFG_PATH, renderNodeFiles, renderSeedHaproxy, writeHoldMs } from '../activities/render';
import type { RenderedFile } from '../activities/render';
import { createSwitchoverActivities } from '../activities/switchover';
import { loadInventory, resolveClusterSecrets } from '../runbooks/inventory';
import type { Inventory } from '../runbooks/schema';
import { memberByIp, memberNames, restApi, restApiAuth } from '../runbooks/topology';
import { Writer, bounded, labCluster, median, requireLabInventory, sleep, watchMember } from './common';

const root = join(__dirname, '..');
const INVENTORY = process.env.PGHA_LAB_INVENTORY ?? join(root, 'runbooks/clusters/lab.yaml');
const N = Math.max(5, Number(process.env.BENCH_N ?? 5));
const RATE = Math.max(200, Number(process.env.BENCH_RATE ?? 250));
const STEADY_MS = 30_000;
const CONFIGS = ['seed', 'naive', 'pghacfg', 'pghanohold', 'pgha'] as const;
type Config = (typeof CONFIGS)[number];
/** BENCH_ONLY=pgha (comma-separated) runs only those series (for investigating; the summary needs all five). */
const ONLY = (process.env.BENCH_ONLY ?? CONFIGS.join(',')).split(',');
const DEBUG = process.env.BENCH_DEBUG === '1';

interface Sample {
  config: Config;
  n: number;
  from: string;
  to: string;
  gapMs: number;
  failed: number;
  /** The longest connect of the window (ms). */
  maxConnectMs: number;
  toReplica: number;
  lastOldMs: number | null;
  primary200Ms: number | null;
  firstNewMs: number | null;
  writableMs: number | null;
  routingLagMs: number | null;
}

async function main() {
  requireLabInventory('bench:switchover', 'rewrites haproxy.cfg and drops tables', INVENTORY);
  const inv: Inventory = await loadInventory(INVENTORY);
  const secrets = await resolveClusterSecrets(inv);
  const proxmox = createProxmoxFactory();
  const host: ProxmoxHost = await proxmox.get(inv.proxmox);
  const patroni = createPatroniActivities();
  const postgres = createPostgresActivities();
  const etcd = createEtcdActivities();
  const haproxy = createHaproxyActivities({ runner: runnerFromCtExec(host) });
  const sw = createSwitchoverActivities({ patroni, postgres, etcd, haproxyFor: async () => haproxy });
  const { ip, user, password, sqlOn, settled } = labCluster(inv, secrets, patroni);
  const nameOf = (addr: string | undefined) => memberByIp(inv, addr) ?? addr;
  const hp = inv.nodes.haproxy[0]!;

  // Every config runs under pgha's HAProxy deployment (its unit, its all-DOWN server-state file);
  // seed and naive swap in their own haproxy.cfg, which does not load the state file.
  const pghaFiles = (h: Inventory['nodes']['haproxy'][number]) => renderNodeFiles(inv, 'haproxy', h, secrets);
  const seedCfg = renderSeedHaproxy(inv);
  const cfgOf = (c: Config, h: Inventory['nodes']['haproxy'][number]): RenderedFile[] => {
    if (c === 'pgha' || c === 'pghacfg') return pghaFiles(h);
    if (c === 'pghanohold')
      return pghaFiles(h).map((f) =>
        f.path === HAPROXY_CFG_PATH
          ? { ...f, content: f.content.replace(/^ *tcp-request (inspect-delay|content lua\.).*\n/gm, '') }
          : f,
      );
    const content =
      c === 'seed'
        ? seedCfg.content
        : seedCfg.content
            .replace('option httpchk GET /patroni', 'option httpchk GET /primary')
            .replace(/inter 3s fall 3 rise 3/g, 'inter 1s fall 2 rise 1');
    return [...pghaFiles(h).filter((f) => f.path !== HAPROXY_CFG_PATH), { ...seedCfg, content }];
  };
  /** When the current config was started on the HAProxy nodes: misroutes count from here. */
  let installedAt = 0;
  const install = async (c: Config) => {
    for (const h of inv.nodes.haproxy) {
      let unitChanged = false;
      for (const f of cfgOf(c, h)) {
        const r = await host.push(h.vmid, f.path, f.content, { mode: f.mode });
        if (r.changed && f.path.endsWith('.service')) unitChanged = true;
      }
      if (unitChanged) await host.execChecked(h.vmid, ['systemctl', 'daemon-reload'], { timeoutMs: 30_000 });
      await host.execChecked(h.vmid, ['systemctl', 'stop', 'haproxy'], { timeoutMs: 30_000 });
    }
    installedAt = Date.now();
    for (const h of inv.nodes.haproxy)
      await host.execChecked(h.vmid, ['systemctl', 'start', 'haproxy'], { timeoutMs: 30_000 });
    const l = await settled(60_000);
    // Writes through HAProxy reach the leader (the seed config may need a few tries: round robin).
    await bounded(`a write through ${hp.hostname} with the ${c} config`, 30_000, async () =>
      sqlOn(hp.ip, inv.ports.haproxyWrite, async (x) =>
        (await x.query<{ r: boolean }>('select pg_is_in_recovery() as r')).rows[0]!.r ? undefined : l,
      ),
    );
    return l;
  };

  const lines: string[] = [];
  const say = (s: string) => {
    lines.push(s);
    console.log(s);
  };
  const samples: Sample[] = [];
  let lost = 0;
  const misrouted: Record<Config, number> = { seed: 0, naive: 0, pghacfg: 0, pghanohold: 0, pgha: 0 };
  let idBase = 1;

  // Fresh table on the leader.
  const first = await settled(120_000);
  await sqlOn(ip(first), inv.ports.postgresql, (c) =>
    c.query(
      'drop table if exists pgha_bench; create table pgha_bench (id bigint primary key, at timestamptz default clock_timestamp())',
    ),
  );
  await settled(60_000);

  const series = async (config: Config) => {
    // The writer runs while the config is installed: HAProxy's first seconds count like any other.
    const writer = new Writer({
      conn: { host: hp.ip, port: inv.ports.haproxyWrite, user, password },
      table: 'pgha_bench',
      rate: RATE,
      idBase,
      connectTimeoutMs: writeHoldMs(inv) + 2000,
    });
    writer.start();
    let leader = await install(config);
    await sleep(2000);
    const atStart = writer.attempts.filter((a) => a.start >= installedAt && a.replica).length;
    say(
      `${config}: installed, leader ${leader}; ${atStart} write attempts reached a replica in HAProxy's first ${Date.now() - installedAt} ms`,
    );
    if (config === 'seed') {
      // 30 s of steady state: the writer, and a new connection every 100 ms (a client pool's way).
      const t0 = Date.now();
      let newConns = 0;
      let newToReplica = 0;
      while (Date.now() - t0 < STEADY_MS) {
        newConns++;
        try {
          await sqlOn(hp.ip, inv.ports.haproxyWrite, (c) =>
            c.query('insert into pgha_bench (id) values (-1 * $1::bigint)', [idBase + 10_000_000 + newConns]),
          );
        } catch (err) {
          if ((err as { code?: string }).code === '25006') newToReplica++;
        }
        await sleep(100);
      }
      const steady = writer.attempts.filter((a) => a.start >= t0 && a.start < t0 + STEADY_MS);
      const steadyReplica = steady.filter((a) => a.replica).length;
      misrouted.seed += newToReplica; // the writer's own are counted with the whole series
      say(
        `seed, no switchover, ${STEADY_MS / 1000} s: writer ${steady.filter((a) => a.ok).length} commits, ${steady.filter((a) => !a.ok).length} failed, ` +
          `${steadyReplica} reached a replica; new connections: ${newToReplica} of ${newConns} reached a replica (read-only transaction)`,
      );
    }
    for (let i = 1; i <= N; i++) {
      const names = memberNames(inv);
      const to = names[(names.indexOf(leader) + 1) % names.length]!;
      const from = leader;
      const watch = watchMember(inv, { user, password }, to, 10);
      const before = writer.attempts.length;
      let postAt: number;
      if (config === 'pgha' || config === 'pghanohold') {
        const plan = await sw.switchoverPrecheck({ inv, action: 'switchover', candidate: to });
        const cut = await sw.switchoverCutover({ inv, plan });
        postAt = cut.timings.postedAt!;
        if (DEBUG) console.log(`  cutover timings ${JSON.stringify(cut.timings)}`);
        await sw.switchoverVerify({ inv, plan });
      } else {
        postAt = Date.now();
        const r = await patroni.patroniSwitchover({
          target: restApi(inv, from),
          auth: restApiAuth(inv),
          leader: from,
          candidate: to,
          timeoutMs: 60_000,
        });
        if (r.status !== 200)
          throw new Error(`POST /switchover ${from} → ${to}: ${r.status} ${r.text ?? ''}`);
      }
      // Writes flowing on the new leader for a while, then both replicas streaming again.
      await bounded(`commits on ${to}`, 30_000, async () =>
        writer.attempts.slice(before).some((a) => a.ok && nameOf(a.server) === to && a.end > Date.now() - 500)
          ? true
          : undefined,
      );
      await sleep(1500);
      await watch.done();
      leader = await settled(120_000);
      const win = writer.attempts.slice(before).filter((a) => a.start >= postAt - 2000);
      const acks = writer.attempts.filter((a) => a.ok && a.end >= postAt - 3000 && a.end <= Date.now());
      let gap = 0;
      for (let k = 1; k < acks.length; k++) gap = Math.max(gap, acks[k]!.end - acks[k - 1]!.end);
      const lastOld = [...acks]
        .reverse()
        .find(
          (a) =>
            nameOf(a.server) === from &&
            a.end <= (acks.find((b) => nameOf(b.server) === to)?.end ?? Infinity),
        );
      const firstNew = acks.find((a) => nameOf(a.server) === to && a.end >= postAt);
      const rel = (t: number | undefined) => (t === undefined ? null : t - postAt);
      const s: Sample = {
        config,
        n: i,
        from,
        to,
        gapMs: gap,
        failed: win.filter((a) => !a.ok).length,
        maxConnectMs: Math.max(0, ...win.map((a) => a.connectMs ?? 0)),
        toReplica: win.filter((a) => a.replica).length,
        lastOldMs: rel(lastOld?.end),
        primary200Ms: rel(watch.seen.primary200),
        firstNewMs: rel(firstNew?.end),
        writableMs: rel(watch.seen.writable),
        routingLagMs:
          firstNew && watch.seen.writable !== undefined ? firstNew.end - watch.seen.writable : null,
      };
      if (DEBUG) {
        const w0 = watch.seen.writable ?? postAt;
        for (const a of writer.attempts
          .slice(before)
          .filter((x) => x.end >= w0 - 100 && x.start <= (firstNew?.end ?? w0) + 10))
          console.log(
            `  ${a.start - postAt}..${a.end - postAt} ${a.ok ? `ok ${nameOf(a.server)}` : `ERR ${a.error}`}`,
          );
      }
      samples.push(s);
      say(
        `${config} ${i}/${N} ${from}→${to}: gap ${s.gapMs} ms, failed ${s.failed}, reached a replica ${s.toReplica}; ` +
          `POST → last commit on old ${s.lastOldMs} ms → ${to} /primary 200 ${s.primary200Ms} ms → first commit on new ${s.firstNewMs} ms; ` +
          `writable ${s.writableMs} ms, routing lag ${s.routingLagMs} ms; longest connect ${s.maxConnectMs} ms`,
      );
      await sleep(1000);
    }
    await writer.stop();
    // Every write attempt of the series that reached a replica, from HAProxy's start to the end.
    misrouted[config] += writer.attempts.filter((a) => a.start >= installedAt && a.replica).length;
    idBase = writer.attempts.length ? writer.attempts[writer.attempts.length - 1]!.id + 1 : idBase;
    const acked = writer.attempts.filter((a) => a.ok).map((a) => a.id);
    const found = await sqlOn(ip(leader), inv.ports.postgresql, async (c) =>
      Number(
        (
          await c.query<{ n: string }>(
            'select count(*)::text as n from pgha_bench where id = any($1::bigint[])',
            [acked],
          )
        ).rows[0]!.n,
      ),
    );
    lost += acked.length - found;
    say(
      `${config}: ${acked.length} acknowledged commits, ${found} on the final leader ${leader}, lost ${acked.length - found}`,
    );
  };

  let failure: unknown;
  try {
    for (const c of CONFIGS) if (ONLY.includes(c)) await series(c);
  } catch (err) {
    failure = err;
  } finally {
    try {
      await install('pgha');
      say("restored pgha's HAProxy files on every HAProxy node");
    } catch (err) {
      say(`RESTORING pgha's HAProxy files FAILED: ${(err as Error).message}`);
    }
    proxmox.closeAll();
  }
  if (failure) throw failure;

  const by = (c: Config) => samples.filter((s) => s.config === c);
  const num = (xs: (number | null)[]) => xs.filter((x): x is number => x !== null);
  console.log('');
  console.log(
    '| config | median gap ms | gaps ms | failed attempts | reached a replica | median POST→last old | median → /primary 200 | median → first new | median routing lag ms |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const c of CONFIGS) {
    const s = by(c);
    console.log(
      `| ${c} | ${median(s.map((x) => x.gapMs))} | ${s.map((x) => x.gapMs).join(' ')} | ${s.reduce((a, x) => a + x.failed, 0)} | ${misrouted[c]} | ` +
        `${median(num(s.map((x) => x.lastOldMs)))} | ${median(num(s.map((x) => x.primary200Ms)))} | ${median(num(s.map((x) => x.firstNewMs)))} | ${median(num(s.map((x) => x.routingLagMs)))} |`,
    );
  }
  console.log(
    `switchover_gap_ms median_pgha=${median(by('pgha').map((x) => x.gapMs))} median_naive=${median(by('naive').map((x) => x.gapMs))} ` +
      `median_seed=${median(by('seed').map((x) => x.gapMs))} routing_lag_pgha=${median(num(by('pgha').map((x) => x.routingLagMs)))} ` +
      `misrouted_pgha=${misrouted.pgha} misrouted_seed=${misrouted.seed} lost=${lost} ` +
      `median_pghacfg=${median(by('pghacfg').map((x) => x.gapMs))} misrouted_pghacfg=${misrouted.pghacfg} ` +
      `median_pghanohold=${median(by('pghanohold').map((x) => x.gapMs))} failed_pghanohold=${by('pghanohold').reduce((a, x) => a + x.failed, 0)} ` +
      `failed_pgha=${by('pgha').reduce((a, x) => a + x.failed, 0)} max_connect_wait_ms=${Math.max(0, ...by('pgha').map((x) => x.maxConnectMs))}`,
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
