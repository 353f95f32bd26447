import { z } from 'zod';
import type { DecisionSink } from '../engine/engine.js';
import { InputError } from '../engine/errors.js';
import { DecisionCode, DeviceIdKind, type BidContext, type Decision } from '../engine/types.js';
import { mediaModule } from '../media/registry.js';
import { explainDecision, type Explanation } from '../observe/explain.js';
import { hashRawDeviceId } from '../store/device-key.js';
import type { Runtime } from './boot.js';

/**
 * `POST /explain` on the admin port: a request in a media's own protocol (`?media=<registered name>`), or a device
 * described in JSON, decided by a serving thread's engine exactly as live traffic is, and explained. Marked as test
 * traffic on the way in, so it stays out of the strategy metrics, and never written to the decision log.
 */
export class ExplainError extends Error {
  constructor(
    readonly status: '400 Bad Request' | '404 Not Found' | '500 Internal Server Error',
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/** Explain is not latency-bound: a deadline this far out lets a busy thread's scores arrive instead of the fallback. */
const EXPLAIN_DEADLINE_SLACK_MS = 5_000;

export function explainRequest(runtime: Runtime, media: string, body: Uint8Array, contentType: string): Promise<Explanation> {
  const served = runtime.media.find((m) => m.module.name === media);
  if (!served) return Promise.reject(new ExplainError('404 Not Found', 'unknown_media', `no media "${media}" (one of ${runtime.media.map((m) => m.module.name).join(', ')})`));
  const { module } = served;
  const { adapter } = module;
  let context: BidContext;
  try {
    context = adapter.decode(body, contentType);
  } catch (error) {
    if (error instanceof InputError) return Promise.reject(new ExplainError('400 Bad Request', error.reason, error.message));
    throw error;
  }
  context.isTest = true;
  return new Promise((resolve, reject) => {
    const sink: DecisionSink = {
      deliver(decided: BidContext, decision: Decision) {
        try {
          // What the route sends: a media that declines with 204 gets no body at all.
          if (served.rules.declineStatus === 204 && decision.code !== DecisionCode.TAKE) {
            resolve(explainDecision(decided, decision, { status: 204 }, runtime.profile));
            return;
          }
          const reply = adapter.encode(decided, decision);
          const bytes = typeof reply.body === 'string' ? new TextEncoder().encode(reply.body) : reply.body;
          resolve(explainDecision(decided, decision, module.client.decodeReply(bytes, reply.contentType), runtime.profile));
        } catch (error) {
          reject(error);
        }
      },
      fail(_context, stage) {
        reject(new ExplainError('500 Internal Server Error', 'internal_error', `${stage} failed and so did the fallback`));
      },
    };
    runtime.engine.handle(context, sink, performance.now() + EXPLAIN_DEADLINE_SLACK_MS);
  });
}

const RAW_ID_KINDS = {
  oaid: DeviceIdKind.OAID_MD5,
  imei: DeviceIdKind.IMEI_MD5,
  idfa: DeviceIdKind.IDFA_MD5,
  caid: DeviceIdKind.CAID_MD5,
  android_id: DeviceIdKind.ANDROID_ID_MD5,
  mac: DeviceIdKind.MAC_MD5,
} as const;
const MD5_KINDS = { oaid_md5: 1, imei_md5: 2, idfa_md5: 3, android_id_md5: 4, mac_md5: 5, caid_md5: 6 } as const;

/** The device form of an explain call: raw ids (hashed here, as the media would) or MD5s, an OS, platform experiments. */
const deviceFormSchema = z
  .object({
    os: z.enum(['android', 'ios']),
    raw: z.partialRecord(z.enum(Object.keys(RAW_ID_KINDS) as [keyof typeof RAW_ID_KINDS]), z.string().min(1)).default({}),
    md5: z.array(z.object({ kind: z.enum(Object.keys(MD5_KINDS) as [keyof typeof MD5_KINDS]), md5: z.string() }).strict()).default([]),
    platformExperimentIds: z.array(z.number().int().nonnegative()).default([]),
    requestId: z.string().min(1).max(128).default('explain'),
  })
  .strict()
  .refine((form) => Object.keys(form.raw).length + form.md5.length > 0, 'give at least one device id, in `raw` or `md5`');

/** Turns the device form into the native request it describes. Throws ExplainError for anything else. */
export function deviceFormRequest(body: Uint8Array): { body: Uint8Array; contentType: string } {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(body));
  } catch (error) {
    throw new ExplainError('400 Bad Request', 'invalid_json', (error as Error).message);
  }
  const parsed = deviceFormSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
    throw new ExplainError('400 Bad Request', 'invalid_request', problems.join('; '));
  }
  const form = parsed.data;
  const ids = [
    ...Object.entries(form.raw).map(([name, raw]) => {
      const kind = RAW_ID_KINDS[name as keyof typeof RAW_ID_KINDS];
      return { kind, md5: hashRawDeviceId(kind, raw) };
    }),
    ...form.md5.map((id) => ({ kind: MD5_KINDS[id.kind] as DeviceIdKind, md5: id.md5 })),
  ];
  return mediaModule('native').client.encodeRequest({
    requestId: form.requestId,
    os: form.os,
    ids,
    platformExperimentIds: form.platformExperimentIds,
    isPing: false,
    isTest: true,
    secondRequest: false,
    ads: [],
  });
}
