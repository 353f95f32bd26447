import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DECISIONS_ENV, runEngineExpectingFailure, startEngine, type EngineProcess } from '../support/engine-process.js';
import { RawConnection, rawPost } from '../support/raw-http.js';
import { loadPersonas, metricSum, native, requestFor, scrape, tencent } from '../support/rta-client.js';

/**
 * Per-media access control on the media port: Tencent with a token in a header and an allow-list that admits
 * loopback, the native route with its token in the path, and an allow-list that admits nobody here.
 */

const TENCENT_TOKEN = 'tencent-shared-secret-0123456789';
const NATIVE_TOKEN = 'native-path-secret-abcdefghij';
let dir: string;
let engine: EngineProcess;
const device = loadPersonas().prime_prospect[0]!;

function writeConfig(name: string, mediaAuth: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify({ server: { mediaAuth } }));
  return path;
}

async function postTo(path: string, client: typeof tencent, headers: Record<string, string> = {}) {
  const { body, contentType } = client.encodeRequest(requestFor(device));
  const reply = await fetch(`${engine.mediaUrl}${path}`, { method: 'POST', body, headers: { 'content-type': contentType, ...headers } });
  return { status: reply.status, text: reply.status === 200 ? '' : await reply.text() };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rta-media-auth-'));
  const config = writeConfig('config.json', {
    tencent: { allowFrom: ['127.0.0.0/8', '::1'] },
    native: { tokenIn: 'path' },
  });
  engine = await startEngine({ RTA_CONFIG: config, RTA_TENCENT_TOKEN: TENCENT_TOKEN, RTA_NATIVE_TOKEN: NATIVE_TOKEN, ...DECISIONS_ENV });
});

afterAll(async () => {
  await engine?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('media authentication', () => {
  test('Tencent: the token in X-RTA-Token is served; a missing or wrong one is refused with 401, counted, never logged', async () => {
    expect(await postTo('/rta/tencent', tencent, { 'x-rta-token': TENCENT_TOKEN })).toEqual({ status: 200, text: '' });
    const before = metricSum(await scrape(engine), 'rta_rejected_inputs_total', { reason: 'unauthorized' });
    for (const headers of [{}, { 'x-rta-token': 'wrong' }, { 'x-rta-token': `${TENCENT_TOKEN}x` }, { authorization: `Bearer ${TENCENT_TOKEN}` }]) {
      expect(await postTo('/rta/tencent', tencent, headers)).toEqual({ status: 401, text: 'unauthorized: /rta/tencent needs the x-rta-token header\n' });
    }
    expect(metricSum(await scrape(engine), 'rta_rejected_inputs_total', { reason: 'unauthorized' }) - before).toBe(4);
    expect(engine.output()).not.toContain(TENCENT_TOKEN);
  });

  test('native: the token travels in the path; the bare path is not a route, a wrong token is refused', async () => {
    expect(await postTo(`/rta/v1/${NATIVE_TOKEN}`, native)).toEqual({ status: 200, text: '' });
    expect((await postTo('/rta/v1', native)).status).toBe(404);
    expect(await postTo('/rta/v1/not-the-token', native)).toEqual({ status: 401, text: 'unauthorized: /rta/v1 needs its token in the path\n' });
    expect(engine.output()).not.toContain(NATIVE_TOKEN);
  });
});

describe('media allow-list', () => {
  let closed: EngineProcess;
  afterAll(async () => {
    await closed?.stop();
  });

  test('a source outside allowFrom is refused with 403 before its body is read, the connection closed, counted', async () => {
    closed = await startEngine({ RTA_CONFIG: writeConfig('closed.json', { tencent: { allowFrom: ['10.0.0.0/8'] } }) });
    const connection = await RawConnection.open(closed.mediaUrl);
    const { body } = tencent.encodeRequest(requestFor(device));
    await connection.write(rawPost('/rta/tencent', body));
    const reply = await connection.readReply();
    expect(reply.status).toBe(403);
    expect(reply.body.toString()).toBe('forbidden_address: this source address may not call /rta/tencent\n');
    expect(await connection.closedByServer()).toBe(true);
    expect(metricSum(await scrape(closed), 'rta_rejected_inputs_total', { reason: 'forbidden_address' })).toBe(1);
    // The native route has no access control configured and still serves the same caller.
    const open = await fetch(`${closed.mediaUrl}/rta/v1`, { method: 'POST', body: native.encodeRequest(requestFor(device)).body, headers: { 'content-type': 'application/x-protobuf' } });
    expect(open.status).toBe(200);
  });
});

describe('media access config', () => {
  test.each([
    [{ tencent: { allowFrom: ['10.0.0.0/33'] } }, 'server.mediaAuth.tencent.allowFrom.0'],
    [{ tencent: { allowFrom: ['not-an-address'] } }, 'server.mediaAuth.tencent.allowFrom.0'],
    [{ native: { tokenIn: 'path' } }, 'server.mediaAuth.native'],
    [{ native: { token: 'short' } }, 'server.mediaAuth.native.token'],
    [{ baidu: { allowFrom: ['10.0.0.0/8'] } }, 'server.mediaAuth'],
  ])('%j is refused at start, naming %s', async (mediaAuth, path) => {
    const { code, output } = await runEngineExpectingFailure({ RTA_CONFIG: writeConfig('bad.json', mediaAuth) });
    expect(code).toBe(2);
    expect(output).toContain(path);
  });
});
