/**
 * CI's short chaos run (issue 13): `npm run chaos` with one worker SIGKILL per runbook (deployCluster
 * again on the deployed cluster, switchover,
 * failover, rollingRestart, applyConfig, reinitReplica, backup, restoreDrill, upgradePostgresql)
 * and one Temporal server SIGKILL, on the lab cluster
 * the other lab tests left deployed (the file sorts last among them). The full run (10 worker kills
 * per runbook, 3 server kills) is a benchmark: README, "Chaos".
 *
 * What must hold is checked by the chaos script from outside pgha after every run (the run ended,
 * completed or refused; healthy; every member agrees on leader and timeline; no acknowledged commit
 * lost; no PostgreSQL started twice on a member, no second POST /switchover); this test reads its
 * last line and its exit code.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { join } from 'node:path';
import { labNotUpReason } from '../../lab/testing';
import { repoRoot } from '../helpers/local-common';
import { RUNBOOKS } from '../../bench/chaos-runbooks';

const skip = process.env.CI ? false : labNotUpReason();
const LAB = process.env.PGHA_LAB_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab.yaml');

void test(
  'short chaos: one worker kill per runbook and one server kill; nothing lost, nothing done twice, healthy',
  { skip, timeout: 30 * 60_000 },
  () => {
    const seed = Number(process.env.PGHA_CHAOS_SEED ?? randomInt(2 ** 31));
    const r = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        join(repoRoot, 'bench/chaos.ts'),
        '--kills',
        '1',
        '--server-kills',
        '1',
        '--seed',
        String(seed),
      ],
      {
        cwd: repoRoot,
        env: { ...process.env, PGHA_LAB_INVENTORY: LAB },
        encoding: 'utf8',
        timeout: 28 * 60_000,
        maxBuffer: 64 * 1024 * 1024,
      },
    );
    const out = `${r.stdout}\n${r.stderr}`;
    console.log(r.stdout);
    const last =
      /^chaos runs=(\d+) worker_kills=(\d+) server_kills=(\d+) completed=(\d+) refused=(\d+) lost=(\d+) double_actions=(\d+) unhealthy=(\d+)$/m.exec(
        r.stdout,
      );
    assert.ok(
      last,
      `no chaos line (seed ${seed}; replay with PGHA_CHAOS_SEED=${seed}):\n${out.slice(-4000)}`,
    );
    const [, runs, workerKills, , completed, refused, lost, double, unhealthy] = last.map(Number);
    const runbooks = /^chaos seed=\d+ .*runbooks=(\S+)$/m.exec(r.stdout)?.[1]?.split(',') ?? [];
    assert.deepEqual(
      [...runbooks].sort(),
      [...RUNBOOKS].sort(),
      'the short run covers every runbook the chaos suite knows',
    );
    assert.equal(lost, 0, `acknowledged commits lost (seed ${seed})`);
    assert.equal(double, 0, `an action done twice (seed ${seed})`);
    assert.equal(unhealthy, 0, `a run left the cluster unhealthy or its members disagreeing (seed ${seed})`);
    // each runbook measured once, then run with a kill until one lands (at most 3 runs)
    assert.ok(runs! >= 2 * runbooks.length && runs! <= 4 * runbooks.length, `runs=${runs}`);
    assert.equal(completed! + refused!, runs, `every run ended completed or refused (seed ${seed})`);
    assert.ok(
      workerKills! >= runbooks.length - 1,
      `the worker kills landed during the runs: ${workerKills} of ${runbooks.length}`,
    );
    assert.equal(r.status, 0, `the chaos script failed (seed ${seed}):\n${out.slice(-4000)}`);
  },
);
