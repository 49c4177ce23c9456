/**
 * The digest of a directory version (`ModelArtifact.spec.versions[].digest`): one SHA-256 over the tree's files, so
 * that anyone can recompute it from the plaintext with coreutils alone (docs/format.md, "Directory versions on
 * disk"). Inside the plaintext directory:
 *
 * ```sh
 * find . -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 -r sha256sum | sha256sum
 * ```
 *
 * That is SHA-256 over the lines `<sha256 hex of the file>  <relative path>\n` (two spaces, `/`-separated path
 * without a leading `./`), sorted by the UTF-8 bytes of the path. Paths that `sha256sum` would escape (a backslash,
 * a newline or a carriage return) are refused rather than escaped, so the definition never depends on the
 * coreutils version.
 */
import { createHash } from 'node:crypto';
import { isSha256Digest } from '../api/validation.ts';
import type { Manifest } from './directory.ts';
import { EnvelopeError } from './errors.ts';

const ESCAPED_BY_SHA256SUM = /[\\\n\r]/;

/**
 * Checks that `path` can appear in a tree digest (no backslash, newline or carriage return, which `sha256sum`
 * escapes), and throws EnvelopeError kind 'invalid' otherwise.
 */
export function assertDigestablePath(path: string): void {
  if (ESCAPED_BY_SHA256SUM.test(path))
    throw new EnvelopeError(
      'invalid',
      `${JSON.stringify(path)}: a file name with a backslash, newline or carriage return cannot be part of a version`,
    );
}

/**
 * The tree digest of a directory manifest, `sha256:<hex>` (see the module comment for the exact definition).
 *
 * @throws EnvelopeError kind 'manifest' for an entry without a `sha256:<64 hex>` digest, or a duplicate path; kind
 *   'invalid' for a path that `sha256sum` would escape.
 */
export function treeDigest(manifest: Pick<Manifest, 'files'>): string {
  const seen = new Set<string>();
  const lines = manifest.files.map((file) => {
    if (isSha256Digest(file.sha256).length > 0)
      throw new EnvelopeError('manifest', `${JSON.stringify(file.path)} has no sha256:<hex> digest`);
    assertDigestablePath(file.path);
    if (seen.has(file.path)) throw new EnvelopeError('manifest', `duplicate path in manifest: ${file.path}`);
    seen.add(file.path);
    return {
      path: Buffer.from(file.path, 'utf8'),
      line: Buffer.from(`${file.sha256.slice('sha256:'.length)}  ${file.path}\n`, 'utf8'),
    };
  });
  lines.sort((a, b) => Buffer.compare(a.path, b.path));
  const hash = createHash('sha256');
  for (const { line } of lines) hash.update(line);
  return `sha256:${hash.digest('hex')}`;
}
