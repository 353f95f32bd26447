/** The admin port as the rta tool calls it: where it is, the bearer token, and one call that fails with the port's own refusal. */
export const ADMIN_OPTIONS = {
  admin: { type: 'string', default: 'http://127.0.0.1:8081' },
  token: { type: 'string' },
} as const;

export function adminAuthorization(flag: string | undefined): Record<string, string> {
  const token = flag ?? process.env.RTA_ADMIN_TOKEN;
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** Sends `body` (JSON unless `contentType` says otherwise) and returns the parsed JSON answer. */
export async function adminCall(
  values: { admin: string; token?: string | undefined },
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
  contentType = 'application/json',
): Promise<unknown> {
  const headers: Record<string, string> = { 'Content-Type': contentType, ...adminAuthorization(values.token) };
  const payload = body === undefined ? null : body instanceof Uint8Array ? body : JSON.stringify(body);
  const response = await fetch(`${values.admin}${path}`, { method, headers, body: payload });
  const text = await response.text();
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${text.trim()}`);
  return JSON.parse(text);
}
