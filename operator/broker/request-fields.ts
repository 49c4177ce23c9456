/**
 * Checks of caller-supplied request fields shared by ReleaseKey and PublishVersion, and the bounded rendering of
 * such fields for messages and audit entries (callers control them, so they are never echoed raw).
 */

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** A DNS-1123 label (namespaces, version names). */
export function isDnsLabel(text: string): boolean {
  return DNS_LABEL.test(text);
}

/** `sha256:` followed by 64 lowercase hex digits. */
export function isSha256Digest(text: string): boolean {
  return DIGEST.test(text);
}

/** Why an artifact reference is malformed, or undefined. */
export function artifactRefProblem(namespace: string, name: string): string | undefined {
  if (!DNS_LABEL.test(namespace))
    return `artifact namespace ${JSON.stringify(printable(namespace))} is not a DNS-1123 label`;
  if (name.length > 253 || !DNS_SUBDOMAIN.test(name))
    return `artifact name ${JSON.stringify(printable(name))} is not a DNS-1123 subdomain`;
  return undefined;
}

/** A bounded, printable rendering of caller input (never empty). */
export function printable(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]/g, '?').slice(0, 253);
  return clean === '' ? '(empty)' : clean;
}
