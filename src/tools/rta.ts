#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DeviceIdKind } from '../engine/types.js';
import { MEDIA_CLIENTS } from '../media/clients.js';
import type { SimulatedAd, SimulatedRequest } from '../media/simulated-request.js';
import { hashRawDeviceId } from '../store/device-key.js';

/**
 * The media simulator: builds a request the way a media platform would (raw ids hashed by the platform's rules),
 * sends it to the engine, and prints the decoded reply.
 *
 *   rta send --media tencent --oaid <raw OAID> --os android --exp 32768
 *   rta send --media tencent --oaid <raw OAID> --second-request --ad 9001:710101/311,710100/450
 *   rta personas            (demo devices that produce each kind of answer)
 */

const USAGE = `usage:
  rta send [--url http://127.0.0.1:8080] [--media tencent|native] [--json]
           [--os android|ios] [--oaid RAW] [--imei RAW] [--idfa RAW] [--caid RAW] [--android-id RAW] [--mac RAW]
           [--md5 KIND:HEX ...] [--exp ID ...] [--ping] [--test] [--request-id ID]
           [--second-request --ad ADGROUP[@STRATEGY]:CREATIVE/TEMPLATE,CREATIVE/TEMPLATE ...]
  rta personas [--file data/generated/personas.json]`;

const RAW_ID_OPTIONS = {
  oaid: DeviceIdKind.OAID_MD5,
  imei: DeviceIdKind.IMEI_MD5,
  idfa: DeviceIdKind.IDFA_MD5,
  caid: DeviceIdKind.CAID_MD5,
  'android-id': DeviceIdKind.ANDROID_ID_MD5,
  mac: DeviceIdKind.MAC_MD5,
} as const;
const KIND_BY_NAME: Record<string, DeviceIdKind> = {
  oaid_md5: DeviceIdKind.OAID_MD5,
  imei_md5: DeviceIdKind.IMEI_MD5,
  idfa_md5: DeviceIdKind.IDFA_MD5,
  caid_md5: DeviceIdKind.CAID_MD5,
  android_id_md5: DeviceIdKind.ANDROID_ID_MD5,
  mac_md5: DeviceIdKind.MAC_MD5,
};
class UsageError extends Error {}

function parseAd(text: string): SimulatedAd {
  const match = /^(\d+)(?:@([A-Za-z0-9_.-]+))?:(.*)$/.exec(text);
  if (!match) throw new UsageError(`--ad "${text}": expected ADGROUP[@STRATEGY]:CREATIVE/TEMPLATE,...`);
  const creatives = match[3]!.split(',').filter(Boolean).map((pair) => {
    const [creativeId, templateId] = pair.split('/');
    if (!/^\d+$/.test(creativeId ?? '') || !/^\d+$/.test(templateId ?? '')) throw new UsageError(`--ad "${text}": "${pair}" is not CREATIVE/TEMPLATE`);
    return { creativeId: creativeId!, templateId: Number(templateId) };
  });
  return { adGroupId: match[1]!, strategyId: match[2] ?? '', creatives };
}

async function send(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      url: { type: 'string', default: 'http://127.0.0.1:8080' },
      media: { type: 'string', default: 'tencent' },
      json: { type: 'boolean', default: false },
      os: { type: 'string', default: 'android' },
      oaid: { type: 'string' },
      imei: { type: 'string' },
      idfa: { type: 'string' },
      caid: { type: 'string' },
      'android-id': { type: 'string' },
      mac: { type: 'string' },
      md5: { type: 'string', multiple: true, default: [] },
      exp: { type: 'string', multiple: true, default: [] },
      ping: { type: 'boolean', default: false },
      test: { type: 'boolean', default: false },
      'request-id': { type: 'string', default: `sim-${Date.now().toString(36)}` },
      'second-request': { type: 'boolean', default: false },
      ad: { type: 'string', multiple: true, default: [] },
    },
  });
  if (!MEDIA_CLIENTS.has(values.media)) throw new UsageError(`--media must be one of ${[...MEDIA_CLIENTS.keys()].join(', ')}`);
  const os = values.os;
  if (os !== 'android' && os !== 'ios') throw new UsageError(`--os must be android or ios`);
  if (values.json && values.media !== 'native') throw new UsageError('--json is for --media native');

  const ids: { kind: DeviceIdKind; md5: string; raw?: string }[] = [];
  for (const [option, kind] of Object.entries(RAW_ID_OPTIONS)) {
    const raw = values[option as keyof typeof RAW_ID_OPTIONS];
    if (raw) ids.push({ kind, md5: hashRawDeviceId(kind, raw), raw });
  }
  for (const spec of values.md5) {
    const [name, hex] = spec.split(':');
    const kind = KIND_BY_NAME[name ?? ''];
    if (kind === undefined || !hex) throw new UsageError(`--md5 "${spec}": expected KIND:HEX with KIND one of ${Object.keys(KIND_BY_NAME).join(', ')}`);
    ids.push({ kind, md5: hex });
  }
  const exps = values.exp.map((e) => {
    if (!/^\d+$/.test(e)) throw new UsageError(`--exp "${e}" is not a number`);
    return Number(e);
  });
  const ads = values.ad.map(parseAd);
  if (ads.length > 0 && !values['second-request']) throw new UsageError('--ad needs --second-request');

  const client = MEDIA_CLIENTS.get(values.media)!;
  const request: SimulatedRequest = {
    requestId: values['request-id'],
    os,
    ids,
    platformExperimentIds: exps,
    isPing: values.ping,
    isTest: values.test,
    secondRequest: values['second-request'],
    ads,
  };
  const { body, contentType } = client.encodeRequest(request, { json: values.json });

  console.log(`-> POST ${values.url}${client.path}  (${body.length} bytes, ${contentType})`);
  for (const id of ids) console.log(`   ${Object.keys(KIND_BY_NAME).find((k) => KIND_BY_NAME[k] === id.kind)}=${id.md5}${id.raw ? `  (raw "${id.raw}")` : ''}`);
  const started = performance.now();
  const response = await fetch(`${values.url}${client.path}`, { method: 'POST', body, headers: { 'Content-Type': contentType } });
  const replyBytes = new Uint8Array(await response.arrayBuffer());
  const millis = (performance.now() - started).toFixed(2);
  console.log(`<- HTTP ${response.status} in ${millis} ms (round trip), ${replyBytes.length} bytes`);
  if (response.status !== 200) {
    console.log(new TextDecoder().decode(replyBytes));
    process.exitCode = 1;
    return;
  }
  console.log(JSON.stringify(client.decodeReply(replyBytes, response.headers.get('content-type') ?? ''), null, 2));
}

function personas(args: string[]): void {
  const { values } = parseArgs({ args, options: { file: { type: 'string', default: new URL('../../data/generated/personas.json', import.meta.url).pathname } } });
  let text: string;
  try {
    text = readFileSync(values.file, 'utf8');
  } catch {
    throw new UsageError(`no personas file at ${values.file}: generate the demo data first (node dist/tools/demo-data.js)`);
  }
  console.log(JSON.stringify(JSON.parse(text), null, 2));
}

const [command, ...rest] = process.argv.slice(2);
const run = command === 'send' ? send(rest) : command === 'personas' ? Promise.resolve(personas(rest)) : Promise.reject(new UsageError(command ? `unknown command "${command}"` : 'no command'));
run.catch((err: Error) => {
  if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    console.error(`rta: ${err.message}\n${USAGE}`);
    process.exit(2);
  }
  console.error(`rta: ${err.message}${err.cause ? ` (${(err.cause as Error).message})` : ''}`);
  process.exit(1);
});
