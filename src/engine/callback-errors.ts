/**
 * For parts that answer many engine jobs at once (a scoring batch, a Redis round trip): a callback that throws is a
 * bug in the engine, but the other jobs must still get their answers. The first error is kept while they do, and
 * thrown afterwards so the bug still surfaces.
 */
export class CallbackErrors {
  private first: unknown = undefined;

  keep(error: unknown): void {
    this.first ??= error;
  }

  /** Throws the kept error, if any, and forgets it. */
  rethrow(): void {
    const error = this.first;
    if (error === undefined) return;
    this.first = undefined;
    throw error;
  }
}
