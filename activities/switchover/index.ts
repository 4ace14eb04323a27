/**
 * Switchover and failover, the activities: check the live cluster (precheck.ts), hand the leader
 * over through Patroni and route HAProxy the instant the new leader accepts writes (handoff.ts),
 * and verify (verify.ts) — each ending in a definite, reported state. Each step is a top-level
 * function `(deps, args)`; this factory only binds the deps (the clients of the system modules:
 * Patroni, PostgreSQL, etcd, the HAProxy runtime API over the Proxmox transport).
 */
import { Failures } from '../../runbooks/failures';
import type { HandoffPlan, SwitchoverDeps } from './types';
import { switchoverCutover } from './handoff';
import { switchoverPrecheck } from './precheck';
import { switchoverVerify } from './verify';
import { settleRouting } from './routing';

export type {
  CutoverResult,
  CutoverTimings,
  HandoffAction,
  HandoffMemo,
  HandoffPlan,
  SwitchoverDeps,
  VerifyResult,
} from './types';
export type { RuntimeSession, RuntimeSessions } from '../haproxy';
export type { RecoveryProbe } from '../postgres';
export { adminForced } from '../haproxy';
export { fmtBytes } from './common';

/** The failure types these activities throw (runbooks/failures.ts). */
export const REFUSED = Failures.SwitchoverRefused;
export const HANDOFF_FAILED = Failures.SwitchoverFailed;

export function createSwitchoverActivities(deps: SwitchoverDeps) {
  return {
    switchoverPrecheck: (args: Parameters<typeof switchoverPrecheck>[1]): Promise<HandoffPlan> =>
      switchoverPrecheck(deps, args),
    switchoverCutover: (args: Parameters<typeof switchoverCutover>[1]) => switchoverCutover(deps, args),
    switchoverVerify: (args: Parameters<typeof switchoverVerify>[1]) => switchoverVerify(deps, args),
    /** After a hand-off that did not complete: no server left drained on any HAProxy (routing.ts). */
    switchoverSettle: (args: { inv: Parameters<typeof settleRouting>[1] }) => settleRouting(deps, args.inv),
  };
}

export type SwitchoverActivities = ReturnType<typeof createSwitchoverActivities>;
