/**
 * Builds the production workflow bundle (workflows/index.ts + pgha's failure converter) so a worker
 * starts without bundling and runs exactly the code that was reviewed:
 *
 *   npm run bundle                      writes .pgha/workflow-bundle.js
 *   PGHA_WORKFLOW_BUNDLE=.pgha/workflow-bundle.js npm run worker
 *   tsx scripts/bundle.ts OUT [MODULE]  another module's workflows (scripts/test bundles the test
 *                                       workflows, test/helpers/workflows.ts, once per run)
 *
 * The worker uses a bundle only when PGHA_WORKFLOW_BUNDLE names it, never a stale one by accident.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { stateDir } from '../temporal.config';
import { workflowsPath } from '../workers/main';

async function main(): Promise<void> {
  const out = process.argv[2] ?? join(stateDir, 'workflow-bundle.js');
  const module = process.argv[3] ? require.resolve(resolve(process.argv[3])) : workflowsPath;
  const { code } = await bundleWorkflowCode({
    workflowsPath: module,
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
