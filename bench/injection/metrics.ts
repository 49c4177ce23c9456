/**
 * The arithmetic of `npm run bench:injection` (bench/injection/) on metrics, without I/O: Prometheus text exposition
 * parsing, histogram deltas between two scrapes, and quantiles from cumulative buckets (percentiles of samples are
 * bench/report.ts's).
 */

/** One sample line of a Prometheus text exposition. */
export interface PromSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const SAMPLE_LINE = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL_PAIR = /(\w+)="((?:[^"\\]|\\.)*)"/g;

/** Parses every sample line of a Prometheus text exposition (comments and blank lines are skipped). */
export function parseProm(text: string): PromSample[] {
  const samples: PromSample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = SAMPLE_LINE.exec(line);
    if (m?.[1] === undefined || m[3] === undefined) continue;
    const labels: Record<string, string> = {};
    for (const pair of (m[2] ?? '').matchAll(LABEL_PAIR))
      if (pair[1] !== undefined) labels[pair[1]] = (pair[2] ?? '').replace(/\\(.)/g, '$1');
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

/** A histogram summed over the series that matched: cumulative counts by upper bound (`+Inf` last). */
export interface Histogram {
  /** Upper bounds in seconds, ascending; the last is Infinity. */
  readonly bounds: readonly number[];
  /** Cumulative counts, one per bound. */
  readonly cumulative: readonly number[];
  readonly count: number;
  /** Sum of observed values, seconds. */
  readonly sum: number;
}

/** The histogram `name` summed over every series whose labels satisfy `match`. */
export function histogram(
  samples: readonly PromSample[],
  name: string,
  match: (labels: Readonly<Record<string, string>>) => boolean = () => true,
): Histogram {
  const byBound = new Map<number, number>();
  let count = 0;
  let sum = 0;
  for (const s of samples) {
    if (!match(s.labels)) continue;
    if (s.name === `${name}_bucket`) {
      const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
      byBound.set(le, (byBound.get(le) ?? 0) + s.value);
    } else if (s.name === `${name}_count`) count += s.value;
    else if (s.name === `${name}_sum`) sum += s.value;
  }
  const bounds = [...byBound.keys()].sort((a, b) => a - b);
  return { bounds, cumulative: bounds.map((b) => byBound.get(b) ?? 0), count, sum };
}

/** `after - before`, bucket by bucket (a histogram of what was observed between the two scrapes). */
export function histogramDelta(before: Histogram, after: Histogram): Histogram {
  const prior = new Map(before.bounds.map((b, i) => [b, before.cumulative[i] ?? 0]));
  return {
    bounds: after.bounds,
    cumulative: after.bounds.map((b, i) => (after.cumulative[i] ?? 0) - (prior.get(b) ?? 0)),
    count: after.count - before.count,
    sum: after.sum - before.sum,
  };
}

/** A quantile read from a histogram's buckets. */
export interface BucketQuantile {
  /** Linear interpolation inside the bucket, as PromQL's histogram_quantile does (the lower bound if in +Inf). */
  readonly interpolated: number;
  /** The upper bound of the bucket the quantile falls in: the quantile is at most this (Infinity if in +Inf). */
  readonly atMost: number;
  /** The lower bound of that bucket: the quantile is above this. */
  readonly above: number;
}

/** The `q` quantile (0..1) of `h`, or undefined when it holds no observation. */
export function bucketQuantile(h: Histogram, q: number): BucketQuantile | undefined {
  const total = h.cumulative.at(-1) ?? 0;
  if (total <= 0) return undefined;
  const rank = q * total;
  for (let i = 0; i < h.bounds.length; i++) {
    const upTo = h.cumulative[i] ?? 0;
    if (upTo < rank) continue;
    const upper = h.bounds[i] ?? Infinity;
    const lower = i === 0 ? 0 : (h.bounds[i - 1] ?? 0);
    const below = i === 0 ? 0 : (h.cumulative[i - 1] ?? 0);
    if (upper === Infinity) return { interpolated: lower, atMost: Infinity, above: lower };
    const inBucket = upTo - below;
    const interpolated = inBucket === 0 ? upper : lower + ((upper - lower) * (rank - below)) / inBucket;
    return { interpolated, atMost: upper, above: lower };
  }
  return undefined;
}

/** The fraction of observations at or below `bound` (which must be one of the histogram's bounds). */
export function fractionAtOrBelow(h: Histogram, bound: number): number | undefined {
  const total = h.cumulative.at(-1) ?? 0;
  const i = h.bounds.indexOf(bound);
  if (total <= 0 || i < 0) return undefined;
  return (h.cumulative[i] ?? 0) / total;
}
