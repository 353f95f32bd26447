#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DeviceIdKind } from '../engine/types.js';
import { MEDIA_NAMES, mediaModule } from '../media/registry.js';
import type { SimulatedAd, SimulatedRequest } from '../media/simulated-request.js';
import { loadConfig } from '../config.js';
import { hashRawDeviceId } from '../store/device-key.js';
import { strategyIdsInFile } from '../strategy/book.js';
import { ADMIN_OPTIONS, adminAuthorization, adminCall } from './admin-call.js';
import { checkCommand, CHECK_USAGE } from './check-book.js';
import { controllerCommand, eventsCommand, learningCommand, reportCommand, REPORT_USAGE, ReportUsageError } from './report-command.js';
import { dryRunCommand, DryRunUsageError, DRY_RUN_USAGE } from './dry-run.js';
import { experimentsCommand, logCommand, LogUsageError, LOG_USAGE } from './log-command.js';
import type { BookDiff, FieldChange, ItemChanges, Listing } from '../strategy/versions.js';

/**
 * The media simulator: builds a request the way a media platform would (raw ids hashed by the platform's rules),
 * sends it to the engine, and prints the decoded reply.
 *
 *   rta send --media tencent --oaid <raw OAID> --os android --exp 32768
 *   rta send --media ocean --oaid <raw OAID>      (asks about the book's strategies on Ocean; --ask picks some)
 *   rta send --media tencent --oaid <raw OAID> --second-request --ad 9001:710101/311,710100/450
 *   rta personas            (demo devices that produce each kind of answer)
 *   rta book list           (the strategy book's versions, on the admin port; see README "Versions and rollback")
 */

const USAGE = `usage:
  rta send [--url http://127.0.0.1:8080] [--media ${MEDIA_NAMES.join('|')}] [--json] [--ask STRATEGY_ID ...]
           [--os android|ios] [--oaid RAW] [--imei RAW] [--idfa RAW] [--caid RAW] [--android-id RAW] [--mac RAW]
           [--md5 KIND:HEX ...] [--exp ID ...] [--ping] [--test] [--request-id ID]
           [--second-request --ad ADGROUP[@STRATEGY]:CREATIVE/TEMPLATE,CREATIVE/TEMPLATE ...]
  rta explain [--admin http://127.0.0.1:8081] [--token T] [--format text|json] [the request flags of send]
${LOG_USAGE}
${DRY_RUN_USAGE}
${CHECK_USAGE}
${REPORT_USAGE}
  rta personas [--file data/generated/personas.json]
  rta book list | show ID | diff ID OTHER          [--admin http://127.0.0.1:8081] [--token T (or RTA_ADMIN_TOKEN)]
  rta book apply FILE --author A --message M       a new book, checked and put in service on every serving thread
  rta book rollback ID --author A --message M      a stored version back in service`;

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

/** The flags that describe a request, for `send` and `explain`. */
const REQUEST_OPTIONS = {
  media: { type: 'string' as const, default: 'tencent' },
  json: { type: 'boolean' as const, default: false },
  os: { type: 'string' as const, default: 'android' },
  oaid: { type: 'string' as const },
  imei: { type: 'string' as const },
  idfa: { type: 'string' as const },
  caid: { type: 'string' as const },
  'android-id': { type: 'string' as const },
  mac: { type: 'string' as const },
  md5: { type: 'string' as const, multiple: true as const, default: [] as string[] },
  exp: { type: 'string' as const, multiple: true as const, default: [] as string[] },
  ping: { type: 'boolean' as const, default: false },
  test: { type: 'boolean' as const, default: false },
  'request-id': { type: 'string' as const, default: `sim-${Date.now().toString(36)}` },
  'second-request': { type: 'boolean' as const, default: false },
  ad: { type: 'string' as const, multiple: true as const, default: [] as string[] },
  ask: { type: 'string' as const, multiple: true as const, default: [] as string[] },
};
type RequestFlags = ReturnType<typeof parseArgs<{ options: typeof REQUEST_OPTIONS }>>['values'];

