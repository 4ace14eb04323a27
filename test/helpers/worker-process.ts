/**
 * A real pgha worker in its own process (workers/main.ts' runWorker, production workflows and
 * activities), for tests that kill it. Every activity call is counted before it runs: one line
 * `<pid>` appended to $PGHA_COUNT_DIR/<activityName>. Prints READY once it polls.
 *
 * Env: TEMPORAL_ADDRESS, PGHA_TASK_QUEUE, PGHA_CODEC_KEY, PGHA_STATE_DIR, PGHA_COUNT_DIR.
 */
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { createActivities } from '../../activities';
import { stateDir } from '../../temporal.config';
import { runWorker } from '../../workers/main';

const countDir = process.env.PGHA_COUNT_DIR;
if (!countDir) throw new Error('PGHA_COUNT_DIR is not set');

const real = createActivities({ stateDir }) as Record<string, (...args: unknown[]) => Promise<unknown>>;
const counted = Object.fromEntries(
  Object.entries(real).map(([name, fn]) => [
    name,
    (...args: unknown[]) => {
      appendFileSync(join(countDir, name), `${process.pid}\n`);
      return fn(...args);
    },
  ]),
);

runWorker({ activities: counted, onReady: () => console.log('READY') }).catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
