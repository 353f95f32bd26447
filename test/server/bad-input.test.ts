import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DECISIONS_ENV, startEngine, type EngineProcess } from '../support/engine-process.js';
import { chunkedBody, RawConnection, rawPost, type RawReply } from '../support/raw-http.js';
import { loadPersonas, metricSum, native, requestFor, scrape, tencent, waitForMetric } from '../support/rta-client.js';

/**
 * Refusals on the media port, seen on raw sockets: status line, headers, one-line bodies, whether the server keeps
 * or closes the connection, and the metric each refusal leaves. Valid traffic must not suffer from any of it.
 */

const MAX_BODY_BYTES = 2048;
// Latency is not under test here (see tencent.test.ts); the body limit is.
const ENGINE_ENV = { RTA_MAX_BODY_BYTES: String(MAX_BODY_BYTES), ...DECISIONS_ENV };

const personas = loadPersonas();
const prime = personas.prime_prospect[0]!;
const blacklisted = personas.blacklisted[0]!;
const validBody = () => tencent.encodeRequest(requestFor(prime)).body;

let engine: EngineProcess;

beforeAll(async () => {
  engine = await startEngine(ENGINE_ENV);
});

afterAll(async () => {
  await engine?.stop();
});

/** How much each rta_rejected_inputs_total{reason} moved between two scrapes; reasons that did not move are left out. */
function rejectedDeltas(before: string, after: string): Record<string, number> {
  const reasons = new Set([...`${before}\n${after}`.matchAll(/^rta_rejected_inputs_total\{reason="([^"]+)"\}/gm)].map((m) => m[1]!));
  const deltas: Record<string, number> = {};
  for (const reason of reasons) {
    const delta = metricSum(after, 'rta_rejected_inputs_total', { reason }) - metricSum(before, 'rta_rejected_inputs_total', { reason });
    if (delta !== 0) deltas[reason] = delta;
  }
  return deltas;
}

function expectOneLine(reply: RawReply, prefix: string): void {
  const text = reply.body.toString('utf8');
  expect(text.startsWith(`${prefix}: `), text).toBe(true);
  expect(text.endsWith('\n')).toBe(true);
  expect(text.slice(0, -1)).not.toContain('\n');
}

/** A valid request on an open connection answers 200 with the code the device deserves. */
async function expectServes(connection: RawConnection): Promise<void> {
  await connection.write(rawPost(tencent.path, validBody()));
  const reply = await connection.readReply();
  expect(reply.status).toBe(200);
  expect((tencent.decodeReply(reply.body, '') as { code: number }).code).toBe(0);
}

describe('method, path and size', () => {
  test('GET on a media route gets 405 with Allow: POST, and the connection stays usable', async () => {
    const before = await scrape(engine);
    const connection = await RawConnection.open(engine.mediaUrl);
    for (const path of [tencent.path, native.path]) {
      await connection.write(`GET ${path} HTTP/1.1\r\nHost: rta.test\r\n\r\n`);
      const reply = await connection.readReply();
      expect(reply.status).toBe(405);
      expect(reply.headers.get('allow')).toBe('POST');
      expect(reply.body.toString()).toBe(`method_not_allowed: use POST for ${path}\n`);
    }
    await expectServes(connection);
    connection.destroy();
    expect(rejectedDeltas(before, await scrape(engine))).toEqual({ method_not_allowed: 2 });
  });

  test('an unknown path gets 404', async () => {
    const before = await scrape(engine);
    const connection = await RawConnection.open(engine.mediaUrl);
    await connection.write(rawPost('/rta/unknown-media', validBody()));
    const reply = await connection.readReply();
    expect(reply.status).toBe(404);
    expectOneLine(reply, 'not_found');
    expect(reply.body.toString()).toContain('/rta/unknown-media');
    connection.destroy();
    expect(rejectedDeltas(before, await scrape(engine))).toEqual({ not_found: 1 });
  });

  test('a declared Content-Length over the limit gets 413 and the server closes the connection', async () => {
    const before = await scrape(engine);
    const connection = await RawConnection.open(engine.mediaUrl);
    await connection.write(rawPost(tencent.path, Buffer.alloc(0), { contentLength: MAX_BODY_BYTES + 1 }));
    const reply = await connection.readReply();
    expect(reply.status).toBe(413);
    expectOneLine(reply, 'body_too_large');
    expect(await connection.closedByServer()).toBe(true);
    expect(rejectedDeltas(before, await scrape(engine))).toEqual({ body_too_large: 1 });
  });

  test('a body of exactly the limit is read and decided', async () => {
    // A string field padded to land the message on exactly MAX_BODY_BYTES.
    const padded = tencent.encodeRequest(requestFor(blacklisted, { requestId: 'x'.repeat(MAX_BODY_BYTES - validBodyOverhead()) })).body;
    expect(padded.length).toBe(MAX_BODY_BYTES);
    const connection = await RawConnection.open(engine.mediaUrl);
    await connection.write(rawPost(tencent.path, padded));
    const reply = await connection.readReply();
    expect(reply.status).toBe(200);
    expect((tencent.decodeReply(reply.body, '') as { code: number }).code).toBe(3);
    connection.destroy();
  });
});

/** Bytes of a blacklisted-device request besides its request id, when the id is long (two-byte length prefix). */
function validBodyOverhead(): number {
  const probe = 'x'.repeat(1000);
  return tencent.encodeRequest(requestFor(blacklisted, { requestId: probe })).body.length - probe.length;
}

describe('chunked transfer coding', () => {
  test('a chunked request is decided like any other', async () => {
    const connection = await RawConnection.open(engine.mediaUrl);
    const body = tencent.encodeRequest(requestFor(blacklisted)).body;
    await connection.write(rawPost(tencent.path, chunkedBody(body, 7), { contentLength: null, headers: { 'Transfer-Encoding': 'chunked' } }));
    const reply = await connection.readReply();
    expect(reply.status).toBe(200);
    expect((tencent.decodeReply(reply.body, '') as { code: number }).code).toBe(3);
    connection.destroy();
  });

  test('a chunked body that grows past the limit gets 413 mid-body and the connection is closed', async () => {
    const before = await scrape(engine);
    const connection = await RawConnection.open(engine.mediaUrl);
    await connection.write(rawPost(tencent.path, '', { contentLength: null, headers: { 'Transfer-Encoding': 'chunked' } }));
    // Separate writes, so the server sees several body pieces and must count them up itself.
    const piece = chunkedBody(Buffer.alloc(1000, 0x41), 1000).subarray(0, -5);
    for (let i = 0; i < 3; i++) {
      await connection.write(piece);
      await new Promise((r) => setTimeout(r, 30));
    }
    const reply = await connection.readReply();
    expect(reply.status).toBe(413);
    expectOneLine(reply, 'body_too_large');
    expect(await connection.closedByServer()).toBe(true);
    expect(rejectedDeltas(before, await scrape(engine))).toEqual({ body_too_large: 1 });
  });
});

describe('malformed bodies', () => {
  const valid = validBody();
  const junk: Array<[string, string, Uint8Array]> = [
    ['random bytes', tencent.path, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x13, 0x37])],
    // Field 1 (id), length-delimited, claiming 4 GiB: protobufjs alone would read it as an empty string.
    ['a string claiming 4 GiB', tencent.path, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x41])],
    ['a truncated request', tencent.path, valid.subarray(0, valid.length - 3)],
    ['random bytes on the native route', native.path, Buffer.from('\u0000\u00ff garbage \u0001', 'latin1')],
  ];

  test.each(junk)('%s get 400 malformed_protobuf on one line, and the connection stays usable', async (_, path, body) => {
    const before = await scrape(engine);
    const connection = await RawConnection.open(engine.mediaUrl);
    await connection.write(rawPost(path, body));
    const reply = await connection.readReply();
    expect(reply.status).toBe(400);
    expectOneLine(reply, 'malformed_protobuf');
    await expectServes(connection);
    connection.destroy();
    expect(rejectedDeltas(before, await scrape(engine))).toEqual({ malformed_protobuf: 1 });
  });
});

