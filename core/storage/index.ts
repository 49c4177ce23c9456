/**
 * The ciphertext of artifact versions on their storage volume (docs/format.md, "Directory versions on disk"): where
 * a version's directory is, and how a publisher writes a new one.
 */
export { StorageError, type StorageErrorKind } from './errors.ts';
export {
  recipientKeyFingerprint,
  versionDirectory,
  writeVersion,
  type ArtifactIdentity,
  type WriteVersionOptions,
  type WrittenVersion,
} from './version-writer.ts';
