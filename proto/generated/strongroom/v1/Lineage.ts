// Original file: proto/strongroom/v1/keybroker.proto

import type {
  LineageParent as _strongroom_v1_LineageParent,
  LineageParent__Output as _strongroom_v1_LineageParent__Output,
} from '../../strongroom/v1/LineageParent.ts';
import type {
  LineageSource as _strongroom_v1_LineageSource,
  LineageSource__Output as _strongroom_v1_LineageSource__Output,
} from '../../strongroom/v1/LineageSource.ts';

/**
 * Provenance of a version (spec.versions[].lineage).
 */
export interface Lineage {
  /**
   * Artifacts and datasets this version was derived from; at most 16.
   */
  parents?: _strongroom_v1_LineageParent[];
  /**
   * The code and run that produced the version; optional.
   */
  source?: _strongroom_v1_LineageSource | null;
}

/**
 * Provenance of a version (spec.versions[].lineage).
 */
export interface Lineage__Output {
  /**
   * Artifacts and datasets this version was derived from; at most 16.
   */
  parents: _strongroom_v1_LineageParent__Output[];
  /**
   * The code and run that produced the version; optional.
   */
  source: _strongroom_v1_LineageSource__Output | null;
}
