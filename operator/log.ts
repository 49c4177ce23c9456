/** The operator's logger is Strongroom's shared redacting logger (core/logging), re-exported for operator code. */
export * from '../core/logging/index.ts';
