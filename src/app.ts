import type http from 'node:http';
import type net from 'node:net';
import { createContextValues } from '@connectrpc/connect';
import { Cluster } from 'ioredis';
import { type DestinationStream, type Logger, type LoggerOptions, pino } from 'pino';
import { adminAuthInterceptor } from './api/admin-auth.ts';
import { clientAddress, clientAddressKey, compileTrustedProxies } from './api/client-address.ts';
import { createConnectHandler } from './api/connect-handler.ts';
import { consoleHandler } from './api/console.ts';
import { corsMiddleware } from './api/cors.ts';
import { couponServiceImpl } from './api/coupon-service.ts';
import { earlyRefusalHandler } from './api/early-refusal.ts';
import {
  checkDependencies,
  type DependencyReport,
  type HealthProbe,
  healthServiceImpl,
  httpHealthHandler,
} from './api/health.ts';
import { CallObserver, observabilityInterceptor } from './api/observability.ts';
import { ipRateLimitInterceptor } from './api/rate-limit.ts';
import { registerReflection } from './api/reflection.ts';
import { createPolyglotServer, type RequestHandler } from './api/server.ts';
import { UserTokens, userAuthInterceptor, type VerifiedCall, verifiedUserKey } from './api/user-tokens.ts';
import { CampaignDirectory } from './application/campaign-directory.ts';
import { CampaignOperations } from './application/campaign-operations.ts';
import { CampaignService } from './application/campaign-service.ts';
import { CampaignWatch } from './application/campaign-watch.ts';
import { CouponLifecycle } from './application/coupon-lifecycle.ts';
import { CouponIssuer } from './application/issue-coupon.ts';
import { PageTokens } from './application/page-tokens.ts';
import type { CampaignRepository, CouponRepository } from './application/ports.ts';
import { ClaimReconciler } from './application/reconcile-claims.ts';
import type { Config } from './config.ts';
import { CouponService } from './gen/coupon/v1/coupon_pb.js';
import { file_coupon_v1_errors } from './gen/coupon/v1/errors_pb.js';
import { Health } from './gen/grpc/health/v1/health_pb.js';
import { readBuildInfo } from './infrastructure/build-info.ts';
import { MikroOrmCampaignRepository } from './infrastructure/db/campaign-repository.ts';
import { MikroOrmCouponLedger } from './infrastructure/db/coupon-lifecycle-repository.ts';
import { MikroOrmCouponRepository } from './infrastructure/db/coupon-repository.ts';
import { GroupCommitCouponRepository } from './infrastructure/db/group-commit.ts';
import { type Database, openDatabase } from './infrastructure/db/orm.ts';
import { DependencyBreaker } from './infrastructure/dependency-breaker.ts';
import { claimKeyspace, deploymentId, KeyspaceTakenError } from './infrastructure/keyspace-owner.ts';
import { Metrics } from './infrastructure/metrics.ts';
import { runPeriodically } from './infrastructure/periodic.ts';
import { RedisCampaignActivity } from './infrastructure/redis/campaign-activity.ts';
import {
  listenForNewCampaigns,
  RedisCampaignAnnouncer,
} from './infrastructure/redis/campaign-announcements.ts';
import {
  connectRedis,
  describeRedis,
  type RedisClient,
  subscriberFor,
} from './infrastructure/redis/client.ts';
import { mastersRequiringFullCoverage } from './infrastructure/redis/cluster-settings.ts';
import { OpeningMemory } from './infrastructure/redis/opening-memory.ts';
import { ShardBreakers } from './infrastructure/redis/shard-breakers.ts';
import { RedisSlotGate } from './infrastructure/redis/slot-gate.ts';
import { SoldOutCachingGate } from './infrastructure/redis/sold-out-cache.ts';
import { TracedCampaignActivity, TracedSlotGate } from './infrastructure/traced-ports.ts';
import { Tracing } from './infrastructure/tracing.ts';

/**
 * No request of this API needs more than a few KiB (a name of 200 characters, ids, timestamps);
 * bounding every request, after decompression, far below what would take long to parse keeps one
 * request from holding the event loop (a 60 MB user_id or a gzip bomb took seconds). Larger
 * requests are RESOURCE_EXHAUSTED before their body is decoded.
 */
