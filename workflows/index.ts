/** The workflow bundle's entry: every workflow the pgha worker runs. Add one line per runbook module. */
export { clusterLock } from './lock';
export { smoke } from './smoke';
export { deployCluster } from './deploy-cluster';
export { switchover, failover } from './switchover';
export { rollingRestart, applyConfig } from './rolling-restart';
export { reinitReplica } from './reinit';
export { etcdRestart, etcdMaintain, etcdSnapshot, patroniDcsClean } from './etcd';
export { upgradePatroni } from './upgrade-patroni';
export { upgradePostgresql } from './upgrade-postgresql';
export { upgradeMajor } from './upgrade-major';
export { backup } from './backup';
export { clusterGuardian, failoverObserved } from './guardian';
export { etcdReplace } from './etcd-replace';
export { restoreDrill } from './restore-drill';
export { restore } from './restore';
