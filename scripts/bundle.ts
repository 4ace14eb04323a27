/**
 * Builds the production workflow bundle (workflows/index.ts + pgha's failure converter) so a worker
 * starts without bundling and runs exactly the code that was reviewed:
 *
 *   npm run bundle                      writes .pgha/workflow-bundle.js
 *   PGHA_WORKFLOW_BUNDLE=.pgha/workflow-bundle.js npm run worker
 *
 * The worker uses a bundle only when PGHA_WORKFLOW_BUNDLE names it, never a stale one by accident.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { stateDir } from '../temporal.config';
import { workflowsPath } from '../workers/main';

async function main(): Promise<void> {
  const out = process.argv[2] ?? join(stateDir, 'workflow-bundle.js');
  const { code } = await bundleWorkflowCode({
    workflowsPath,
    failureConverterPath: require.resolve('../converter/failure-converter'),
  });
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, code);
  console.log(
    `wrote ${out} (${(code.length / 1024).toFixed(0)} KiB); run the worker with PGHA_WORKFLOW_BUNDLE=${out}`,
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
