import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runClosedLoop, wrkAvailable } from '../../bench/lib/closed-loop.js';
import { OpenLoopClient, poissonSchedule } from '../../bench/lib/open-loop.js';
import { ResponseFramingError, ResponseReader } from '../../bench/lib/response-reader.js';
import type { EncodedRequest } from '../../bench/lib/traffic.js';

const response = (status: number, body: string, lengthHeader = 'Content-Length') =>
  Buffer.from(`HTTP/1.1 ${status} X\r\nDate: now\r\n${lengthHeader}: ${Buffer.byteLength(body)}\r\nContent-Type: a/b\r\n\r\n${body}`, 'latin1');

describe('ResponseReader', () => {
  const stream = Buffer.concat([response(200, 'first body'), response(400, 'bad_request: no'), response(204, ''), response(200, 'x'.repeat(300), 'content-length')]);

  test('frames back-to-back responses however the bytes are split into chunks', () => {
    for (let cut = 1; cut < stream.length; cut += 7) {
      const statuses: number[] = [];
      const reader = new ResponseReader((status) => statuses.push(status));
      reader.feed(stream.subarray(0, cut));
      reader.feed(stream.subarray(cut));
      expect(statuses).toEqual([200, 400, 204, 200]);
    }
    const statuses: number[] = [];
    const reader = new ResponseReader((status) => statuses.push(status));
    for (let i = 0; i < stream.length; i++) reader.feed(stream.subarray(i, i + 1));
    expect(statuses).toEqual([200, 400, 204, 200]);
  });

  test('refuses a response it cannot frame', () => {
    const reader = new ResponseReader(() => {});
    expect(() => reader.feed(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'))).toThrow(ResponseFramingError);
    expect(() => new ResponseReader(() => {}).feed(Buffer.from('SSH-2.0-OpenSSH\r\n\r\n'))).toThrow(/not an HTTP\/1.x status line/);
  });
});

describe('poissonSchedule', () => {
  test('arrivals come at the target rate with exponential gaps, the same for the same seed', () => {
    const rate = 20_000;
    const schedule = poissonSchedule(rate, 2, 3);
    // Count of a Poisson process: mean rate x time, standard deviation its square root.
    expect(Math.abs(schedule.length - rate * 2)).toBeLessThan(4 * Math.sqrt(rate * 2));
    const gaps = schedule.slice(1).map((t, i) => t - schedule[i]!);
    expect(gaps.every((g) => g >= 0)).toBe(true);
    const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
    const sd = Math.sqrt(gaps.reduce((a, g) => a + (g - mean) ** 2, 0) / gaps.length);
    expect(sd / mean).toBeGreaterThan(0.95); // exponential: coefficient of variation 1; evenly spaced would be 0
    expect(sd / mean).toBeLessThan(1.05);
    expect(poissonSchedule(rate, 2, 3)).toEqual(schedule);
  });
});

describe('OpenLoopClient', () => {
  let server: Server;
  let port: number;
  let delayMs = 0;
  const request: EncodedRequest = {
    path: '/rta/v1',
    contentType: 'application/x-protobuf',
    body: Buffer.from('abc'),
    message: Buffer.from('POST /rta/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc'),
  };
  const notFound: EncodedRequest = { ...request, path: '/nope', message: Buffer.from('POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc') };

  beforeAll(async () => {
    server = createServer({ keepAlive: true }, (req, res) => {
      req.resume();
      req.on('end', () => setTimeout(() => res.writeHead(req.url === '/rta/v1' ? 200 : 404, { 'Content-Length': 2 }).end('ok'), delayMs));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => server.close());

  test('sends every scheduled request and counts non-200 answers', async () => {
    delayMs = 0;
    const client = new OpenLoopClient('127.0.0.1', port, 16, [request, notFound, request]);
    const result = await client.runAt({ rate: 600, durationSeconds: 0.5, seed: 1, graceSeconds: 2 }, true);
    client.close();
    expect(result.completed).toBe(result.scheduled);
    expect(result.errors + result.timeouts).toBe(0);
    // Every third request goes to /nope.
    expect(result.non200).toBe(Math.floor((result.scheduled + 1) / 3));
    expect(result.latency.p50).toBeGreaterThan(0);
    expect(result.waitedForConnection).toBeLessThan(result.scheduled / 10);
    expect(Math.abs(result.achievedRate - 600)).toBeLessThan(600 * 0.3);
  });

  test('charges queueing to the request: latency runs from the scheduled time, not from when a connection was free', async () => {
    delayMs = 20;
    // One connection, a request every 5 ms on average, 20 ms per answer: the backlog grows for the whole run.
    const client = new OpenLoopClient('127.0.0.1', port, 1, [request]);
    const result = await client.runAt({ rate: 200, durationSeconds: 0.5, seed: 2, graceSeconds: 5 }, true);
    client.close();
    expect(result.completed).toBe(result.scheduled);
    const serviceMicros = 20_000;
    // Measured from the actual send, every latency would be about one service time.
    expect(result.latency.max).toBeGreaterThan(serviceMicros * (result.scheduled - 1) - 500_000);
    // The wait was for the connection, not the generator's lateness; and the server kept up with a quarter of the rate.
    expect(result.waitedForConnection).toBeGreaterThan(result.scheduled / 2);
    expect(result.achievedRate).toBeLessThan(200 / 2);
  });
});

const wrkMissing = wrkAvailable();
if (wrkMissing) console.warn(`SKIPPED: the wrk closed-loop test needs wrk and GNU time: ${wrkMissing}`);

describe.skipIf(wrkMissing !== null)('runClosedLoop (wrk)', () => {
  let server: Server;
  let port: number;
  const seen = new Map<string, number>();
  // Binary bodies with every byte value, so a hex or Lua string slip would show.
  const bodies = [0, 1, 2].map((i) => Buffer.from(Array.from({ length: 256 }, (_, b) => (b + i) % 256)));
  const requests: EncodedRequest[] = bodies.map((body, i) => ({
    path: i === 2 ? '/nope' : '/rta/v1',
    contentType: 'application/x-protobuf',
    body,
    message: Buffer.alloc(0),
  }));

  beforeAll(async () => {
    server = createServer({ keepAlive: true }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const key = `${req.url} ${req.headers['content-type']} ${Buffer.concat(chunks).toString('hex')}`;
        seen.set(key, (seen.get(key) ?? 0) + 1);
        res.writeHead(req.url === '/rta/v1' ? 200 : 404, { 'Content-Length': 2 }).end('ok');
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => server.close());

  test('sends the pre-encoded requests byte for byte in rotation, and counts what was not 2xx', async () => {
    const result = await runClosedLoop({ url: `http://127.0.0.1:${port}`, requests, connections: 4, durationSeconds: 1 });
    const expected = requests.map((r) => `${r.path} ${r.contentType} ${r.body.toString('hex')}`);
    expect([...seen.keys()].sort()).toEqual([...expected].sort());
    const counts = expected.map((key) => seen.get(key)!);
    // Rotation: each request within a few of a third of the total (requests in flight when wrk stopped differ).
    for (const count of counts) expect(Math.abs(count - result.responses / 3)).toBeLessThanOrEqual(5);
    // The server also saw the requests still in flight when wrk stopped: at most one per connection.
    expect(counts[2]! - result.non2xx).toBeGreaterThanOrEqual(0);
    expect(counts[2]! - result.non2xx).toBeLessThanOrEqual(4);
    expect(result.requestsPerSecond * result.seconds).toBeCloseTo(result.responses - result.non2xx, 0);
    expect(result.errors + result.timeouts).toBe(0);
    expect(result.generatorCpuSeconds).toBeGreaterThan(0);
    expect(result.latency).toBeUndefined();
  });

  test("with latency asked for, wrk's p50, p99 and max are read, in microseconds and in order", async () => {
    const { latency } = await runClosedLoop({ url: `http://127.0.0.1:${port}`, requests, connections: 4, durationSeconds: 1, latency: true });
    expect(latency!.p50).toBeGreaterThan(0);
    expect(latency!.p99).toBeGreaterThanOrEqual(latency!.p50);
    expect(latency!.max).toBeGreaterThanOrEqual(latency!.p99);
    // A loopback reply takes microseconds to milliseconds, never seconds: a unit read wrongly would be 1000x off.
    expect(latency!.p50).toBeLessThan(100_000);
  });
});
