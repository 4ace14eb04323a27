/**
 * Test workflow bundle: every pgha workflow, plus `scripted`, a runbook driven by its input so the
 * machinery tests (steps, gates, pause, cancellation, lock) can describe a runbook as data. Its
 * activities are the mocks in test/workflow/*.test.ts (TestActivities).
 */
import { ActivityCancellationType, proxyActivities } from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import { runbook } from '../../workflows/steps';
import type { PlanEntry } from '../../workflows/steps';

export * from '../../workflows';

export interface ScriptEntry {
  step?: string;
  gate?: string;
  timeout?: Duration;
  node?: string;
  compensate?: boolean;
  /** Let the activity retry (3 attempts, 200 ms apart) instead of failing at once. */
  retry?: boolean;
  /** Runbook-level attempts of the whole step (StepOptions.attempts), 100 ms apart. */
  attempts?: number;
}

export interface ScriptInput {
  cluster: string;
  operation: string;
  script: ScriptEntry[];
  lock?: boolean;
  maxPause?: Duration;
}

export interface TestActivities {
  /** Runs step `name` (the mock may hold it, fail it, or wait for cancellation). */
  act(name: string, node?: string): Promise<string>;
  undo(name: string): Promise<void>;
}

const acts = proxyActivities<TestActivities>({
  startToCloseTimeout: '60s',
  heartbeatTimeout: '5s',
  retry: { maximumAttempts: 1 },
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
});

const retrying = proxyActivities<TestActivities>({
  startToCloseTimeout: '60s',
  retry: { maximumAttempts: 3, initialInterval: '200ms', backoffCoefficient: 1 },
});

export async function scripted(input: ScriptInput): Promise<string[]> {
  const plan: PlanEntry[] = input.script.map((s) => (s.gate ? { gate: s.gate } : String(s.step)));
  return runbook(
    { cluster: input.cluster, operation: input.operation, plan, lock: input.lock, maxPause: input.maxPause },
    async (rb) => {
      const done: string[] = [];
      for (const s of input.script) {
        if (s.gate) {
          const d = await rb.approval(s.gate, { timeout: s.timeout ?? '1h' });
          done.push(`${s.gate}:${d.decision}:${d.approver}`);
          continue;
        }
        const name = String(s.step);
        done.push(
          await rb.step(name, () => (s.retry ? retrying : acts).act(name, s.node), {
            node: s.node,
            compensate: s.compensate ? () => acts.undo(name) : undefined,
            attempts: s.attempts,
            retryDelay: '100ms',
          }),
        );
      }
      return done;
    },
  );
}
