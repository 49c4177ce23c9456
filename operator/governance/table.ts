/**
 * The classification table in force (core/policy/classification.ts), loaded from the ConfigMap
 * `strongroom-governance` (`--governance-config`) in the operator's namespace:
 * - at start-up with one GET: an absent ConfigMap gives the built-in defaults (logged once at info); an invalid one
 *   stops the operator with the ClassificationConfigError message;
 * - afterwards from a watch on that one ConfigMap (an informer with a name field selector): a valid change replaces
 *   the table and the caller re-evaluates every grant and artifact; an invalid change is logged at error, recorded as
 *   a Warning Event on the ConfigMap, and the previous table stays in force; a deleted ConfigMap brings back the
 *   defaults.
 * `--kek-rotation` overrides apply on top of whatever table is loaded. The table in force is exported as
 * `strongroom_governance_config_info{hash,source}` (1 for the current table) and logged whenever it changes.
 */
import { createHash } from 'node:crypto';
import type { CoreV1Api, V1ConfigMap } from '@kubernetes/client-node';
import { Gauge, type Registry } from 'prom-client';
import type winston from 'winston';
import { CLASSIFICATIONS, type Classification } from '../../core/api/index.ts';
import {
  DEFAULT_CLASSIFICATION_TABLE,
  formatClassificationConfig,
  parseClassificationConfig,
  withKekRotation,
  type ClassificationTable,
} from '../../core/policy/classification.ts';
import { PolicyError } from '../../core/policy/errors.ts';
import type { RotationOverrides, RotationTable } from '../../core/policy/rotation.ts';
import type { KekScope } from '../keys/artifact-keys.ts';

export type TableSource = 'default' | 'configmap';

export interface GovernanceTableOptions {
  /** The ConfigMap's namespace (the operator's) and name. */
  readonly namespace: string;
  readonly name: string;
  readonly logger: winston.Logger;
  /** Where `strongroom_governance_config_info` is registered (the operator's metrics registry). */
  readonly registry?: Registry;
  /** The `--kek-rotation` periods, applied on top of every table loaded. */
  readonly rotationOverrides?: RotationOverrides;
  /** Records the Warning Event on the ConfigMap when a change is invalid. */
  readonly warn?: (configMap: V1ConfigMap, reason: string, message: string) => void;
}

/** Why the operator refuses to start: the ConfigMap is invalid. The message names it and every problem. */
export class GovernanceConfigError extends PolicyError {
  constructor(where: string, cause: PolicyError) {
    super('invalid', `ConfigMap ${where}: ${cause.message}`, { cause });
  }
}