const MAX_REQUEST_BYTES = 64 * 1024;
/** GetCampaign of a 100,000-coupon campaign is ~3 MB; leave room for ten times that. */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

export interface App {
  readonly config: Config;
  readonly logger: Logger;
  /** Set while tracing is on (OTEL_EXPORTER_OTLP_ENDPOINT). */
  readonly tracing: Tracing | undefined;
  readonly services: Services;
  listen(): Promise<net.AddressInfo>;
  close(): Promise<void>;
}

export interface Services {
  readonly campaigns: CampaignService;
  readonly issuer: CouponIssuer;
  /** Admin changes of running campaigns: close, change the amount. */
  readonly operations: CampaignOperations;
  /** WatchCampaign's feeds: one reader per watched campaign on this instance. */
  readonly watch: CampaignWatch;
  /** After issue: GetCoupon, ListUserCoupons, RedeemCoupon, CancelRedemption, IssueCoupons. */
  readonly lifecycle: CouponLifecycle;
  readonly reconciler: ClaimReconciler;
  /** The ids of every live campaign, so made-up ids are refused from memory. */
  readonly directory: CampaignDirectory;
  /** Which campaigns have had claims lately (shared in Redis), for the reconciler. */
  readonly activity: RedisCampaignActivity;
  readonly gate: SoldOutCachingGate;
  /** The gate without the process-local cache, for looking at its keys. */
  readonly redisGate: RedisSlotGate;
  readonly repositories: { readonly campaigns: CampaignRepository; readonly coupons: CouponRepository };
  readonly redis: RedisClient;
  readonly db: Database;
  readonly breakers: {
    readonly redis: DependencyBreaker;
    readonly database: DependencyBreaker;
    /** Large reads (GetCampaign with its codes): their failures never open the issue path's breaker. */
    readonly databaseReads: DependencyBreaker;
  };
  /** On a cluster, the breaker of each master campaigns' calls went to (see ShardBreakers). */
  readonly shardBreakers: ShardBreakers;
  readonly metrics: Metrics;
  close(): Promise<void>;
}

/** Connects the stores and wires the use cases; the API is built on top in `buildApp`. */
/** What the process does with a fault found after start that it must not run on with. */
export interface ProcessHooks {
  /** Default: log it as fatal and go on (a test); `main.ts` exits 1. */
  readonly onFatal?: (error: Error) => void;
}

