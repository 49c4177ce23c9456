/**
 * Reading Prometheus metrics as the tests scrape them from real pods (over the pod bridge): the text exposition
 * format parsed just enough to read one series' value.
 */

/** GETs `url` and returns the exposition text; throws on anything but 200. */
export async function scrape(url: string): Promise<string> {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  const text = await response.text();
  if (response.status !== 200)
    throw new Error(`GET ${url}: ${String(response.status)} ${text.slice(0, 200)}`);
  return text;
}

/**
 * The value of the series `name` whose labels include `labels` (the sum when several match, as `sum()` would), or
 * undefined when none does.
 */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let total: number | undefined;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m?.[1] !== name) continue;
    const have = new Map(
      [...(m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]),
    );
    if (!Object.entries(labels).every(([k, v]) => have.get(k) === v)) continue;
    total = (total ?? 0) + Number(m[3]);
  }
  return total;
}
