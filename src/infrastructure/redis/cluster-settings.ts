import type { Cluster } from 'ioredis';

/**
 * The masters that run with `cluster-require-full-coverage yes` (Redis' default). Such a cluster
 * refuses every query on every node (CLUSTERDOWN) from the moment one master is marked failed
 * until its replica takes over, so one shard's failover fails campaigns on all of them (measured:
 * 1-2 of ~2,300 calls of a campaign on a healthy master, at the takeover). Masters whose CONFIG
 * is not readable (renamed or refused, as managed services do) are left out.
 */
export async function mastersRequiringFullCoverage(cluster: Cluster): Promise<string[]> {
  const masters = cluster.nodes('master');
  const answers = await Promise.all(
    masters.map((node) =>
      node.config('GET', 'cluster-require-full-coverage').then(
        (reply) => reply as unknown as string[],
        () => [],
      ),
    ),
  );
  return masters
    .filter((_, i) => answers[i]?.[1] === 'yes')
    .map((node) => `${node.options.host}:${node.options.port}`);
}