/** The request the flags describe, encoded the way that media encodes it (raw ids hashed by its rules). */
function buildRequest(values: RequestFlags) {
  if (!MEDIA_NAMES.includes(values.media)) throw new UsageError(`--media must be one of ${MEDIA_NAMES.join(', ')}`);
  const os = values.os;
  if (os !== 'android' && os !== 'ios') throw new UsageError(`--os must be android or ios`);
  if (values.json && values.media !== 'native') throw new UsageError('--json is for --media native');
  if (values.ping && !mediaModule(values.media).speaks.ping) throw new UsageError(`--ping: ${values.media} has no ping`);
  if (values.test && !mediaModule(values.media).speaks.test) throw new UsageError(`--test: ${values.media} has no test flag`);
  if (values['second-request'] && !mediaModule(values.media).speaks.secondRequest) throw new UsageError(`--second-request: ${values.media} has no second request`);

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

  const module = mediaModule(values.media);
  const { client } = module;
  if (values.ask.length > 0 && !module.speaks.askedStrategies) throw new UsageError(`--ask is for media that name the strategies they ask about; ${module.name} asks about all`);
  const request: SimulatedRequest = {
    requestId: values['request-id'],
    os,
    ids,
    platformExperimentIds: exps,
    isPing: values.ping,
    isTest: values.test,
    secondRequest: values['second-request'],
    ads,
    ...(module.speaks.askedStrategies ? { askedStrategyIds: values.ask.length > 0 ? values.ask : strategyIdsInBook(module) } : {}),
  };
  return { client, ids, ...client.encodeRequest(request, { json: values.json }) };
}

/** Without --ask, the request asks about every strategy of the configured book on that media (by its id there). */
function strategyIdsInBook(module: ReturnType<typeof mediaModule>): string[] {
  const file = JSON.parse(readFileSync(loadConfig().strategies, 'utf8')) as { strategies: Parameters<typeof strategyIdsInFile>[0] };
  return strategyIdsInFile(file.strategies, module);
}

async function send(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { ...REQUEST_OPTIONS, url: { type: 'string', default: 'http://127.0.0.1:8080' } } });
  const { client, ids, body, contentType } = buildRequest(values);

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

