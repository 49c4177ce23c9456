/**
 * The sidecar's entry point (`node sidecar/main.ts`, contract `SIDECAR_COMMAND`). Reads the environment the webhook
 * set (exit 2 with a message naming the variable when it is wrong), logs JSON lines through core/logging, and runs
 * the {@link Sidecar}. On SIGTERM or SIGINT: publishes the output first when the plan has `publish`, then wipes every
 * plaintext directory and the output directory, and exits 0 (1 if the wipe failed).
 */
import type winston from 'winston';
import { componentLogger, createRootLogger } from '../core/logging/index.ts';
import { loadKeyBroker } from '../proto/keybroker.ts';
import { ConfigError, loadConfig, type SidecarConfig } from './config.ts';
import { publishOutput } from './publish.ts';
import { Sidecar } from './sidecar.ts';

/** Exit code for a configuration error. */
export const EXIT_CONFIG = 2;

/** Flushes `logger` and exits with `code` (after at most 2 s). */
function exitAfter(logger: winston.Logger, code: number): void {
  logger.on('finish', () => process.exit(code));
  logger.end();
  setTimeout(() => process.exit(code), 2000).unref();
}

function configure(): SidecarConfig | undefined {
  try {
    return loadConfig(process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    const logger = createRootLogger({ level: 'error', stream: process.stderr });
    logger.error(`invalid configuration: ${error.message}`, {
      variable: error.variable,
      component: 'sidecar',
    });
    exitAfter(logger, EXIT_CONFIG);
    return undefined;
  }
}

async function main(): Promise<void> {
  const config = configure();
  if (config === undefined) return;
  const logger = createRootLogger({ level: config.logLevel });
  const log = componentLogger(logger, 'sidecar/main');
  const sidecar = new Sidecar({ config, keyBroker: loadKeyBroker(), logger });
  let stopping = false;
  const stop = async (signal: NodeJS.Signals): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info('stopping', { signal });
    let code = 0;
    const publish = config.plan.publish;
    if (publish !== undefined) {
      try {
        const outcome = await publishOutput(
          publish,
          sidecar.client(),
          componentLogger(logger, 'sidecar/publish'),
        );
        log.info('publish finished', { published: outcome.published });
      } catch (error) {
        log.error('publishing failed', { err: error });
      }
    }
    try {
      await sidecar.shutdown();
      log.info('wiped; exiting');
    } catch (error) {
      log.error('wiping on shutdown failed', { err: error });
      code = 1;
    }
    exitAfter(logger, code);
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const)
    process.on(signal, () => {
      void stop(signal);
    });
  await sidecar.start();
}

main().catch((error: unknown) => {
  const logger = createRootLogger({ level: 'error', stream: process.stderr });
  logger.error('the sidecar failed', { err: error, component: 'sidecar' });
  exitAfter(logger, 1);
});
