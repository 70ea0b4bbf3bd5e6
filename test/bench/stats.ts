/** Latency samples in milliseconds, summarized by nearest-rank percentiles. */
export interface Distribution {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export function distribution(samples: ArrayLike<number>): Distribution {
  const sorted = Float64Array.from(samples).sort();
  const count = sorted.length;
  if (count === 0)
    return {
      count,
      min: Number.NaN,
      mean: Number.NaN,
      p50: Number.NaN,
      p90: Number.NaN,
      p99: Number.NaN,
      max: Number.NaN,
    };
  let sum = 0;
  for (const value of sorted) sum += value;
  const rank = (p: number) => sorted[Math.min(count - 1, Math.max(0, Math.ceil(p * count) - 1))] as number;
  return {
    count,
    min: sorted[0] as number,
    mean: sum / count,
    p50: rank(0.5),
    p90: rank(0.9),
    p99: rank(0.99),
    max: sorted[count - 1] as number,
  };
}

export function median(values: readonly number[]): number {
  return distribution(values).p50;
}

/** 0.0123 → "0.012 ms", 1.234 → "1.23 ms", 123.4 → "123 ms". */
export function ms(value: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  if (value < 1) return `${value.toFixed(3)} ms`;
  if (value < 10) return `${value.toFixed(2)} ms`;
  if (value < 100) return `${value.toFixed(1)} ms`;
  return `${Math.round(value)} ms`;
}

export function count(value: number): string {
  return value.toLocaleString('en-US');
}

export function ratio(value: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  return value >= 100 ? `${Math.round(value)}×` : `${value.toFixed(1)}×`;
}

export function bytes(value: number): string {
  if (value < 1024) return `${value} B`;
  if (value < 1024 * 1024) return `${(value / 1024).toFixed(1)} KiB`;
  return `${(value / 1024 / 1024).toFixed(2)} MiB`;
}

export function percent(value: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  return value !== 0 && value < 0.001 ? `${(value * 100).toFixed(4)} %` : `${(value * 100).toFixed(2)} %`;
}

/** p50 / p99 / max on one line. */
export function spread(d: Distribution): string {
  return `p50 ${ms(d.p50)}  p99 ${ms(d.p99)}  max ${ms(d.max)}`;
}

/** The distribution with rounded numbers, for the JSON results. */
export function rounded(d: Distribution): Distribution {
  const r = (value: number) => (Number.isFinite(value) ? Math.round(value * 10_000) / 10_000 : value);
  return {
    count: d.count,
    min: r(d.min),
    mean: r(d.mean),
    p50: r(d.p50),
    p90: r(d.p90),
    p99: r(d.p99),
    max: r(d.max),
  };
}