function statusCode(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

/** A short, stable fingerprint of a table: sha256 of its full ConfigMap form, sorted, first 16 hex digits. */
export function tableHash(table: ClassificationTable): string {
  const data = formatClassificationConfig(table);
  const canonical = JSON.stringify(
    Object.keys(data)
      .sort()
      .map((k) => [k, data[k]]),
  );
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

export class GovernanceTable {
  readonly #o: GovernanceTableOptions;
  #table: ClassificationTable;
  #hash: string;
  #source: TableSource = 'default';
  readonly #info: Gauge<'hash' | 'source'> | undefined;

  constructor(options: GovernanceTableOptions) {
    this.#o = options;
    this.#table = this.#withOverrides(DEFAULT_CLASSIFICATION_TABLE);
    this.#hash = tableHash(this.#table);
    this.#info =
      options.registry === undefined
        ? undefined
        : new Gauge({
            name: 'strongroom_governance_config_info',
            help: 'The classification table in force: 1 for its hash and source (default or configmap).',
            labelNames: ['hash', 'source'],
            registers: [options.registry],
          });
    this.#publish();
  }

  /** The table in force. Read it at the moment of a decision; never keep it. */
  get current(): ClassificationTable {
    return this.#table;
  }

  get hash(): string {
    return this.#hash;
  }

  get source(): TableSource {
    return this.#source;
  }

  /** `namespace/name` of the ConfigMap. */
  get where(): string {
    return `${this.#o.namespace}/${this.#o.name}`;
  }

  /**
   * A live view of the rotation periods: each property reads the current table, so a controller holding it sees
   * every change.
   */
  readonly rotation: RotationTable = this.#live((c) => this.#table.classifications[c].kekRotationMs);

  /** A live view of the KEK scopes: `artifact` for a classification with dedicatedKek, else `shared`. */
  readonly kekScopes: Readonly<Record<Classification, KekScope>> = this.#live((c) =>
    this.#table.classifications[c].dedicatedKek ? 'artifact' : 'shared',
  );

  /**
   * Start-up: reads the ConfigMap once. Absent → defaults (info log).
   * @throws {GovernanceConfigError} when it is invalid; other API errors are rethrown.
   */
  async load(core: CoreV1Api): Promise<void> {
    let configMap: V1ConfigMap | undefined;
    try {
      configMap = await core.readNamespacedConfigMap({ namespace: this.#o.namespace, name: this.#o.name });
    } catch (error) {
      if (statusCode(error) !== 404) throw error;
    }
    if (configMap === undefined) {
      this.#set(DEFAULT_CLASSIFICATION_TABLE, 'default');
      this.#o.logger.info('governance ConfigMap not found; using the built-in classification table', {
        configMap: this.where,
        hash: this.#hash,
      });
      return;
    }
    try {
      this.#set(parseClassificationConfig(configMap.data ?? {}), 'configmap');
    } catch (error) {
      if (error instanceof PolicyError) throw new GovernanceConfigError(this.where, error);
      throw error;
    }
    this.#o.logger.info('classification table loaded', { configMap: this.where, hash: this.#hash });
  }

  /**
   * A watch event: the ConfigMap as it is now (undefined when deleted). Returns true when the table in force
   * changed (the caller then re-evaluates everything). An invalid ConfigMap changes nothing: error log and a
   * Warning Event.
   */
  update(configMap: V1ConfigMap | undefined): boolean {
    let table: ClassificationTable;
    let source: TableSource;
    if (configMap === undefined) {
      table = DEFAULT_CLASSIFICATION_TABLE;
      source = 'default';
    } else {
      try {
        table = parseClassificationConfig(configMap.data ?? {});
        source = 'configmap';
      } catch (error) {
        if (!(error instanceof PolicyError)) throw error;
        this.#o.logger.error(
          'invalid governance ConfigMap; the previous classification table stays in force',
          {
            configMap: this.where,
            error: error.message,
            hash: this.#hash,
          },
        );
        this.#o.warn?.(
          configMap,
          'InvalidGovernanceConfig',
          `${error.message}\nThe previous classification table (${this.#hash}) stays in force.`,
        );
        return false;
      }
    }
    const before = this.#hash;
    const sourceBefore = this.#source;
    this.#set(table, source);
    if (before === this.#hash && sourceBefore === source) return false;
    this.#o.logger.info(
      configMap === undefined
        ? 'governance ConfigMap deleted; the built-in classification table is in force'
        : 'classification table changed',
      { configMap: this.where, hash: this.#hash, previousHash: before },
    );
    return before !== this.#hash;
  }

  #set(table: ClassificationTable, source: TableSource): void {
    this.#table = this.#withOverrides(table);
    this.#hash = tableHash(this.#table);
    this.#source = source;
    this.#publish();
  }

  #withOverrides(table: ClassificationTable): ClassificationTable {
    const overrides = this.#o.rotationOverrides;
    return overrides === undefined || Object.keys(overrides).length === 0
      ? table
      : withKekRotation(table, overrides);
  }

  #publish(): void {
    if (this.#info === undefined) return;
    this.#info.reset();
    this.#info.set({ hash: this.#hash, source: this.#source }, 1);
  }

  #live<V>(read: (c: Classification) => V): Readonly<Record<Classification, V>> {
    const view = {} as Record<Classification, V>;
    for (const c of CLASSIFICATIONS) Object.defineProperty(view, c, { enumerable: true, get: () => read(c) });
    return Object.freeze(view);
  }
}
