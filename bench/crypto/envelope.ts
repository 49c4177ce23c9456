/**
 * The envelope module `npm run bench:crypto` measures, and what its fresh-process CLIs (./child.ts, the built one of
 * ./build.ts) are told through their environment.
 */
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { EnvelopeContext } from '../../core/envelope/index.ts';

export type Envelope = typeof import('../../core/envelope/index.ts');

export const CONTEXT: EnvelopeContext = {
  artifactUid: 'bench',
  artifactName: 'bench',
  version: '1',
  path: '',
};
/** The DEK (hex) for a child. */
export const DEK_ENV = 'STRONGROOM_BENCH_DEK';
/** The envelope module to measure (default core/envelope; --envelope points at a patched copy to compare). */
export const ENVELOPE_ENV = 'STRONGROOM_BENCH_ENVELOPE';
export const DEFAULT_ENVELOPE = fileURLToPath(new URL('../../core/envelope/index.ts', import.meta.url));

export async function loadEnvelope(path: string): Promise<Envelope> {
  return (await import(pathToFileURL(resolve(path)).href)) as Envelope;
}
