import cluster from 'node:cluster';
import { buildApp, loggerFor } from './app.ts';
import { type Config, ConfigError, loadConfig } from './config.ts';
import { readBuildInfo } from './infrastructure/build-info.ts';
import { openDatabase } from './infrastructure/db/orm.ts';
import { Tracing } from './infrastructure/tracing.ts';

let config: Config;
try {
  config = loadConfig();
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(error.message);
    process.exit(1);
  }
  throw error;
}

const build = readBuildInfo(config.buildCommit);
// The primary of WORKERS > 1 serves no call: only the processes that do trace.
const serves = config.workers <= 1 || !cluster.isPrimary;
const tracing = serves && config.tracing ? await Tracing.start(config.tracing, build) : undefined;
const logger = loggerFor(
  config,
  tracing,
  process.stdout.isTTY ? { transport: { target: 'pino-pretty' } } : {},
);
logger.info(
  { ...build, tracing: tracing && config.tracing ? config.tracing.tracesUrl : 'off' },
  'coupon-service starting',
);

if (config.workers > 1 && cluster.isPrimary) {
  await runPrimary(config);
} else {
  await runServer(config);
}

/** One process serving the port: builds the app, listens, drains on SIGTERM. */
async function runServer(config: Config): Promise<void> {
  const onFatal = (error: Error) => {
    console.error(error.message);
    process.exit(1);
  };
  const app = await buildApp(config, logger, { onFatal }, tracing).catch((error: unknown) => {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(1);
    }
    logger.fatal({ err: error }, 'could not start: is the database reachable at DATABASE_URL?');
    return exitOnceLogged(1);
  });
  const address = await app.listen().catch((error: NodeJS.ErrnoException) => {
    console.error(`could not listen on ${config.host}:${config.port}: ${error.code ?? error.message}`);
    process.exit(1);
  });
  logger.info({ host: address.address, port: address.port }, 'coupon-service listening');

  let stopping = false;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'draining: no new connections, finishing in-flight calls');
      app.close().then(
        () => {
          logger.info('stopped');
          void exitOnceLogged(0);
        },
        (error: unknown) => {
          logger.error({ err: error }, 'unclean stop');
          void exitOnceLogged(1);
        },
      );
    });
  }
}

/**
 * WORKERS > 1: the primary applies migrations once, then forks workers that share the port
 * (Node's cluster hands connections round-robin). SIGTERM is passed on to every worker; the
 * primary exits 0 when all of them drained and exited 0.
 */
async function runPrimary(config: Config): Promise<void> {
  try {
    const db = await openDatabase({
      url: config.databaseUrl,
      poolSize: 1,
      timeoutMs: config.dependencyTimeoutMs,
    });
    await db.close();
  } catch (error) {
    logger.fatal({ err: error }, 'could not start: is the database reachable at DATABASE_URL?');
    await exitOnceLogged(1);
  }
  let stopping = false;
  let failed = false;
  for (let i = 0; i < config.workers; i++) cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    if (code !== 0) failed = true;
    if (!stopping) {
      logger.error({ worker: worker.id, code, signal }, 'worker died; starting another');
      cluster.fork();
      return;
    }
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(failed ? 1 : 0);
  });
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      stopping = true;
      logger.info({ signal, workers: config.workers }, 'draining every worker');
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill(signal);
    });
  }
}

/**
 * Exits once every log line is written, in order. pino writes stdout asynchronously and, at
 * exit, flushes what is buffered synchronously: a line still being written then lands after the
 * last one ("stopped" before "draining" in 1 of 5 idle stops measured here).
 */
function exitOnceLogged(code: number): Promise<never> {
  process.exitCode = code;
  // Should stdout never drain (a closed pipe), the process still ends soon.
  setTimeout(() => process.exit(code), 1_000);
  logger.flush(() => process.exit(code));
  return new Promise<never>(() => undefined);
}