export async function buildServices(
  config: Config,
  logger: Logger,
  metrics = new Metrics(readBuildInfo(config.buildCommit)),
  hooks: ProcessHooks = {},
  tracing?: Tracing,
): Promise<Services> {
  const redis = connectRedis({
    url: config.redisUrl,
    clusterNodes: config.redisClusterNodes,
    sentinel: config.redisSentinel,
    timeoutMs: config.dependencyTimeoutMs,
    logger,
  });
  const redisReady = new Promise<void>((resolve) => {
    redis.once('ready', resolve);
    setTimeout(resolve, config.dependencyTimeoutMs).unref();
  });
  if (redis instanceof Cluster) {
    redis.once('ready', () => {
      mastersRequiringFullCoverage(redis).then(
        (masters) => {
          if (masters.length === 0) return;
          logger.warn(
            { masters },
            'Redis Cluster runs with cluster-require-full-coverage yes: while one master fails over, every shard refuses every call; set it to no (see README, Scaling out)',
          );
        },
        () => undefined,
      );
    });
  }

  const db = await openDatabase({
    url: config.databaseUrl,
    poolSize: config.dbPoolSize,
    timeoutMs: config.dependencyTimeoutMs,
    onQuery: () => metrics.dbQueries.inc(),
  }).catch((error) => {
    redis.disconnect();
    throw error;
  });
  await redisReady;
  await claimKeyspaceForDeployment(config, logger, redis, db, hooks).catch(async (error: unknown) => {
    await Promise.allSettled([db.close(), redis.quit()]);
    throw error;
  });

  const breakerOptions = { timeoutMs: config.dependencyTimeoutMs, resetMs: config.breakerResetMs };
  const breakers = {
    redis: new DependencyBreaker('redis', breakerOptions),
    database: new DependencyBreaker('database', breakerOptions),
    databaseReads: new DependencyBreaker('database', { ...breakerOptions, label: 'database_reads' }),
  };
  const observeBreaker = (breaker: DependencyBreaker) => {
    const dependency = breaker.label;
    metrics.breakerState.set({ dependency }, 0);
    breaker.on('open', () => {
      metrics.breakerState.set({ dependency }, 1);
      logger.error({ dependency }, 'circuit open: failing calls fast');
    });
    breaker.on('halfOpen', () => metrics.breakerState.set({ dependency }, 0.5));
    breaker.on('close', () => {
      metrics.breakerState.set({ dependency }, 0);
      logger.info({ dependency }, 'circuit closed: dependency back');
    });
    breaker.on('failure', () => metrics.dependencyErrors.inc({ dependency }));
    return breaker;
  };
  for (const breaker of Object.values(breakers)) observeBreaker(breaker);
  // On a cluster, a campaign's calls go through the breaker of the master owning its slot, so a
  // failing shard opens only its own circuit; on one server they share `breakers.redis`.
  const shardBreakers = new ShardBreakers(redis, breakers.redis, (label) =>
    observeBreaker(new DependencyBreaker('redis', { ...breakerOptions, label })),
  );

  const redisGate = new RedisSlotGate(redis, {
    keyPrefix: config.redisKeyPrefix,
    breaker: breakers.redis,
    campaignBreaker: (key) => shardBreakers.forKey(key),
    claimsPerUserPerSecond: config.issueRateLimitPerUser,
  });
  const subscriber = subscriberFor(redis);
  const gate = await SoldOutCachingGate.create(redisGate, redis, subscriber, {
    channel: `${config.redisKeyPrefix}slots-returned`,
    trustMs: 2_000,
    maxUsers: 200_000,
    onSlotReturned: () => metrics.claimsSettled.inc({ how: 'released' }),
    // A "not started" answer is believed for a second, and never within 1 ms of the opening:
    // a crowd that arrives early costs Redis about one claim a second per campaign per instance.
    openings: new OpeningMemory({ trustMs: 1_000, marginMs: 1 }),
  });
  const campaignRepository = new MikroOrmCampaignRepository(db, breakers.database, breakers.databaseReads);
  const couponRepository = new GroupCommitCouponRepository(
    new MikroOrmCouponRepository(db, breakers.database, {
      onRetry: (conflict) => metrics.dbLockRetries.inc({ conflict }),
      // A retry must start while the caller still waits for the answer.
      retryWithinMs: (2 * config.dependencyTimeoutMs) / 3,
    }),
    {
      maxBatch: 500,
      maxInFlight: 2,
      onBatch: (size, seconds) => {
        metrics.dbBatchSize.observe(size);
        metrics.dbBatchDuration.observe(seconds);
      },
      ...(tracing ? { tracing } : {}),
    },
  );
  const directory = new CampaignDirectory({
    campaigns: campaignRepository,
    announcer: new RedisCampaignAnnouncer(redis, `${config.redisKeyPrefix}campaign-created`),
  });
  await listenForNewCampaigns(subscriber, `${config.redisKeyPrefix}campaign-created`, directory);
  await directory.load().catch((error) =>
    // Until a periodic read succeeds, ids it would refuse are looked up in the database.
    logger.warn({ err: error }, 'could not read the live campaigns; unknown ids go to the database for now'),
  );
  const refreshingDirectory = runPeriodically(async () => {
    const wasLoaded = directory.isLoaded;
    try {
      await directory.refresh();
      if (!wasLoaded) logger.info({ campaigns: directory.size }, 'read the live campaigns');
    } catch (error) {
      if (wasLoaded) logger.debug({ err: error }, 'reading new campaigns failed; will retry');
      else logger.warn({ err: error }, 'reading the live campaigns failed; will retry');
    }
  }, config.campaignRefreshMs);

  // The reconciler forgets a campaign after this long without a mark; a mark stands for half
  // of it, the other half the margin for a pass in progress.
  const idleAfterMs = 2 * config.reconcileAfterMs;
  const activity = new RedisCampaignActivity(redis, {
    keyPrefix: config.redisKeyPrefix,
    breaker: (key) => shardBreakers.forKey(key),
    markStandsForMs: idleAfterMs / 2,
    onMarkFailed: (campaignId, error) => {
      metrics.activityMarkFailures.inc();
      logger.debug({ campaignId, err: error }, 'marking a campaign active failed; its claims go on');
    },
  });
  const reconciler = new ClaimReconciler({
    gate,
    campaigns: campaignRepository,
    coupons: couponRepository,
    activity,
    staleAfterMs: config.reconcileAfterMs,
    idleAfterMs,
    sweepPerPass: config.reconcileSweepSize,
    onCampaignFailed: (campaignId, error) => {
      metrics.reconcileFailures.inc();
      logger.warn({ campaignId, err: error }, 'reconciling a campaign failed; will retry next pass');
    },
    onActiveSetFailed: (error) => {
      metrics.reconcileFailures.inc();
      logger.warn({ err: error }, 'reading the active campaigns failed; this pass sweeps only');
    },
    onActiveInspected: (inspected) => {
      const now = Date.now();
      metrics.setCampaignFigures(
        inspected
          .filter(
            ({ campaign, inspection }) =>
              inspection.pending > 0 ||
              (campaign.issuedAt.getTime() <= now && now < campaign.expiresAt.getTime()),
          )
          .map(({ campaign, inspection }) => ({
            campaignId: campaign.id,
            amount: campaign.amount,
            issued: campaign.issuedCount,
            remaining: inspection.remaining,
            stale: inspection.stale,
          })),
      );
    },
  });
  const reconciling = runPeriodically(async () => {
    try {
      const report = await reconciler.reconcile();
      metrics.reconcilePasses.inc({ result: 'ok' });
      metrics.claimsSettled.inc({ how: 'reconciled_released' }, report.released);
      metrics.claimsSettled.inc({ how: 'reconciled_confirmed' }, report.confirmed);
      metrics.claimsSettled.inc({ how: 'adopted' }, report.adopted);
      metrics.claimsSettled.inc({ how: 'leaked_returned' }, report.leaked);
      metrics.activeCampaigns.set(report.active);
      if (report.leaked > 0) {
        // Slots counted as taken with neither a row nor a pending claim behind them: the gate and
        // the database disagreed, which only a lost Redis write or a defect explains.
        logger.warn(report, 'returned leaked slots: the gate counted claims no coupon stands behind');
      } else if (report.confirmed + report.released + report.adopted > 0) {
        logger.info(report, 'reconciled pending claims');
      }
    } catch (error) {
      metrics.reconcilePasses.inc({ result: 'failed' });
      logger.warn({ err: error }, 'reconciling pending claims failed; will retry');
    }
  }, config.reconcileIntervalMs);

  // Every instance of the deployment shares its id, so a page token from one is honoured by all.
  const pageTokens = new PageTokens(await deploymentId(db));
  const gateControls = {
    now: (campaignId?: string) => gate.now(campaignId),
    loadCampaign: (state: Parameters<typeof gate.loadCampaign>[0]) => gate.loadCampaign(state),
    closeWindow: (campaignId: string) => redisGate.closeWindow(campaignId),
    changeAmount: (campaignId: string, difference: number, amount: number) =>
      redisGate.changeAmount(campaignId, difference, amount),
    readLive: (campaignId: string) => redisGate.readLive(campaignId),
    forgetSoldOut: (campaignId: string) => gate.forgetSoldOut(campaignId),
  };
  const watch = new CampaignWatch({
    campaigns: campaignRepository,
    gate: gateControls,
    options: {
      maxLifetimeMs: config.watchLifetimeMs,
      messagesPerSecond: config.watchMessagesPerSecond,
      settleMs: 2 * config.dependencyTimeoutMs,
    },
  });

  const issuer = new CouponIssuer({
    // Traced, the issuer's store calls are spans of the call; the reconciler's are not traced.
    gate: tracing ? new TracedSlotGate(gate, tracing) : gate,
    campaigns: campaignRepository,
    coupons: couponRepository,
    directory,
    activity: tracing ? new TracedCampaignActivity(activity, tracing) : activity,
    settling: {
      writeMs: 2 * config.dependencyTimeoutMs,
      settleAfterMs: config.reconcileAfterMs + config.reconcileIntervalMs,
    },
  });
  const lifecycle = new CouponLifecycle({
    ledger: new MikroOrmCouponLedger(db, breakers.databaseReads),
    campaigns: campaignRepository,
    gate,
    issuer,
    pageTokens,
  });

  return {
    campaigns: new CampaignService({
      campaigns: campaignRepository,
      gate,
      directory,
      pageTokens,
      maxConcurrentCodeReads: config.campaignCodeReadsMax,
    }),
    operations: new CampaignOperations({ campaigns: campaignRepository, gate: gateControls, directory }),
    watch,
    issuer,
    lifecycle,
    reconciler,
    directory,
    activity,
    gate,
    redisGate,
    repositories: { campaigns: campaignRepository, coupons: couponRepository },
    redis,
    db,
    breakers,
    shardBreakers,
    metrics,
    async close() {
      watch.close();
      await Promise.all([reconciling.stop(), refreshingDirectory.stop()]);
      for (const breaker of Object.values(breakers)) breaker.shutdown();
      shardBreakers.shutdown();
      metrics.close();
      await Promise.allSettled([db.close(), redis.quit(), subscriber.quit()]);
    },
  };
}

