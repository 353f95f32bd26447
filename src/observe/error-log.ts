import { log } from './log.js';

/**
 * Errors thrown while serving, logged once per distinct error: a bug that fires on every request must not turn
 * the log into a second copy of the traffic. Repeats are counted and summarised at most once per `summaryMs`;
 * distinct errors beyond `maxDistinct` are only counted.
 */
export class ErrorLog {
  private readonly repeats = new Map<string, number>();
  private lastSummary = 0;
  private unlisted = 0;

  constructor(
    private readonly maxDistinct = 256,
    private readonly summaryMs = 60_000,
  ) {}

  report(stage: string, error: unknown): void {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    const key = `${stage} ${message}`;
    const seen = this.repeats.get(key);
    if (seen !== undefined) this.repeats.set(key, seen + 1);
    else if (this.repeats.size < this.maxDistinct) {
      this.repeats.set(key, 0);
      log('error', 'request_error', { stage, message, stack: error instanceof Error ? error.stack?.split('\n').slice(1, 6).map((l) => l.trim()) : undefined });
    } else this.unlisted++;
    this.summarise();
  }

  private summarise(): void {
    const now = Date.now();
    if (now - this.lastSummary < this.summaryMs) return;
    this.lastSummary = now;
    const repeated = [...this.repeats].filter(([, count]) => count > 0);
    if (repeated.length === 0 && this.unlisted === 0) return;
    log('error', 'request_errors_repeated', { repeats: Object.fromEntries(repeated), unlistedDistinct: this.unlisted });
    for (const [key] of repeated) this.repeats.set(key, 0);
    this.unlisted = 0;
  }
}
