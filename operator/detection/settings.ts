/**
 * The detection configuration in force (core/detection/config.ts), from ConfigMap `strongroom-detection` in the
 * operator's namespace, watched by an informer on that one ConfigMap. Like the classification table
 * (operator/governance/table.ts): absent → the defaults; a valid change replaces the configuration; an invalid one is
 * logged at error, recorded as a Warning Event `InvalidDetectionConfig` on the ConfigMap, and the previous
 * configuration stays in force (at start-up, the defaults).
 */
import { createHash } from 'node:crypto';
import type { V1ConfigMap } from '@kubernetes/client-node';
import type winston from 'winston';
import {
  DEFAULT_DETECTION_CONFIG,
  DETECTION_CONFIGMAP,
  DetectionConfigError,
  parseDetectionConfig,
  type DetectionConfig,
} from '../../core/detection/config.ts';

export { DETECTION_CONFIGMAP } from '../../core/detection/config.ts';

export interface DetectionSettingsOptions {
  /** The operator's namespace. */
  readonly namespace: string;
  readonly logger: winston.Logger;
  /** Records the Warning Event on the ConfigMap when a change is invalid. */
  readonly warn?: (configMap: V1ConfigMap, reason: string, message: string) => void;
}

/** A stable fingerprint of ConfigMap data (sorted keys), first 16 hex digits of SHA-256; `default` for none. */
function dataHash(data: Readonly<Record<string, string>> | undefined): string {
  if (data === undefined) return 'default';
  const canonical = JSON.stringify(
    Object.keys(data)
      .sort()
      .map((k) => [k, data[k]]),
  );
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

export class DetectionSettings {
  readonly #o: DetectionSettingsOptions;
  #config: DetectionConfig = DEFAULT_DETECTION_CONFIG;
  #hash = 'default';

  constructor(options: DetectionSettingsOptions) {
    this.#o = options;
  }

  /** The configuration in force. */
  get current(): DetectionConfig {
    return this.#config;
  }

  /** Fingerprint of the data in force (`default` for the built-in configuration). */
  get hash(): string {
    return this.#hash;
  }

  get where(): string {
    return `${this.#o.namespace}/${DETECTION_CONFIGMAP}`;
  }

  /**
   * The ConfigMap as it is now (undefined when absent or deleted). Returns true when the configuration in force
   * changed. An invalid ConfigMap changes nothing (error log, Warning Event).
   */
  update(configMap: V1ConfigMap | undefined): boolean {
    const data = configMap === undefined ? undefined : (configMap.data ?? {});
    const hash = dataHash(data);
    if (hash === this.#hash) return false;
    let config: DetectionConfig;
    try {
      config = data === undefined ? DEFAULT_DETECTION_CONFIG : parseDetectionConfig(data);
    } catch (error) {
      if (!(error instanceof DetectionConfigError) || configMap === undefined) throw error;
      this.#o.logger.error(
        'invalid detection ConfigMap; the previous detection configuration stays in force',
        {
          configMap: this.where,
          error: error.message,
          hash: this.#hash,
        },
      );
      this.#o.warn?.(
        configMap,
        'InvalidDetectionConfig',
        `${error.message}\nThe previous detection configuration (${this.#hash}) stays in force.`,
      );
      return false;
    }
    const previous = this.#hash;
    this.#config = config;
    this.#hash = hash;
    this.#o.logger.info(
      data === undefined
        ? 'detection ConfigMap absent; the default detection configuration is in force'
        : 'detection configuration changed',
      { configMap: this.where, hash, previousHash: previous },
    );
    return true;
  }
}
