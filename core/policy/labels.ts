/**
 * Kubernetes label selectors (metav1.LabelSelector) evaluated against a pod's labels, as the API server does:
 * matchLabels and every matchExpression must all hold. An AccessGrant subject's podSelector narrows the pods of
 * its service account. Malformed selectors match nothing (fail closed), where Kubernetes would reject them.
 */
import type {
  AccessGrantSubjectPodSelector,
  AccessGrantSubjectPodSelectorMatchExpression,
} from '../api/index.ts';
import { isLabelValue, isQualifiedName } from '../api/validation.ts';

/**
 * True when the labels satisfy the selector. An absent selector and the empty selector `{}` match every pod
 * (the AccessGrant CRD's meaning of an omitted podSelector). Semantics are Kubernetes': `In` needs the label with
 * one of the values, `NotIn` matches when the label is missing or has none of the values, `Exists` and
 * `DoesNotExist` test presence only. A selector Kubernetes would reject (an invalid key or value, `In`/`NotIn`
 * without values, `Exists`/`DoesNotExist` with values, an unknown operator) matches nothing.
 */
export function matchesSelector(
  labels: Readonly<Record<string, string>>,
  selector: AccessGrantSubjectPodSelector | undefined,
): boolean {
  return selectorMismatch(labels, selector) === undefined;
}

/**
 * Why the labels do not satisfy the selector, as a short phrase naming the first unmet requirement (for example
 * `label team is missing` or `label tier=batch is not in [online]`); undefined when they match. Agrees with
 * {@link matchesSelector}. Label values are pod metadata, never key material.
 */
export function selectorMismatch(
  labels: Readonly<Record<string, string>>,
  selector: AccessGrantSubjectPodSelector | undefined,
): string | undefined {
  if (selector === undefined) return undefined;
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (!validKey(key) || !validValue(value)) {
      return `the podSelector is invalid (matchLabels ${JSON.stringify(key)}: ${JSON.stringify(value)})`;
    }
    const actual = labelOf(labels, key);
    if (actual === undefined) return `label ${key} is missing (podSelector wants ${key}=${value})`;
    if (actual !== value) return `label ${key}=${actual}, not ${value}`;
  }
  for (const requirement of selector.matchExpressions ?? []) {
    const why = requirementMismatch(labels, requirement);
    if (why !== undefined) return why;
  }
  return undefined;
}

function requirementMismatch(
  labels: Readonly<Record<string, string>>,
  requirement: AccessGrantSubjectPodSelectorMatchExpression,
): string | undefined {
  const { key, operator } = requirement;
  const values = requirement.values ?? [];
  const invalid = `the podSelector is invalid (${JSON.stringify(key)} ${operator} [${values.join(', ')}])`;
  if (!validKey(key) || !values.every(validValue)) return invalid;
  const actual = labelOf(labels, key);
  switch (operator) {
    case 'In':
      if (values.length === 0) return invalid;
      if (actual === undefined)
        return `label ${key} is missing (podSelector wants it in [${values.join(', ')}])`;
      return values.includes(actual) ? undefined : `label ${key}=${actual} is not in [${values.join(', ')}]`;
    case 'NotIn':
      if (values.length === 0) return invalid;
      return actual === undefined || !values.includes(actual)
        ? undefined
        : `label ${key}=${actual} is one of the excluded values [${values.join(', ')}]`;
    case 'Exists':
      if (values.length > 0) return invalid;
      return actual === undefined ? `label ${key} is missing (podSelector requires it)` : undefined;
    case 'DoesNotExist':
      if (values.length > 0) return invalid;
      return actual === undefined ? undefined : `label ${key} is present (podSelector forbids it)`;
    default:
      // The CRD allows only the four operators; anything else is not understood, so it matches nothing.
      return invalid;
  }
}

/** The label's value, looking only at the object's own properties (a key such as "constructor" is data). */
function labelOf(labels: Readonly<Record<string, string>>, key: string): string | undefined {
  return Object.hasOwn(labels, key) ? labels[key] : undefined;
}

/** A label key: a qualified name (`name` or `prefix/name`). */
function validKey(key: string): boolean {
  return isQualifiedName(key).length === 0;
}

function validValue(value: string): boolean {
  return isLabelValue(value).length === 0;
}
