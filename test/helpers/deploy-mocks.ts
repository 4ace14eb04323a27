/** deployCluster's mock activities: shared with scripts/record-history.ts, so they live in scripts/. */
export { deployMocks } from '../../scripts/deploy-mocks';
