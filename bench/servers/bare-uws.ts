/**
 * The ceiling: native uWebSockets.js answering both media routes with fixed bytes, after reading the whole body,
 * and doing nothing else. The bytes are a typical "take" reply of each protocol, so the ceiling moves as many
 * bytes as the engine does. Run: node --import tsx bench/servers/bare-uws.ts  (env HOST, PORT; PORT=0 = any free)
 */
import { DeviceIdKind, type Decision } from '../../src/engine/types.js';
import { mediaModule } from '../../src/media/registry.js';
import { loadNativeUws } from '../../src/server/uws.js';

const TYPICAL_TAKE: Decision = {
  code: 0,
  reason: 'take',
  strategies: [
    {
      strategyId: 'acq_prime_new',
      coefficient: 1.18,
      creativeId: 710101,
      cpaPriceFen: 0,
      cpcPriceFen: 0,
      experimentTag: 480001,
      experimentTagName: 'control',
      pcvr: 0.0213,
    },
  ],
  adResults: [],
  cacheTtlSeconds: 3600,
  experimentTag: 480001,
  experimentTagName: 'control',
  processingTimeUs: 180,
  modelVersion: 'apply@1,approve@1,risk@1,ltv@1',
  bookVersion: '3f9a1c2b7d4e',
  mediaStrategyIds: new Map(),
  facts: null,
};

function typicalReply(media: 'tencent' | 'native'): { body: Uint8Array; contentType: string } {
  const { client, adapter } = mediaModule(media);
  const request = client.encodeRequest({
    requestId: '0000002a0001e2405f3a9c7be1d04c2f',
    os: 'android',
    ids: [{ kind: DeviceIdKind.OAID_MD5, md5: '3fe359c786cf678c65a0ad10421d0350' }],
    platformExperimentIds: [32768],
    isPing: false,
    isTest: false,
    secondRequest: false,
    ads: [],
  });
  const reply = adapter.encode(adapter.decode(request.body, request.contentType), TYPICAL_TAKE);
  return { body: typeof reply.body === 'string' ? Buffer.from(reply.body) : reply.body, contentType: reply.contentType };
}

const uws = loadNativeUws();
const app = uws.App();
const replies = { '/rta/tencent': typicalReply('tencent'), '/rta/v1': typicalReply('native') };
for (const [path, reply] of Object.entries(replies)) {
  app.post(path, (res) => {
    res.onAborted(() => {});
    res.onData((_chunk, isLast) => {
      if (isLast) res.cork(() => res.writeStatus('200 OK').writeHeader('Content-Type', reply.contentType).end(reply.body));
    });
  });
}
const host = process.env.HOST ?? '127.0.0.1';
app.listen(host, Number(process.env.PORT ?? 0), (socket) => {
  if (!socket) {
    console.error(`bare server: cannot listen on ${host}:${process.env.PORT}`);
    process.exit(1);
  }
  const port = uws.us_socket_local_port(socket);
  const replyBytes = Object.fromEntries(Object.entries(replies).map(([path, r]) => [path, r.body.length]));
  console.log(JSON.stringify({ event: 'listening', media: `http://${host}:${port}`, admin: null, replyBytes }));
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
