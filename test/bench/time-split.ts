import type { Answer } from './container.js';
import { distribution, ms } from './stats.js';

/**
 * Where the requests' time went: per kind of call (SDK operation, fetch), the median time per request
 * that made it and how many per request; and the median time outside any call (broker and handler code,
 * logging, metrics, event-loop delays). Only calls that started before the answer count, clipped to it.
 */
export class TimeSplit {
  private readonly perName = new Map<string, { times: number[]; calls: number }>();
  private readonly outside: number[] = [];
  private requests = 0;

  add(answer: Answer): void {
    this.requests += 1;
    const end = answer.startedAt + answer.elapsedMs;
    const totals = new Map<string, { ms: number; calls: number }>();
    const intervals: [number, number][] = [];
    for (const call of answer.calls) {
      const start = Math.max(call.start, answer.startedAt);
      const stop = Math.min(Number.isFinite(call.end) ? call.end : end, end);
      if (stop <= start) continue;
      const name = call.name.replace(/Command$/, '');
      const total = totals.get(name) ?? { ms: 0, calls: 0 };
      total.ms += stop - start;
      total.calls += 1;
      totals.set(name, total);
      intervals.push([start, stop]);
    }
    for (const [name, total] of totals) {
      const entry = this.perName.get(name) ?? { times: [], calls: 0 };
      entry.times.push(total.ms);
      entry.calls += total.calls;
      this.perName.set(name, entry);
    }
    intervals.sort((a, b) => a[0] - b[0]);
    let covered = 0;
    let reach = Number.NEGATIVE_INFINITY;
    for (const [start, stop] of intervals) {
      if (stop <= reach) continue;
      covered += stop - Math.max(start, reach);
      reach = stop;
    }
    this.outside.push(answer.elapsedMs - covered);
  }

  /** "DynamoDB GetItem 0.91 ms ×1.0, ...; outside calls 0.42 ms" (medians). */
  describe(): string {
    if (this.requests === 0) return 'no requests';
    const parts = [...this.perName.entries()]
      .sort((a, b) => b[1].calls - a[1].calls)
      .map(
        ([name, entry]) => `${name} ${ms(distribution(entry.times).p50)} ×${(entry.calls / this.requests).toFixed(1)}`,
      );
    parts.push(`outside any call ${ms(distribution(this.outside).p50)}`);
    return `time per request (medians): ${parts.join(', ')}`;
  }

  data(): { [name: string]: { p50Ms: number; perRequest: number } } {
    const result: { [name: string]: { p50Ms: number; perRequest: number } } = {};
    for (const [name, entry] of this.perName) {
      result[name] = { p50Ms: distribution(entry.times).p50, perRequest: entry.calls / Math.max(this.requests, 1) };
    }
    result['outside any call'] = { p50Ms: distribution(this.outside).p50, perRequest: 1 };
    return result;
  }
}
