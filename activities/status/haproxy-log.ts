/**
 * HAProxy's own log, last lines per node: the rendered config logs to the unit's stdout, which
 * journald keeps, so `journalctl -u haproxy` in each HAProxy CT (through `pct exec`) reads it.
 * For `pgha status --haproxy-log N` after a switchover or a failover: what HAProxy saw (servers
 * going DOWN/UP, connections and where they went).
 */
import type { CtExec } from '../haproxy';

export interface HaproxyLogNode {
  name: string;
  vmid: number;
}

export interface HaproxyLogLines {
  name: string;
  lines: string[];
  error?: string;
}

/** At most this many lines per node (journalctl -n). */
export const MAX_HAPROXY_LOG_LINES = 1000;

/** The argv run in the CT: the unit's last `lines` journal lines, ISO timestamps with microseconds. */
export function haproxyLogArgv(lines: number): string[] {
  if (!Number.isInteger(lines) || lines < 1 || lines > MAX_HAPROXY_LOG_LINES)
    throw new RangeError(
      `--haproxy-log: expected a number of lines from 1 to ${MAX_HAPROXY_LOG_LINES}, got ${lines}`,
    );
  return ['journalctl', '-u', 'haproxy', '-n', String(lines), '--no-pager', '-o', 'short-iso-precise'];
}

/** The last `lines` lines of every node's HAProxy log; a node that cannot be read says why. */
export async function collectHaproxyLog(
  shell: CtExec,
  nodes: HaproxyLogNode[],
  lines: number,
  timeoutMs = 10_000,
): Promise<HaproxyLogLines[]> {
  const argv = haproxyLogArgv(lines);
  return Promise.all(
    nodes.map(async (n): Promise<HaproxyLogLines> => {
      try {
        const r = await shell.exec(n.vmid, argv, { timeoutMs });
        if (r.code !== 0)
          return {
            name: n.name,
            lines: [],
            error: `journalctl exited ${r.code}: ${r.stderr.trim().slice(0, 300)}`,
          };
        return { name: n.name, lines: r.stdout.split('\n').filter((l) => l !== '') };
      } catch (err) {
        return { name: n.name, lines: [], error: err instanceof Error ? err.message : String(err) };
      }
    }),
  );
}

/** The human text: one block per node. */
export function formatHaproxyLog(logs: HaproxyLogLines[]): string {
  return logs
    .map((l) =>
      [
        `HAProxy log, ${l.name} (journalctl -u haproxy):`,
        ...(l.error ? [`  unreadable: ${l.error}`] : l.lines.map((x) => `  ${x}`)),
      ].join('\n'),
    )
    .join('\n\n');
}
