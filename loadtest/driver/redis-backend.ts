import calculateSlot from 'cluster-key-slot';
import { Cluster, Redis } from 'ioredis';
import { campaignKeys } from '../../src/infrastructure/redis/slot-gate.ts';

/** What one Redis server (a master of a cluster, or the one server) has done so far. */
export interface ShardSample {
  /** used_cpu_user + used_cpu_sys of the redis-server process. */
  readonly cpuSeconds: number;
  /** Calls of the claim script (EVALSHA and EVAL; other scripts are few under load). */
  readonly scriptCalls: number;
  readonly commands: number;
}

/** A campaign's gate state as the bench reads it to check a run. */
export interface GateCounts {
  readonly remaining: number | null;
  readonly users: string[];
  readonly pending: number;
}

/**
 * The bench's own view of the Redis the services use: the gate state of its campaigns (to check
 * it against MySQL) and, per master, CPU and script calls (per-shard figures).
 */
export class RedisBackend {
  readonly client: Redis | Cluster;
  private readonly keyPrefix: string;

  private constructor(client: Redis | Cluster, keyPrefix: string) {
    this.client = client;
    this.keyPrefix = keyPrefix;
  }

  /** One server (`url`) or, given seed nodes, a Redis Cluster; resolves once it is usable. */
  static async connect(options: {
    url: string;
    clusterSeeds?: string;
    keyPrefix: string;
  }): Promise<RedisBackend> {
    const client = options.clusterSeeds
      ? new Cluster(
          options.clusterSeeds.split(',').map((seed) => {
            const [host, port] = seed.split(':');
            return { host: host as string, port: Number(port) };
          }),
        )
      : new Redis(options.url);
    client.on('error', () => undefined);
    await client.ping();
    return new RedisBackend(client, options.keyPrefix);
  }

  get isCluster(): boolean {
    return this.client instanceof Cluster;
  }

  /** `host:port` of each master, sorted; the one server when not a cluster. */
  masters(): string[] {
    if (!(this.client instanceof Cluster)) {
      const { host, port } = this.client.options;
      return [`${host}:${port}`];
    }
    return this.client
      .nodes('master')
      .map((node) => `${node.options.host}:${node.options.port}`)
      .sort();
  }

  /** The master that owns a campaign's slot (all its keys share the `{campaignId}` tag). */
  masterOf(campaignId: string): string {
    if (!(this.client instanceof Cluster)) return this.masters()[0] as string;
    const master = this.client.slots[calculateSlot(campaignKeys(this.keyPrefix, campaignId).remaining)]?.[0];
    if (master === undefined) throw new Error(`no master known for campaign ${campaignId}`);
    return master;
  }

  /** Each master's counters now, by `host:port`. */
  async sample(): Promise<Map<string, ShardSample>> {
    const nodes =
      this.client instanceof Cluster
        ? this.client
            .nodes('master')
            .map((node) => [`${node.options.host}:${node.options.port}`, node] as const)
        : [[this.masters()[0] as string, this.client] as const];
    const samples = new Map<string, ShardSample>();
    await Promise.all(
      nodes.map(async ([address, node]) => {
        const info = await node.info('all');
        const number = (field: string) => Number(new RegExp(`^${field}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
        const calls = (command: string) =>
          Number(new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info)?.[1] ?? 0);
        samples.set(address, {
          cpuSeconds: number('used_cpu_user') + number('used_cpu_sys'),
          scriptCalls: calls('evalsha') + calls('eval'),
          commands: number('total_commands_processed'),
        });
      }),
    );
    return samples;
  }

  /**
   * Redis' clock minus this process's `performance.timeOrigin + performance.now()`, in ms, from the
   * TIME round trip with the shortest wait of `samples` (the reading lies within it); `errorMs` is
   * half that round trip. On a cluster, the clock of the master owning `campaignId`.
   */
  async clockOffset(campaignId?: string, samples = 30): Promise<{ offsetMs: number; errorMs: number }> {
    const node =
      this.client instanceof Cluster && campaignId !== undefined
        ? (this.client
            .nodes('master')
            .find(
              (candidate) =>
                `${candidate.options.host}:${candidate.options.port}` === this.masterOf(campaignId),
            ) ?? this.client)
        : this.client;
    let best = { offsetMs: 0, errorMs: Number.POSITIVE_INFINITY };
    for (let i = 0; i < samples; i++) {
      const before = performance.now();
      const [seconds, micros] = (await node.time()) as [string | number, string | number];
      const after = performance.now();
      const redisMs = Number(seconds) * 1000 + Number(micros) / 1000;
      const errorMs = (after - before) / 2;
      if (errorMs < best.errorMs)
        best = { offsetMs: redisMs - (performance.timeOrigin + (before + after) / 2), errorMs };
    }
    return best;
  }

  /** Calls per command since each server started (INFO commandstats, every master summed), scripts' inner calls included. */
  async commandCalls(): Promise<Record<string, number>> {
    const nodes = this.client instanceof Cluster ? this.client.nodes('master') : [this.client];
    const calls: Record<string, number> = {};
    for (const info of await Promise.all(nodes.map((node) => node.info('commandstats')))) {
      for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
        const command = match[1] as string;
        calls[command] = (calls[command] ?? 0) + Number(match[2]);
      }
    }
    return calls;
  }

  async gateCounts(campaignId: string): Promise<GateCounts> {
    const keys = campaignKeys(this.keyPrefix, campaignId);
    const [remaining, users, pending] = await Promise.all([
      this.client.get(keys.remaining),
      this.client.smembers(keys.users),
      this.client.zcard(keys.pending),
    ]);
    return { remaining: remaining === null ? null : Number(remaining), users, pending };
  }

  async close(): Promise<void> {
    this.client.disconnect();
  }
}
