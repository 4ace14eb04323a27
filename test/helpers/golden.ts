/**
 * Golden files: `want` (relative path → content) against the files under `dir`; with
 * UPDATE_GOLDEN=1 the directory is rewritten first (review the diff). The set of files must match
 * too, so a file no longer rendered fails until its golden file is removed.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export const updateGolden = process.env.UPDATE_GOLDEN === '1';

export async function assertGoldenDir(dir: string, want: Map<string, string>): Promise<void> {
  if (updateGolden) {
    await rm(dir, { recursive: true, force: true });
    for (const [key, content] of want) {
      await mkdir(dirname(join(dir, key)), { recursive: true });
      await writeFile(join(dir, key), content);
    }
  }
  const have = (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
  assert.deepEqual(have, [...want.keys()].sort(), `the set of golden files under ${dir}`);
  for (const [key, content] of want)
    assert.equal(
      content,
      await readFile(join(dir, key), 'utf8'),
      `${key} differs (UPDATE_GOLDEN=1 to accept)`,
    );
}
