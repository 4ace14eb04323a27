/**
 * guardianWatch: the leader key in etcd, WATCHED (etcd pushes each change; nothing polls it),
 * until it names another member than the one the guardian knows. While it waits it heartbeats
 * every second and samples the known leader's GET /patroni once a second (its last LSN, for the
 * lag lost), carrying the last sample in its heartbeat details so a retry keeps it.
 *
 * A retry (the worker died) converges: it reads the key first, so a change that happened while no
 * worker watched is returned at once.
 */
import { patroniKeyPrefix, etcdEndpoints, restApi } from '../../runbooks/topology';
import { watchEtcdKey } from '../etcd';
import type { EtcdKeyEvent } from '../etcd';
import { normaliseRole } from '../patroni';
import { carriedIntents, heartbeating, keepInHeartbeats, cancellationSignal } from '../poll';
import type { GuardianDeps, LeaderSample, WatchArgs, WatchResult } from './types';

/** The leader key of an inventory's cluster: `/<namespace>/<scope>/leader`. */
export const leaderKey = (inv: WatchArgs['inv']) => `${patroniKeyPrefix(inv)}leader`;

export async function guardianWatch(deps: GuardianDeps, args: WatchArgs): Promise<WatchResult> {
  const { inv } = args;
  const known = args.known;
  const maxMs = args.maxMs ?? 600_000;
  const sampleEvery = deps.sampleEveryMs ?? 1000;
  let oldLastSeen = carriedIntents<{ oldLastSeen: LeaderSample }>().oldLastSeen;
  if (oldLastSeen && oldLastSeen.member !== known) oldLastSeen = undefined;
  let keyGoneAt: number | undefined;
  let phase = `watching ${leaderKey(inv)} (leader ${known ?? 'not known yet'})`;

  return heartbeating(
    () => phase,
    () =>
      new Promise<WatchResult>((resolve, reject) => {
        let settled = false;
        let watch: Awaited<ReturnType<typeof watchEtcdKey>> | undefined;
        let sampler: ReturnType<typeof setInterval> | undefined;
        let quiet: ReturnType<typeof setTimeout> | undefined;
        const finish = (r: WatchResult | Error) => {
          if (settled) return;
          settled = true;
          clearInterval(sampler);
          clearTimeout(quiet);
          void watch?.close();
          if (r instanceof Error) reject(r);
          else resolve(r);
        };
        const changed = (value: string | null, at: number): boolean => {
          if (known === undefined) {
            finish({ kind: 'quiet', old: null, leader: value, observedAt: at });
            return true;
          }
          if (value !== null && value !== known) {
            phase = `leader key: ${known ?? '(none)'} → ${value}`;
            finish({ kind: 'changed', old: known, leader: value, observedAt: at, keyGoneAt, oldLastSeen });
            return true;
          }
          return false;
        };
        const onEvent = (e: EtcdKeyEvent) => {
          if (e.value === null) {
            keyGoneAt ??= e.at;
            phase = `leader key of ${known ?? '(none)'} gone; waiting for a new holder`;
            return;
          }
          changed(e.value, e.at);
        };
        const signal = cancellationSignal();
        const cancelled = () => finish(new Error('guardianWatch cancelled'));
        // an 'abort' that already fired never fires again
        if (signal?.aborted) cancelled();
        else signal?.addEventListener('abort', cancelled, { once: true });
        (deps.watchKey ?? watchEtcdKey)(etcdEndpoints(inv), leaderKey(inv), onEvent, (err) =>
          finish(err instanceof Error ? err : new Error(String(err))),
        ).then(
          (w) => {
            watch = w;
            if (settled) {
              void w.close();
              return;
            }
            if (changed(w.initial, Date.now())) return;
            if (w.initial === null) keyGoneAt ??= Date.now();
            quiet = setTimeout(
              () =>
                finish({ kind: 'quiet', old: known ?? null, leader: known ?? null, observedAt: Date.now() }),
              maxMs,
            );
            if (known) {
              const sample = async () => {
                try {
                  const r = await deps.patroni.patroniGetPatroni({
                    target: restApi(inv, known),
                    timeoutMs: 800,
                  });
                  if (r.status === 200 && r.body && normaliseRole(r.body.role) === 'primary') {
                    oldLastSeen = {
                      member: known,
                      at: Date.now(),
                      timeline: r.body.timeline,
                      lsn: r.body.xlog?.location,
                    };
                    keepInHeartbeats({ oldLastSeen });
                  }
                } catch {
                  // not answering: the last sample stays
                }
              };
              void sample();
              sampler = setInterval(() => void sample(), sampleEvery);
            }
          },
          (err: unknown) => finish(err instanceof Error ? err : new Error(String(err))),
        );
      }),
  );
}
