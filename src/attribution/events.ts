import { z } from 'zod';
import { InputError, issueText } from '../engine/errors.js';
import { decodeStrict, loadProto, strictType } from '../media/protobuf.js';

/**
 * Outcome events as the admin port takes them (POST /events): a batch as JSON Lines, or an EventBatch in protobuf
 * (proto/events/events.proto). Each event is checked by one schema, whichever form it came in; a bad one is refused
 * with its position and reason and the rest of the batch is still taken.
 */

/** The funnel, in the order a customer goes through it. */
export const EVENT_KINDS = [
  'impression',
  'click',
  'activation',
  'registration',
  'credit_application',
  'credit_approved',
  'loan_drawn',
  'first_repayment_overdue',
] as const;
export type EventKind = (typeof EVENT_KINDS)[number];
export const CREDIT_APPROVED = EVENT_KINDS.indexOf('credit_approved');

export interface OutcomeEvent {
  /** Its place in the batch, as RefusedEvent counts it. */
  line: number;
  traceId: string;
  media: string;
  strategyId: string | null;
  /** Index into EVENT_KINDS. */
  kind: number;
  costFen: number;
  valueFen: number;
  timeMs: number;
}

export interface RefusedEvent {
  /** 1-based: the line of a JSON Lines body, the event's place in an EventBatch. */
  line: number;
  reason: string;
  message: string;
}

/** Media platforms may stamp events a little ahead of our clock; beyond this an event time is refused. */
const CLOCK_SKEW_MS = 5 * 60_000;
/** Nothing before this is an event of ours: a time in seconds sent as milliseconds lands here. */
const EARLIEST_MS = Date.UTC(2020, 0, 1);
const FEN = z.number().int().min(-1e12).max(1e12);

const eventSchema = z.strictObject({
  trace_id: z.string().min(1, 'the request id the media echoed is required').max(256),
  media: z.string().min(1),
  strategy_id: z.string().min(1).max(128).optional(),
  event: z.enum(EVENT_KINDS),
  cost_fen: FEN.min(0, 'a cost is never negative').optional(),
  value_fen: FEN.optional(),
  /** ms since the epoch, or an ISO 8601 time with its zone. */
  event_time: z.union([z.number().int().max(8.64e15, 'beyond the last time a Date holds'), z.iso.datetime({ offset: true })]),
});

const root = loadProto(new URL('../../proto/events/events.proto', import.meta.url));
const EventBatchType = strictType(root, 'rta.events.EventBatch');

interface EventMessage {
  trace_id: string;
  media: string;
  strategy_id: string;
  event: number;
  cost_fen?: { toNumber(): number } | number | null;
  value_fen?: { toNumber(): number } | number | null;
  event_time_ms: { toNumber(): number } | number;
}

export interface ParsedBatch {
  events: OutcomeEvent[];
  refused: RefusedEvent[];
}

export const EVENT_CONTENT_TYPES = ['application/x-ndjson', 'application/jsonl', 'application/x-protobuf'] as const;

/**
 * Throws InputError only when the body as a whole cannot be read (an unknown content type, bytes that are no
 * EventBatch); a bad event is refused on its own.
 */
export function parseEventBatch(body: Uint8Array, contentType: string, medias: readonly string[], nowMs: number): ParsedBatch {
  const type = contentType.split(';')[0]!.trim().toLowerCase();
  const check = eventCheck(medias, nowMs);
  const batch: ParsedBatch = { events: [], refused: [] };
  const take = (line: number, json: unknown) => {
    const result = check(line, json);
    if (typeof result === 'string') batch.refused.push({ line, reason: 'invalid_event', message: result });
    else batch.events.push(result);
  };
  if (type === 'application/x-protobuf') {
    const message = decodeStrict<{ events: EventMessage[] }>(EventBatchType, body);
    message.events.forEach((event, i) => take(i + 1, fromProtobuf(event)));
  } else if (type === 'application/x-ndjson' || type === 'application/jsonl') {
    const lines = new TextDecoder().decode(body).split('\n');
    lines.forEach((text, i) => {
      if (text.trim() === '') return;
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch (error) {
        batch.refused.push({ line: i + 1, reason: 'invalid_json', message: (error as Error).message });
        return;
      }
      take(i + 1, json);
    });
  } else {
    throw new InputError('unsupported_media_type', `events come as ${EVENT_CONTENT_TYPES.join(' or ')}, not "${contentType}"`);
  }
  return batch;
}

function eventCheck(medias: readonly string[], nowMs: number): (line: number, json: unknown) => OutcomeEvent | string {
  return (line, json) => {
    const parsed = eventSchema.safeParse(json);
    if (!parsed.success) return issueText(parsed.error);
    const e = parsed.data;
    if (!medias.includes(e.media)) return `media: "${e.media}" is not a media of this engine (${medias.join(', ')})`;
    const timeMs = typeof e.event_time === 'number' ? e.event_time : Date.parse(e.event_time);
    if (timeMs < EARLIEST_MS) return `event_time: ${e.event_time} is before 2020: give milliseconds since the epoch`;
    if (timeMs > nowMs + CLOCK_SKEW_MS) return `event_time: ${new Date(timeMs).toISOString()} is in the future`;
    return {
      line,
      traceId: e.trace_id,
      media: e.media,
      strategyId: e.strategy_id ?? null,
      kind: EVENT_KINDS.indexOf(e.event),
      costFen: e.cost_fen ?? 0,
      valueFen: e.value_fen ?? 0,
      timeMs,
    };
  };
}

/** The protobuf event in the JSON form's terms, so that one schema checks both. */
function fromProtobuf(m: EventMessage): Record<string, unknown> {
  const num = (value: { toNumber(): number } | number) => (typeof value === 'number' ? value : value.toNumber());
  return {
    trace_id: m.trace_id,
    media: m.media,
    ...(m.strategy_id !== '' ? { strategy_id: m.strategy_id } : {}),
    event: m.event >= 1 && m.event <= EVENT_KINDS.length ? EVENT_KINDS[m.event - 1] : `kind ${m.event}`,
    ...(m.cost_fen != null ? { cost_fen: num(m.cost_fen) } : {}),
    ...(m.value_fen != null ? { value_fen: num(m.value_fen) } : {}),
    event_time: num(m.event_time_ms),
  };
}