describe('clients that go away', () => {
  test('a client that sends half a body and disconnects is counted as aborted, and the server carries on', async () => {
    const before = metricSum(await scrape(engine), 'rta_aborted_requests_total');
    const body = validBody();
    const quitter = await RawConnection.open(engine.mediaUrl);
    await quitter.write(rawPost(tencent.path, body.subarray(0, 5), { contentLength: body.length }));
    await new Promise((r) => setTimeout(r, 30));
    quitter.destroy();
    expect(await waitForMetric(engine, 'rta_aborted_requests_total', {}, before + 1)).toBe(before + 1);

    const next = await RawConnection.open(engine.mediaUrl);
    await expectServes(next);
    next.destroy();
  });
});

describe('a peer that stops reading', () => {
  const rssBytes = (pid: number) => Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;

  test('is closed once its unread replies fill the socket, counted, and costs the engine no memory to speak of', async () => {
    // Long request ids, echoed in every reply: once 30 KB ids grew a node by 3.4 GiB in 45 s.
    const request = rawPost(tencent.path, tencent.encodeRequest(requestFor(prime, { requestId: 'r'.repeat(1500) })).body);
    const burst = Buffer.concat(Array.from({ length: 100 }, () => request));
    const pid = engine.child.pid!;
    const rssBefore = rssBytes(pid);
    const closedBefore = metricSum(await scrape(engine), 'rta_closed_connections_total', { reason: 'unread_replies' });

    const socket = connect(Number(new URL(engine.mediaUrl).port), '127.0.0.1');
    socket.pause();
    let closed = false;
    socket.on('error', () => (closed = true));
    socket.on('close', () => (closed = true));
    // Bounded: 300,000 requests (about 500 MB of replies) without a close is a failure, not a hang.
    let sent = 0;
    while (!closed && sent < 300_000) {
      await new Promise<void>((resolve) => socket.write(burst, () => resolve()));
      sent += 100;
    }
    socket.destroy();
    expect(closed).toBe(true);
    expect(await waitForMetric(engine, 'rta_closed_connections_total', { reason: 'unread_replies' }, closedBefore + 1)).toBe(closedBefore + 1);
    // Kernel socket buffers hold the unread replies, not the engine's heap.
    expect(rssBytes(pid) - rssBefore).toBeLessThan(64 * 2 ** 20);

    const next = await RawConnection.open(engine.mediaUrl);
    await expectServes(next);
    next.destroy();
  });
});

