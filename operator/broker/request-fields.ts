/**
 * Checks of caller-supplied request fields shared by ReleaseKey and PublishVersion, and the bounded rendering of
 * such fields for messages and audit entries (callers control them, so they are never echoed raw).
 */
import { isDns1123Label, isDns1123Subdomain } from '../../core/api/validation.ts';

/** Why an artifact reference is malformed, or undefined. */
export function artifactRefProblem(namespace: string, name: string): string | undefined {
  if (isDns1123Label(namespace).length > 0)
    return `artifact namespace ${JSON.stringify(printable(namespace))} is not a DNS-1123 label`;
  if (isDns1123Subdomain(name).length > 0)
    return `artifact name ${JSON.stringify(printable(name))} is not a DNS-1123 subdomain`;
  return undefined;
}

/** A bounded, printable rendering of caller input (never empty). */
export function printable(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]/g, '?').slice(0, 253);
  return clean === '' ? '(empty)' : clean;
}
