/**
 * A strict RFC 6902 applier for `add` operations only, for the tests: it applies the webhook's patch the way the
 * API server would and throws on anything the API server would reject (a missing parent, an index past the end,
 * an unknown operation), so a test that applies a patch also proves the patch is applicable.
 */

/** RFC 6901 unescaping of one reference token. */
function unescape(token: string): string {
  return token.replaceAll('~1', '/').replaceAll('~0', '~');
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Applies `ops` to a deep copy of `doc` and returns the copy. */
export function applyPatch<T>(doc: T, ops: readonly unknown[]): T {
  const root: { value: unknown } = { value: structuredClone(doc) };
  for (const raw of ops) {
    if (!isObject(raw) || raw.op !== 'add' || typeof raw.path !== 'string' || !('value' in raw))
      throw new Error(`not an add operation: ${JSON.stringify(raw)}`);
    if (!raw.path.startsWith('/')) throw new Error(`path ${raw.path} is not a JSON pointer`);
    const tokens = raw.path.split('/').slice(1).map(unescape);
    const last = tokens.pop();
    if (last === undefined) throw new Error('cannot add at the root');
    let parent: unknown = root.value;
    for (const t of tokens) {
      if (Array.isArray(parent)) {
        if (!/^(0|[1-9]\d*)$/.test(t) || Number(t) >= parent.length)
          throw new Error(`${raw.path}: no element ${t}`);
        parent = parent[Number(t)];
      } else if (isObject(parent) && t in parent) parent = parent[t];
      else throw new Error(`${raw.path}: no member ${t}`);
    }
    const value = structuredClone(raw.value);
    if (Array.isArray(parent)) {
      if (last === '-') parent.push(value);
      else if (/^(0|[1-9]\d*)$/.test(last) && Number(last) <= parent.length)
        parent.splice(Number(last), 0, value);
      else throw new Error(`${raw.path}: index ${last} is out of range`);
    } else if (isObject(parent)) parent[last] = value;
    else throw new Error(`${raw.path}: the parent is neither an object nor an array`);
  }
  return root.value as T;
}
