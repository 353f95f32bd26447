/**
 * Bad input from a media. `reason` is a short snake_case label used as the metric label and the first word of
 * the one-line reply; `message` says precisely what was wrong.
 */
export class InputError extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'InputError';
  }
}
