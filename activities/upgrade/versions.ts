/** The version arithmetic lives in runbooks/pg-version.ts (pure: workflows use it too). */
export * from '../../runbooks/pg-version';