/**
 * Stops the start when another deployment owns this Redis keyspace. With Redis down at start the
 * check runs once it connects, and a conflict found then is fatal (`hooks.onFatal`): the service
 * must not write into another deployment's gates.
 */
async function claimKeyspaceForDeployment(
  config: Config,
  logger: Logger,
  redis: RedisClient,
  db: Database,
  hooks: ProcessHooks,
) {
  const claim = async () =>
    claimKeyspace({
      redis,
      keyPrefix: config.redisKeyPrefix,
      where: describeRedis({
        url: config.redisUrl,
        clusterNodes: config.redisClusterNodes,
        sentinel: config.redisSentinel,
      }),
      deploymentId: await deploymentId(db),
    });
  if (redis.status === 'ready') return claim();
  logger.warn('redis is not reachable: the key prefix is checked for another deployment once it is');
  const checkWhenReady = () => {
    claim().catch((error: unknown) => {
      if (error instanceof KeyspaceTakenError) {
        logger.fatal({ err: error }, error.message);
        hooks.onFatal?.(error);
        return;
      }
      // Redis went away again, or a store did not answer in time: try again soon (a 'ready'
      // alone may never come again while the connection stays up).
      setTimeout(checkWhenReady, 5_000).unref();
    });
  };
  redis.once('ready', checkWhenReady);
}

