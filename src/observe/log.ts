/**
 * One JSON object per line on stdout: easy for people to grep and for log shippers to parse. Never on the hot path
 * per request; only lifecycle events and errors.
 */
export function log(level: 'info' | 'warn' | 'error', event: string, fields: Record<string, unknown> = {}): void {
  const line = JSON.stringify({ time: new Date().toISOString(), level, event, ...fields });
  if (level === 'info') process.stdout.write(line + '\n');
  else process.stderr.write(line + '\n');
}
