/**
 * The smoke runbook's activities: they prove that a worker is up, that it can resolve a secret
 * reference and use the secret without it ever leaving the activity, and that a step's effect can be
 * checked and undone. They touch only the worker's own state directory (<stateDir>/smoke/), never a
 * cluster. Each is idempotent (check, then act), like every pgha activity.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { Failures } from '../runbooks/failures';
import { resolveSecretRef } from './secrets';

export interface SmokeDeps {
  /** The worker's state directory; markers go to <stateDir>/smoke/. */
  stateDir: string;
}

export interface SmokeMarkerArgs {
  cluster: string;
  /** The run's id: one marker per run, so a retried or resumed step finds its own marker. */
  runId: string;
  /** Free text stored in the marker (and encrypted in history like every input). */
  note?: string;
  /** A secret reference (`env:NAME` / `file:PATH`): the marker is signed with the secret (HMAC-SHA256). */
  secretRef?: string;
}

interface Marker {
  cluster: string;
  runId: string;
  note: string;
  hmac?: string;
}

const markerDir = (deps: SmokeDeps) => join(deps.stateDir, 'smoke');
const markerPath = (deps: SmokeDeps, a: { cluster: string; runId: string }) =>
  join(markerDir(deps), `${a.cluster}-${a.runId}.json`.replace(/[^A-Za-z0-9._-]/g, '_'));
const sign = (secret: string, m: Marker) =>
  createHmac('sha256', secret).update(`${m.cluster}\n${m.runId}\n${m.note}`).digest('hex');

/** Who runs the activities: the worker's host, pid and node version. */
export async function smokePreflight(
  _deps: SmokeDeps,
  args: { cluster: string },
): Promise<{ cluster: string; worker: string; pid: number; node: string }> {
  return { cluster: args.cluster, worker: hostname(), pid: process.pid, node: process.version };
}

/** Writes the run's marker (signed with the secret when a reference is given). */
export async function smokeWriteMarker(
  deps: SmokeDeps,
  args: SmokeMarkerArgs,
): Promise<{ path: string; created: boolean; signed: boolean }> {
  const path = markerPath(deps, args);
  const m: Marker = { cluster: args.cluster, runId: args.runId, note: args.note ?? '' };
  if (args.secretRef) m.hmac = sign(await resolveSecretRef(args.secretRef), m);
  const text = `${JSON.stringify(m, null, 2)}\n`;
  const existing = await readFile(path, 'utf8').catch(() => undefined);
  if (existing === text) return { path, created: false, signed: Boolean(m.hmac) };
  await mkdir(markerDir(deps), { recursive: true, mode: 0o700 });
  await writeFile(path, text, { mode: 0o600 });
  return { path, created: true, signed: Boolean(m.hmac) };
}

/** Reads the marker back and checks it (and its signature, with the secret resolved again). */
export async function smokeVerifyMarker(
  deps: SmokeDeps,
  args: SmokeMarkerArgs,
): Promise<{ path: string; verified: true }> {
  const path = markerPath(deps, args);
  const text = await readFile(path, 'utf8').catch(() => undefined);
  if (text === undefined) {
    throw ApplicationFailure.nonRetryable(
      `smoke marker ${path} is missing: the write step did not happen on this worker's state dir`,
      Failures.SmokeMarkerMissing,
    );
  }
  const m = JSON.parse(text) as Marker;
  if (m.cluster !== args.cluster || m.runId !== args.runId || m.note !== (args.note ?? '')) {
    throw ApplicationFailure.nonRetryable(
      `smoke marker ${path} holds another run's data`,
      Failures.SmokeMarkerMismatch,
    );
  }
  if (args.secretRef) {
    const want = Buffer.from(sign(await resolveSecretRef(args.secretRef), m), 'hex');
    const got = Buffer.from(m.hmac ?? '', 'hex');
    if (got.length !== want.length || !timingSafeEqual(got, want)) {
      // Never the secret nor the signatures in the message: only what to check.
      throw ApplicationFailure.nonRetryable(
        `smoke marker ${path} signature does not match the secret behind ${args.secretRef}: the secret changed between steps?`,
        Failures.SmokeMarkerSignature,
      );
    }
  }
  return { path, verified: true };
}

/** Removes the marker (the write step's compensation, and the last step). */
export async function smokeRemoveMarker(
  deps: SmokeDeps,
  args: { cluster: string; runId: string },
): Promise<{ path: string; removed: boolean }> {
  const path = markerPath(deps, args);
  const existed = await readFile(path).then(
    () => true,
    () => false,
  );
  await rm(path, { force: true });
  return { path, removed: existed };
}

/** The factory only binds the deps. */
export function createSmokeActivities(deps: SmokeDeps) {
  return {
    smokePreflight: (args: { cluster: string }) => smokePreflight(deps, args),
    smokeWriteMarker: (args: SmokeMarkerArgs) => smokeWriteMarker(deps, args),
    smokeVerifyMarker: (args: SmokeMarkerArgs) => smokeVerifyMarker(deps, args),
    smokeRemoveMarker: (args: { cluster: string; runId: string }) => smokeRemoveMarker(deps, args),
  };
}

export type SmokeActivities = ReturnType<typeof createSmokeActivities>;
