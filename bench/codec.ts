/**
 * Micro-measure of the media codecs against the budget (decode + encode <= 20 us per request).
 * Run: npx tsx bench/codec.ts   (a few seconds; single-threaded)
 */
import { DeviceIdKind, type BidContext, type Decision } from '../src/engine/types.js';
import { nativeAdapter } from '../src/media/native/adapter.js';
import { loadProto } from '../src/media/protobuf.js';
import { tencentAdapter } from '../src/media/tencent/adapter.js';
import { checkWire, compileWireRule } from '../src/media/wire-check.js';

const tencent = loadProto(new URL('../proto/tencent/rta.proto', import.meta.url));
const RtaRequest = tencent.lookupType('tencent.ad.rta.RtaRequest');
const native = loadProto(new URL('../proto/rta/v1/native.proto', import.meta.url));
const NativeRequest = native.lookupType('rta.v1.NativeRequest');

const OAID = '3fe359c786cf678c65a0ad10421d0350';
const IMEI = 'ee7312e93d57adefe4b880dcf13ab6b5';
const ANDROID_ID = 'cf95dc53f383f9a836fd749f3ef439cd';

const tencentBytes = RtaRequest.encode(
  RtaRequest.fromObject({
    id: 'e3b0c44298fc1c149afbf4c8996fb924-27ae41e4649b934c',
    device: { os: 'OS_ANDROID', oaid_md5sum: OAID, imei_md5sum: IMEI, android_id_md5sum: ANDROID_ID, ip: '203.0.113.7' },
    request_info: { request_type: 'NORMAL_REQUEST' },
    exps: [{ exp_id: 1024 }, { exp_id: 77 }],
    siteset_id: 21,
  }),
).finish();

const nativeBytes = NativeRequest.encode(
  NativeRequest.fromObject({
    request_id: 'e3b0c44298fc1c149afbf4c8996fb924-27ae41e4649b934c',
    media: 'kuaishou',
    os: 'OS_ANDROID',
    device_ids: [
      { type: 'OAID_MD5', md5: OAID },
      { type: 'IMEI_MD5', md5: IMEI },
      { type: 'ANDROID_ID_MD5', md5: ANDROID_ID },
    ],
    experiment_ids: [1024, 77],
  }),
).finish();

const strategy = (strategyId: string, coefficient: number, experimentTag: number) => ({
  strategyId,
  coefficient,
  creativeId: 4503599627370497,
  cpaPriceFen: 12000,
  cpcPriceFen: 0,
  experimentTag,
  experimentTagName: experimentTag ? `exp_${experimentTag}` : '',
  pcvr: 0.031,
});
const decision: Decision = {
  code: 0,
  reason: 'take',
  strategies: [strategy('new_prime', 1.35, 301), strategy('reactivate_dormant', 0.8, 0), strategy('high_limit', 2.5, 302)],
  adResults: [],
  cacheTtlSeconds: 7200,
  experimentTag: 12,
  experimentTagName: 'ctrl',
  processingTimeUs: 850,
  modelVersion: 'apply@3,risk@7',
  bookVersion: '3f9a1c2b7d4e',
  mediaStrategyIds: new Map(),
  facts: null,
};

const tencentContext: BidContext = tencentAdapter.decode(tencentBytes, '');
const nativeContext: BidContext = nativeAdapter.decode(nativeBytes, '');
if (tencentContext.deviceIds.length !== 3 || tencentContext.deviceIds[0]!.kind !== DeviceIdKind.OAID_MD5) {
  throw new Error('bench request does not decode to 3 device ids');
}
const tencentRule = compileWireRule(RtaRequest);

function measure(name: string, run: () => unknown): number {
  const durationNs = 600_000_000n;
  for (let i = 0; i < 20_000; i++) run();
  let iterations = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0n;
  while (elapsed < durationNs) {
    for (let i = 0; i < 1000; i++) run();
    iterations += 1000;
    elapsed = process.hrtime.bigint() - start;
  }
  const nsPerOp = Number(elapsed) / iterations;
  console.log(`${name.padEnd(44)} ${nsPerOp.toFixed(0).padStart(7)} ns/op`);
  return nsPerOp;
}

console.log(`request bytes: tencent ${tencentBytes.length}, native ${nativeBytes.length}`);
const wire = measure('tencent wire-check alone', () => checkWire(tencentRule, tencentBytes));
measure('tencent protobufjs decode alone', () => RtaRequest.decode(tencentBytes));
const tencentDecode = measure('tencent decode (check + decode + map)', () => tencentAdapter.decode(tencentBytes, ''));
const tencentEncode = measure('tencent encode (3 strategies)', () => tencentAdapter.encode(tencentContext, decision));
const nativeDecode = measure('native protobuf decode', () => nativeAdapter.decode(nativeBytes, ''));
const nativeEncode = measure('native protobuf encode (3 strategies)', () => nativeAdapter.encode(nativeContext, decision));
console.log(
  `tencent decode+encode ${((tencentDecode + tencentEncode) / 1000).toFixed(2)} us, ` +
    `native ${((nativeDecode + nativeEncode) / 1000).toFixed(2)} us (budget 20 us); ` +
    `wire-check is ${((100 * wire) / tencentDecode).toFixed(0)}% of tencent decode`,
);
