/**
 * Strongroom's envelope encryption (format: docs/format.md). The public surface: seal and open files, directories
 * and small payloads under a per-version DEK, bound to an artifact context; seal a DEK to a recipient public key.
 */
export { EnvelopeError, type EnvelopeErrorKind } from './errors.ts';
export type { EnvelopeContext } from './format.ts';
export {
  encryptFile,
  decryptFile,
  verifyFile,
  sha256File,
  type EncryptOptions,
  type EncryptResult,
  type DecryptOptions,
  type DecryptResult,
} from './file.ts';
export {
  encryptDirectory,
  decryptDirectory,
  decryptDirectoryFromSource,
  readManifest,
  MANIFEST_FILE,
  listTree,
  type Manifest,
  type ManifestEntry,
  type DirectoryOptions,
  type EncryptDirectoryOptions,
  type DecryptDirectoryOptions,
  type SourceDirectoryOptions,
} from './directory.ts';
export {
  decryptFromSource,
  startsWithEnvelopeMagic,
  DEFAULT_READS_IN_FLIGHT,
  DEFAULT_WINDOW_SEGMENTS,
  type CiphertextSource,
  type CiphertextDirectorySource,
  type RangedReadOptions,
  type SourceDecryptOptions,
} from './ranged.ts';
export { treeDigest, assertDigestablePath } from './tree-digest.ts';
export { encryptBytes, decryptBytes } from './bytes.ts';
export { SegmentPool } from './pool.ts';
export {
  SEAL_SUITE,
  newDek,
  generateRecipientKeyPair,
  sealDek,
  unsealDek,
  recipientKeyFromPem,
  type SealedDek,
  type SealContext,
  type RecipientKeyPair,
} from './seal.ts';
