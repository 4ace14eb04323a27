/**
 * Patroni timing profiles (inventory `patroni.timing`) and what each means in seconds of write
 * downtime. Pure: the schema, `pgha validate` and the docs use the same numbers.
 *
 *   seed         ttl 60, loop_wait 10, retry_timeout 20 — the seed's values: rides out a 20 s stall
 *                of etcd or the network, but a dead leader keeps writes down for ~50–61 s.
 *   recommended  ttl 20, loop_wait 5, retry_timeout 7 — a dead leader is replaced in ~15–21 s;
 *                an etcd/network stall longer than 7 s makes the leader step down (a false
 *                failover on a slow or flaky network). Patroni's rule loop_wait + 2 × retry_timeout
 *                ≤ ttl holds (19 ≤ 20).
 *   custom       the explicit patroni.ttl / loopWait / retryTimeout (the seed's values when absent).
 */
export const TIMING_NAMES = ['seed', 'recommended', 'custom'] as const;
export type TimingName = (typeof TIMING_NAMES)[number];

export interface PatroniTiming {
  ttl: number;
  loopWait: number;
  retryTimeout: number;
}

export const TIMING_PROFILES: Record<Exclude<TimingName, 'custom'>, PatroniTiming> = {
  seed: { ttl: 60, loopWait: 10, retryTimeout: 20 },
  recommended: { ttl: 20, loopWait: 5, retryTimeout: 7 },
};

/** The timing an inventory's patroni section means: the profile's, or the explicit values (seed's defaults). */
export function resolveTiming(p: {
  timing?: TimingName;
  ttl?: number;
  loopWait?: number;
  retryTimeout?: number;
}): PatroniTiming & {
  timing: TimingName;
} {
  const timing =
    p.timing ??
    (p.ttl !== undefined || p.loopWait !== undefined || p.retryTimeout !== undefined ? 'custom' : 'seed');
  const base = timing === 'custom' ? TIMING_PROFILES.seed : TIMING_PROFILES[timing];
  return {
    timing,
    ttl: p.ttl ?? base.ttl,
    loopWait: p.loopWait ?? base.loopWait,
    retryTimeout: p.retryTimeout ?? base.retryTimeout,
  };
}

/**
 * What a timing means for writes, in seconds (what `pgha validate` prints). A dead leader's key
 * expires ttl after its last renewal, renewed every loop_wait: ttl − loop_wait … ttl after the
 * death; a replica then takes the key at once (Patroni watches it) and promotes in ~1 s; HAProxy
 * follows in ≤ 0.5 s by its checks (downinter), at once with the guardian.
 */
export function explainTiming(t: PatroniTiming & { timing: TimingName }): string[] {
  const lo = t.ttl - t.loopWait;
  const hi = t.ttl + 1;
  return [
    `timing ${t.timing}: ttl ${t.ttl}s, loop_wait ${t.loopWait}s, retry_timeout ${t.retryTimeout}s`,
    `    leader lost (host or CT dead): writes refused for ~${lo}–${hi} s (the leader key expires ${lo}–${t.ttl} s after the death, then ~1 s to promote; +0.5 s for HAProxy's checks, none with the guardian)`,
    `    etcd or network stall seen by the leader: ridden out up to ${t.retryTimeout} s; longer, the leader steps down (a false failover) unless failsafe mode keeps it`,
    `    planned switchover (pgha switchover): ~1–2 s whatever the timing`,
    `    the profiles, a dead leader: ${Object.entries(TIMING_PROFILES)
      .map(([n, p]) => `${n} ~${p.ttl - p.loopWait}–${p.ttl + 1} s`)
      .join(', ')} (patroni.timing)`,
  ];
}
