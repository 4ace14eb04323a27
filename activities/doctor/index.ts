/**
 * `pgha doctor`: the seed's Troubleshooting section run as checks. collect.ts observes (read-only,
 * through the system modules), checks.ts judges (pure), the CLI prints (clients/commands/doctor.ts).
 */
import { diagnose } from './checks';
import { collectDoctor, type DoctorDeps } from './collect';
import type { DoctorReport } from './types';
import type { Inventory } from '../../runbooks/schema';

export * from './types';
export { CHECKS, diagnose, doctorExitCode, formatDoctorReport, hbaMatches } from './checks';
export { collectDoctor, parseEnvFile, parseIpAddr, parseSs, type CtExec, type DoctorDeps } from './collect';

/** Observe, then judge. Never throws for a sick cluster: sickness is in the checks. */
export async function runDoctor(deps: DoctorDeps, inv: Inventory): Promise<DoctorReport> {
  return diagnose(await collectDoctor(deps, inv));
}