describe('valid traffic next to a flood', () => {
  test('junk and abandoned requests on other connections do not disturb valid requests', async () => {
    const before = await scrape(engine);
    const expected: Array<[Uint8Array, number]> = [
      [tencent.encodeRequest(requestFor(prime)).body, 0],
      [tencent.encodeRequest(requestFor(blacklisted)).body, 3],
      [tencent.encodeRequest(requestFor(personas.active_borrower[0]!)).body, 2],
      [tencent.encodeRequest(requestFor(null)).body, 5],
      [tencent.encodeRequest(requestFor(blacklisted, { isPing: true })).body, 0],
    ];
    let validDone = false;
    let junkAnswered = 0;
    let abandoned = 0;

    const flood = (async () => {
      const junkConnection = await RawConnection.open(engine.mediaUrl);
      const junkBurst = Buffer.concat(Array.from({ length: 10 }, () => rawPost(tencent.path, Buffer.from([0xff, 0xfe, 0xfd]))));
      while (!validDone) {
        await junkConnection.write(junkBurst);
        for (let i = 0; i < 10; i++) {
          expect((await junkConnection.readReply()).status).toBe(400);
          junkAnswered++;
        }
        const quitter = await RawConnection.open(engine.mediaUrl);
        await quitter.write(rawPost(tencent.path, Buffer.from([0x0a]), { contentLength: 64 }));
        quitter.destroy();
        abandoned++;
      }
      junkConnection.destroy();
    })();

    const valid = await RawConnection.open(engine.mediaUrl);
    try {
      for (let round = 0; round < 20; round++) {
        for (const [body, code] of expected) {
          await valid.write(rawPost(tencent.path, body));
          const reply = await valid.readReply();
          expect(reply.status).toBe(200);
          expect((tencent.decodeReply(reply.body, '') as { code: number }).code).toBe(code);
        }
      }
    } finally {
      validDone = true;
      valid.destroy();
    }
    await flood;

    expect(junkAnswered).toBeGreaterThan(0);
    const abortedBefore = metricSum(before, 'rta_aborted_requests_total');
    expect(await waitForMetric(engine, 'rta_aborted_requests_total', {}, abortedBefore + abandoned)).toBe(abortedBefore + abandoned);
    expect(rejectedDeltas(before, await scrape(engine))).toEqual({ malformed_protobuf: junkAnswered });
  });
});
