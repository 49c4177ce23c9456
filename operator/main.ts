/**
 * `node operator/main.ts [flags]`: the Strongroom operator process. Exit codes: 0 after a clean shutdown (SIGTERM or
 * SIGINT), 1 when it lost its leader lease or failed at runtime, 2 for invalid configuration.
 */
import { PolicyError } from '../core/policy/errors.ts';
import { parseKekRotationOverrides } from '../core/policy/rotation.ts';
import { ConfigError, parseConfig } from './config.ts';
import { createRootLogger } from './log.ts';
import { Operator } from './operator.ts';

async function main(): Promise<number> {
  let config;
  try {
    config = parseConfig(process.argv.slice(2), process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      (error.helpRequested ? process.stdout : process.stderr).write(`${error.message}\n`);
      return error.helpRequested ? 0 : 2;
    }
    throw error;
  }
  try {
    parseKekRotationOverrides(config.rotation);
  } catch (error) {
    if (!(error instanceof PolicyError)) throw error;
    process.stderr.write(`--kek-rotation: ${error.message}\n`);
    return 2;
  }
  const logger = createRootLogger({ level: config.logLevel });
  const operator = new Operator(config, logger);
  let exitCode = 0;
  const finished = new Promise<void>((resolve) => {
    const stop = (code: number, why: string): void => {
      logger.info('stopping', { reason: why });
      exitCode = code;
      const deadline = setTimeout(() => {
        logger.error('shutdown timed out', { timeoutMs: config.shutdownTimeoutMs });
        process.exit(code === 0 ? 1 : code);
      }, config.shutdownTimeoutMs);
      deadline.unref();
      operator.stop().then(resolve, (error: unknown) => {
        logger.error('shutdown failed', { error });
        exitCode = 1;
        resolve();
      });
    };
    process.once('SIGTERM', () => {
      stop(0, 'SIGTERM');
    });
    process.once('SIGINT', () => {
      stop(0, 'SIGINT');
    });
    operator.onFatal = (reason) => {
      stop(1, reason);
    };
  });
  try {
    const { healthPort } = await operator.start();
    logger.info('operator started', { identity: config.identity, namespace: config.namespace, healthPort });
  } catch (error) {
    await operator.stop();
    if (error instanceof PolicyError) {
      // An invalid classification table (ConfigMap --governance-config): a configuration error, like a bad flag.
      logger.error('operator failed to start: invalid governance configuration', { error: error.message });
      process.stderr.write(`${error.message}\n`);
      return 2;
    }
    logger.error('operator failed to start', { error });
    return 1;
  }
  await finished;
  logger.info('operator stopped', { exitCode });
  return exitCode;
}

process.exitCode = await main();
