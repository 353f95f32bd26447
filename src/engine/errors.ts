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

/** A schema's first complaint as one line: the field's path (or `root` for the whole value), then what is wrong. */
export function issueText(error: { issues: readonly { path: readonly PropertyKey[]; message: string }[] }, root = 'event'): string {
  const issue = error.issues[0]!;
  return `${issue.path.map(String).join('.') || root}: ${issue.message}`;
}
