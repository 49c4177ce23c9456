// Original file: proto/strongroom/v1/keybroker.proto

/**
 * The code and run that produced a version.
 */
export interface LineageSource {
  /**
   * Source repository of the training or export code (URL or host/path).
   */
  repository?: string;
  /**
   * Commit of the code, 7 to 64 lowercase hex digits.
   */
  commit?: string;
  /**
   * Identifier or URL of the pipeline or training run.
   */
  run?: string;
}

/**
 * The code and run that produced a version.
 */
export interface LineageSource__Output {
  /**
   * Source repository of the training or export code (URL or host/path).
   */
  repository: string;
  /**
   * Commit of the code, 7 to 64 lowercase hex digits.
   */
  commit: string;
  /**
   * Identifier or URL of the pipeline or training run.
   */
  run: string;
}