/**
 * Whether the stores answer. On one Redis server, it must answer. On a cluster each master is
 * asked: the instance serves while at least one answers (campaigns on the others fail
 * UNAVAILABLE by their own breakers), and the ones that do not are named as degraded.
 */
async function checkStores(services: Services, timeoutMs: number): Promise<DependencyReport> {
  const { redis, db } = services;
  const database = () => db.isConnected();
  if (!(redis instanceof Cluster)) {
    return {
      ready: await checkDependencies({ redis: () => redis.ping(), database }, timeoutMs),
      degraded: [],
    };
  }
  const masters = Object.fromEntries(
    redis
      .nodes('master')
      .map((node) => [`redis ${node.options.host}:${node.options.port}`, () => node.ping()]),
  );
  const answers = await checkDependencies({ ...masters, database }, timeoutMs);
  const degraded = Object.keys(masters).filter((name) => !answers[name]);
  const someMaster = Object.keys(masters).length > degraded.length;
  return { ready: { redis: someMaster, database: answers.database === true }, degraded };
}

/**
 * The composition root: the one place that knows every concrete class. `tracing`: where spans go
 * (a test's in-memory exporter); by default what `config.tracing` says, none when it is off.
 * A logger made here carries the trace id of the call in progress on each line (see
 * `loggerFor`); one passed in should be made with `loggerFor` too.
 */
