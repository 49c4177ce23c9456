/**
 * The ciphertext of artifact versions on their storage, a volume or an S3 bucket (docs/format.md, "Directory
 * versions on disk" and "Reading from object storage"): where a version is, how a publisher writes a new one, and
 * how it is uploaded to and read from object storage.
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
export {
  isCiphertextFile,
  isCiphertextObject,
  s3Client,
  s3DirectorySource,
  s3ObjectSource,
  uploadVersion,
  versionKeyPrefix,
  type S3Credentials,
  type S3Location,
  type S3ObjectRef,
  type S3VersionRef,
  type UploadVersionOptions,
} from './s3.ts';
