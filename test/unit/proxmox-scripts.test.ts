/**
 * activities/proxmox/scripts.ts: the kill script a cancelled `pct exec` runs in the CT, here on this
 * machine's own /proc (the same dash and coreutils as the lab's CTs). A marked command with children
 * is started the way execBuffer starts one (`env PGHA_EXEC=<id> timeout -s KILL <d> argv`); the script
 * must leave no marked process, and touch no unmarked one.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import { EXEC_MARK, KILL_SCRIPT } from '../../activities/proxmox/scripts';

/** pids whose environment carries `PGHA_EXEC=<id>`. */
function marked(id: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/environ`, 'latin1').split('\0').includes(`${EXEC_MARK}=${id}`))
        out.push(Number(d));
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

async function until(what: string, fn: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!fn()) {
    assert.ok(Date.now() < deadline, what);
    await new Promise((r) => setTimeout(r, 50));
  }
}

void describe('the kill script of a given-up command', () => {
  void it('kills the marked command, its children and timeout; leaves an unmarked neighbour alone', async () => {
    const id = randomBytes(8).toString('hex');
    const other = randomBytes(8).toString('hex');
    const argv = [
      'env',
      `${EXEC_MARK}=${id}`,
      'timeout',
      '-s',
      'KILL',
      '120s',
      'sh',
      '-c',
      'sleep 119 & sleep 118; wait',
    ];
    const cmd = spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' });
    const neighbour = spawn('env', [`${EXEC_MARK}=${other}`, 'sleep', '117'], { stdio: 'ignore' });
    const exited = new Promise<string | null>((r) => cmd.once('exit', (_c, sig) => r(sig)));
    try {
      await until('the command and both children run', () => marked(id).length >= 4);
      const n = Number(
        execFileSync('sh', ['-c', KILL_SCRIPT, 'pgha-kill', id], {
          encoding: 'utf8',
          timeout: 15_000,
        }).trim(),
      );
      assert.ok(n >= 1, `killed ${n}`);
      assert.equal(await exited, 'SIGKILL');
      await until('no marked process is left', () => marked(id).length === 0);
      assert.equal(marked(other).length, 1, 'the unmarked neighbour was killed');
    } finally {
      cmd.kill('SIGKILL');
      neighbour.kill('SIGKILL');
    }
  });

  void it('finds nothing to kill for a command that already ended, quickly', () => {
    const t0 = Date.now();
    const out = execFileSync('sh', ['-c', KILL_SCRIPT, 'pgha-kill', randomBytes(8).toString('hex')], {
      encoding: 'utf8',
      timeout: 15_000,
    });
    assert.equal(out.trim(), '0');
    assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
  });
});
