/**
 * The sidecar's entry point (`node sidecar/main.ts`; the image runs its bundle, contract `SIDECAR_COMMAND`). Reads
 * the environment the webhook set (exit 2 with a message naming the variable when it is wrong), logs JSON lines
 * through core/logging, and runs the {@link Sidecar}. On SIGTERM or SIGINT: publishes the output first when the plan
 * has `publish`, then wipes every plaintext directory and the output directory, and exits 0 (1 if the wipe failed).
 *
 * Start-up is overlapped (docs/images.md, "Start-up"): only the configuration is loaded before the environment is
 * checked; then the first workload key starts generating on a thread-pool thread while this thread loads the rest of
 * the sidecar (grpc-js, winston, the proto, the envelope code), parses the proto and starts the probe server and the
 * segment workers.
 */
import type winston from 'winston';
import { ConfigError, loadConfig, type SidecarConfig } from './config.ts';

/** Exit code for a configuration error. */
export const EXIT_CONFIG = 2;

/** Flushes `logger` and exits with `code` (after at most 2 s). */
function exitAfter(logger: winston.Logger, code: number): void {
  logger.on('finish', () => process.exit(code));
  logger.end();
  setTimeout(() => process.exit(code), 2000).unref();
}

/** Logs `message` as an error on stderr (the root logger is loaded only now) and exits with `code`. */
async function failWith(code: number, message: string, fields: Record<string, unknown>): Promise<void> {
  const { createRootLogger } = await import('../core/logging/index.ts');
  const logger = createRootLogger({ level: 'error', stream: process.stderr });
  logger.error(message, { ...fields, component: 'sidecar' });
  exitAfter(logger, code);
}

async function configure(): Promise<SidecarConfig | undefined> {
  try {
    return loadConfig(process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    await failWith(EXIT_CONFIG, `invalid configuration: ${error.message}`, { variable: error.variable });
    return undefined;
  }
}

async function main(): Promise<void> {
  const config = await configure();
  if (config === undefined) return;
  const { generateWorkloadKeyPair } = await import('./identity.ts');
  const firstKeyPair = generateWorkloadKeyPair();
  firstKeyPair.catch(() => undefined); // the first attestation awaits it and sees a failure there

  const [{ componentLogger, createRootLogger }, { loadKeyBroker }, { publishOutput }, { Sidecar }] =
    await Promise.all([
      import('../core/logging/index.ts'),
      import('../proto/keybroker.ts'),
      import('./publish.ts'),
      import('./sidecar.ts'),
    ]);
  const logger = createRootLogger({ level: config.logLevel });
  const log = componentLogger(logger, 'sidecar/main');
  const sidecar = new Sidecar({ config, keyBroker: loadKeyBroker(), logger, firstKeyPair });
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
          { reconnect: () => sidecar.freshClient() },
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

main().catch((error: unknown) =>
  failWith(1, 'the sidecar failed', { err: error }).catch(() => {
    process.exit(1);
  }),
);
