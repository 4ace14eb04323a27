/**
 * The workflow API with `patched()` answering true always, as if the guards were not there: the
 * replay test bundles the real workflows against it (a webpack alias for '@temporalio/workflow') to
 * prove that the patched() guards are what keeps the saved histories replaying.
 */
export * from '@temporalio/workflow/lib/index';

export function patched(_patchId: string): boolean {
  return true;
}