export async function buildApp(
  config: Config,
  logger?: Logger,
  hooks: ProcessHooks = {},
  tracing?: Tracing,
): Promise<App> {
  const build = readBuildInfo(config.buildCommit);
  tracing ??= config.tracing && (await Tracing.start(config.tracing, build));
  logger ??= loggerFor(config, tracing);
  const services = await buildServices(config, logger, new Metrics(build), hooks, tracing).catch(
    async (error: unknown) => {
      await tracing?.close();
      throw error;
    },
  );
  let draining = false;
  const probe: HealthProbe = {
    isDraining: () => draining,
    // Each check bounded below the handlers' 1 s limit, so /readyz names the one that hangs.
    dependenciesReady: () => checkStores(services, 800),
  };
  services.metrics.observeReadiness(async () => {
    const { ready: dependencies } = await checkStores(services, 800);
    return { ready: !draining && Object.values(dependencies).every(Boolean), dependencies };
  });
  const observer = new CallObserver(services.metrics, logger);
  const users = config.userTokens && { tokens: await UserTokens.create(config.userTokens) };
  if (users) services.metrics.observeRememberedUserTokens(() => users.tokens.rememberedCount);
  const trustProxy = compileTrustedProxies(config.trustProxy);
  const connect = createConnectHandler<VerifiedCall>({
    routes: (router) => {
      router
        .service(
          CouponService,
          couponServiceImpl({
            ...services,
            onEntryFailures: ({ campaignId, count, first }) =>
              logger.error(
                { campaignId, count, userId: first.userId, err: first.error },
                'IssueCoupons entries failed: answered internal error (the first one here)',
              ),
          }),
        )
        .service(Health, healthServiceImpl(probe));
      registerReflection(router, [file_coupon_v1_errors]);
    },
    // Outermost first: map errors to codes and observe every call, then authenticate, then limit.
    interceptors: [
      observabilityInterceptor(observer, tracing),
      ...(config.adminToken ? [adminAuthInterceptor(config.adminToken)] : []),
      ...(users ? [userAuthInterceptor(users.tokens)] : []),
      ipRateLimitInterceptor({
        redis: services.redis,
        keyPrefix: config.redisKeyPrefix,
        perIp: config.issueRateLimitPerIp,
      }),
    ],
    contextValues: (request, verified) =>
      createContextValues()
        .set(clientAddressKey, () => clientAddress(request, trustProxy))
        .set(verifiedUserKey, verified),
    readMaxBytes: MAX_REQUEST_BYTES,
    writeMaxBytes: MAX_RESPONSE_BYTES,
    onHandlerError: (method, error) => logger.error({ method, err: error }, 'answering a call failed'),
  });
  const rpc = earlyRefusalHandler({
    issuer: services.issuer,
    observer,
    connect,
    ...(users ? { users } : {}),
    tracing,
  });
  const cors = corsMiddleware(config.corsOrigins);
  const health = httpHealthHandler(probe);
  const consolePages = config.console ? consoleHandler() : undefined;
  const route: RequestHandler = (request, response) => {
    if (health(request, response)) return;
    if (consolePages?.(request, response)) return;
    if (request.method === 'GET' && request.url === '/metrics') {
      services.metrics.render().then(
        ({ contentType, body }) => {
          response.statusCode = 200;
          response.setHeader('content-type', contentType);
          response.end(body);
        },
        () => {
          response.statusCode = 500;
          response.end();
        },
      );
      return;
    }
    cors(request as http.IncomingMessage, response as http.ServerResponse, () => rpc(request, response));
  };
  const server = createPolyglotServer(route, {
    limits: {
      headersTimeoutMs: config.httpHeadersTimeoutMs,
      requestTimeoutMs: config.httpRequestTimeoutMs,
      idleTimeoutMs: config.httpIdleTimeoutMs,
      maxConnections: config.maxConnections,
    },
    onConnectionsRefused: (refused, cause) =>
      logger.warn({ refused, cause, maxConnections: config.maxConnections }, 'refused new connections'),
  });

  return {
    config,
    logger,
    tracing,
    listen: () => server.listen(config.port, config.host),
    services,
    async close() {
      draining = true;
      // Watch streams would otherwise hold the drain for the whole grace period.
      services.watch.close();
      await server.close(config.shutdownGraceMs);
      await services.close();
      // Last: the spans of the calls that drained go out too.
      await tracing?.close();
    },
  };
}

/** The service's logger: with tracing on, each line written inside a call carries its trace id. */
export function loggerFor(
  config: Config,
  tracing: Tracing | undefined,
  options: LoggerOptions = {},
  destination?: DestinationStream,
): Logger {
  const withTraceIds = {
    level: config.logLevel,
    ...options,
    ...(tracing ? { mixin: tracing.logFields } : {}),
  };
  return destination ? pino(withTraceIds, destination) : pino(withTraceIds);
}