/** The same request, decided by a serving thread through the admin port's /explain, and explained. */
async function explain(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { ...REQUEST_OPTIONS, ...ADMIN_OPTIONS, format: { type: 'string', default: 'text' } } });
  if (values.format !== 'text' && values.format !== 'json') throw new UsageError('--format must be text or json');
  const { client, body, contentType } = buildRequest(values);
  const response = await fetch(`${values.admin}/explain?media=${client.name}`, {
    method: 'POST',
    body,
    headers: { 'Content-Type': contentType, Accept: values.format === 'json' ? 'application/json' : 'text/plain', ...adminAuthorization(values.token) },
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${text.trim()}`);
  process.stdout.write(values.format === 'json' ? `${JSON.stringify(JSON.parse(text), null, 2)}\n` : text);
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

/** The strategy book's versions, through the admin port's /books routes. */
async function book(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      ...ADMIN_OPTIONS,
      author: { type: 'string' },
      message: { type: 'string' },
    },
  });
  const call = (method: 'GET' | 'POST', path: string, body?: unknown) => adminCall(values, method, path, body);
  const signature = () => {
    if (!values.author || !values.message) throw new UsageError('say who and why: --author and --message are required');
    return { author: values.author, message: values.message };
  };
  const [action, ...operands] = positionals;
  const wants = (count: number, names: string) => {
    if (operands.length !== count) throw new UsageError(`rta book ${action} takes ${names}`);
    return operands as [string, string];
  };
  if (action === 'list') {
    wants(0, 'no operands');
    printListing((await call('GET', '/books')) as Listing);
  } else if (action === 'show') {
    const [id] = wants(1, 'a version id');
    const shown = (await call('GET', `/books/${id}`)) as { id: string; live: boolean; events: Listing['events']; book: unknown };
    console.log(`version ${shown.id}${shown.live ? ' (live)' : ''}`);
    printEvents(shown.events);
    console.log(JSON.stringify(shown.book, null, 2));
  } else if (action === 'diff') {
    const [id, other] = wants(2, 'two version ids');
    printDiff((await call('GET', `/books/${id}/diff/${other}`)) as BookDiff & { from: string; to: string });
  } else if (action === 'apply') {
    const [file] = wants(1, 'a book file');
    const by = signature();
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new UsageError(`${file} is not JSON: ${(err as Error).message}`);
    }
    printApplied((await call('POST', '/books', { book: json, ...by })) as Applied);
  } else if (action === 'rollback') {
    const [id] = wants(1, 'a version id');
    printApplied((await call('POST', `/books/${id}/apply`, signature())) as Applied);
  } else {
    throw new UsageError(action ? `unknown book action "${action}"` : 'rta book needs an action');
  }
}

interface Applied {
  book: string;
  result: 'applied' | 'rolled_back';
  bidding: string[];
  warnings?: string[];
  millis: number;
}

function printApplied(applied: Applied): void {
  const what = applied.result === 'applied' ? 'applied' : 'rolled back to';
  console.log(`${what} ${applied.book} on every serving thread in ${applied.millis} ms; bidding: ${applied.bidding.join(', ')}`);
  for (const warning of applied.warnings ?? []) console.log(`  warning: ${warning}`);
}

function printListing(listing: Listing): void {
  console.log(`live version: ${listing.live ?? 'none'}  (* marks the change that put it in service)`);
  printEvents(listing.events);
}

function printEvents(events: Listing['events']): void {
  const width = Math.max(0, ...events.map((e) => e.author.length));
  for (const e of events) {
    console.log(`${e.live ? '*' : ' '} ${e.id}  ${e.time}  ${e.result.padEnd(11)}  ${e.author.padEnd(width)}  ${e.message}`);
    for (const error of e.errors ?? []) console.log(`      ${error}`);
  }
}

function printDiff(diff: BookDiff & { from: string; to: string }): void {
  console.log(`${diff.from} -> ${diff.to}`);
  const lines = [...fieldLines('book', diff.book), ...itemLines('strategy', diff.strategies), ...itemLines('experiment', diff.experiments)];
  console.log(lines.length > 0 ? lines.join('\n') : 'no differences');
}

function itemLines(kind: string, items: ItemChanges): string[] {
  return [
    ...items.added.map((id) => `${kind} ${id}: added`),
    ...items.removed.map((id) => `${kind} ${id}: removed`),
    ...items.changed.flatMap(({ id, changes }) => fieldLines(`${kind} ${id}`, changes)),
    ...(items.order ? [`${kind} order: ${items.order.from.join(', ')} -> ${items.order.to.join(', ')}`] : []),
  ];
}

function fieldLines(heading: string, changes: FieldChange[]): string[] {
  if (changes.length === 0) return [];
  const shown = (change: FieldChange, side: 'from' | 'to') => (side in change ? JSON.stringify(change[side]) : '(unset)');
  return [`${heading}: changed`, ...changes.map((c) => `  ${c.field}: ${shown(c, 'from')} -> ${shown(c, 'to')}`)];
}

const [command, ...rest] = process.argv.slice(2);
const run =
  command === 'send'
    ? send(rest)
    : command === 'personas'
      ? Promise.resolve(personas(rest))
      : command === 'book'
        ? book(rest)
        : command === 'explain'
          ? explain(rest)
          : command === 'log'
            ? Promise.resolve(logCommand(rest))
            : command === 'experiments'
              ? Promise.resolve(experimentsCommand(rest))
              : command === 'dry-run'
                ? dryRunCommand(rest)
                : command === 'check'
                  ? Promise.resolve(checkCommand(rest))
                  : command === 'events'
                    ? eventsCommand(rest)
                    : command === 'report'
                      ? reportCommand(rest)
                      : command === 'tuning' || command === 'creatives'
                        ? controllerCommand(command === 'tuning' ? 'bid-tuning' : 'creatives', rest)
                        : command === 'learning'
                          ? learningCommand(rest)
                          : Promise.reject(new UsageError(command ? `unknown command "${command}"` : 'no command'));
run.catch((err: Error) => {
  if (err instanceof UsageError || err instanceof LogUsageError || err instanceof DryRunUsageError || err instanceof ReportUsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    console.error(`rta: ${err.message}\n${USAGE}`);
    process.exit(2);
  }
  console.error(`rta: ${err.message}${err.cause ? ` (${(err.cause as Error).message})` : ''}`);
  process.exit(1);
});
