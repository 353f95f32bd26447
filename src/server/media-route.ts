import { performance } from 'node:perf_hooks';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import type { DecisionSink, Engine, RequestStage } from '../engine/engine.js';
import { InputError } from '../engine/errors.js';
import { DecisionCode, SHED_REASON, type BidContext, type Decision, type EncodedReply, type MediaAdapter } from '../engine/types.js';
import type { MediaRules } from '../media/module.js';
import { cacheSecondsFor } from '../media/rules.js';
import type { ServedMedia } from './boot.js';
import type { DecisionLogRecorder } from '../observe/decision-log/recorder.js';
import type { Metrics } from '../observe/metrics.js';
import type { MediaAccess } from './media-access.js';

/**
 * The request lifecycle on a media route: method and size checks, body collection, adapter decode, the engine,
 * adapter encode, one corked write. Every refusal gets a status, a one-line reason and a metric.
 */

export interface RouteLimits {
  maxBodyBytes: number;
  shedAfterMicros: number;
}

/**
 * How long this serving thread has been busy with the current event-loop turn. uWebSockets.js hands over every
 * socket that was readable when the turn began, one after another, so a request met late in a long turn has waited
 * at least that long already: under overload (thousands of connections, each with a request ready) turns grow
 * until every request misses its budget. The clock starts at a turn's first request; the turn's end is learnt in
 * its check phase (setImmediate, which runs once the turn's sockets are done), asked for only once a second
 * request comes close behind the first: a request after an idle gap starts a new turn anyway, so a lightly loaded
 * thread, one request per turn, pays no immediate (about 3,000 instructions each).
 */
const IDLE_GAP_MS = 0.25;
const turn = {
  startedAt: 0,
  lastAt: -Infinity,
  ended: true,
  endArmed: false,
  end: () => {
    turn.ended = true;
    turn.endArmed = false;
  },
  /** Milliseconds since the turn's first request; 0 for the first. Over-reads by at most IDLE_GAP_MS. */
  age(now: number): number {
    // With the end asked for, the turn is known to go on: a gap then is the thread descheduled, not idle.
    if (turn.ended || (!turn.endArmed && now - turn.lastAt > IDLE_GAP_MS)) {
      turn.startedAt = now;
      turn.ended = false;
    } else if (!turn.endArmed) {
      turn.endArmed = true;
      setImmediate(turn.end);
    }
    return now - turn.startedAt;
  },
  /** The thread is done with a request's synchronous part: the idle gap is counted from here. */
  done(): void {
    turn.lastAt = performance.now();
  },
};

/**
 * Requests between their first byte and their reply, and the drain: once `draining`, every reply closes its
 * connection, and SIGTERM waits until nothing is in flight and no request has started for a while (see `drain`).
 */
export const inFlight = { count: 0, draining: false, lastStartedAt: 0 };

export function mediaRoute(media: ServedMedia, engine: Engine, limits: RouteLimits, metrics: Metrics, access: MediaAccess, decisionLog: DecisionLogRecorder | null) {
  const { adapter } = media.module;
  const { rules } = media;
  const declinesWithoutBody = rules.declineStatus === 204;
  const processing = metrics.processingSeconds.slot({ media: adapter.name });
  const refusedIds = metrics.refusedDeviceIds.labels(adapter.name);
  const testRequests = metrics.testRequests.labels(adapter.name);
  const outcomes = new Map<string, number>();
  const outcomeSlot = (reason: string) => {
    let slot = outcomes.get(reason);
    if (slot === undefined) outcomes.set(reason, (slot = metrics.requests.slot({ media: adapter.name, outcome: reason })));
    return slot;
  };
  const shedAfterMs = limits.shedAfterMicros > 0 ? limits.shedAfterMicros / 1000 : Infinity;
  // A media that may send raw ids gets no raw sample: its bytes would keep them.
  const sampleRaw = !media.module.carriesRawIds && decisionLog !== null;
  const shared = { adapter, rules, declinesWithoutBody, sampleRaw, engine, limits, metrics, processing, outcomeSlot, refusedIds, testRequests, shedAfterMs, decisionLog };

  return (res: HttpResponse, req: HttpRequest): void => {
    const refusal = access.refusal(res, req);
    if (refusal !== null) {
      // A caller that is not ours gets no second try on this connection.
      refuse(res, metrics, refusal.status, refusal.reason, refusal.message, true);
      return;
    }
    if (req.getMethod() !== 'post') {
      refuse(res, metrics, '405 Method Not Allowed', 'method_not_allowed', `use POST for ${req.getUrl()}`, false, 'POST');
      return;
    }
    const declaredLength = req.getHeader(CONTENT_LENGTH_KEY);
    if (declaredLength !== '' && Number(declaredLength) > limits.maxBodyBytes) {
      refuse(res, metrics, '413 Payload Too Large', 'body_too_large', `body of ${declaredLength} bytes exceeds the limit of ${limits.maxBodyBytes}`, true);
      return;
    }
    const request = new MediaRequest(shared, res, req.getHeader(CONTENT_TYPE_KEY));
    res.onAborted(() => request.abort());
    // An exception escaping a uWebSockets.js callback ends the process: this is the route's last boundary.
    res.onData((chunk, isLast) => {
      try {
        request.onChunk(chunk, isLast);
      } catch (error) {
        request.crashed('route', error);
      }
    });
  };
}

interface RouteShared {
  adapter: MediaAdapter;
  rules: MediaRules;
  /** The media counts a 204 without a body as no bid (its rules' declineStatus). */
  declinesWithoutBody: boolean;
  /** Whether this route's requests may be sampled raw into the decision log. */
  sampleRaw: boolean;
  engine: Engine;
  limits: RouteLimits;
  metrics: Metrics;
  processing: number;
  outcomeSlot(reason: string): number;
  refusedIds: ReturnType<Metrics['refusedDeviceIds']['labels']>;
  testRequests: ReturnType<Metrics['testRequests']['labels']>;
  shedAfterMs: number;
  decisionLog: DecisionLogRecorder | null;
}

class MediaRequest implements DecisionSink {
  private body: Buffer | null = null;
  private received = 0;
  private done = false;
  private aborted = false;
  private receivedAt = 0;
  /** True while the route's own callback runs: uWS has the socket corked then, so a reply can be written at once. */
  private inCallback = false;
  /** A reply the socket would not take whole: the rest goes out when it drains (see `write`). */
  private unsent: Uint8Array | null = null;
  /** The body, kept for the decision log when this request was sampled for its raw bytes. */
  private rawRequest: Uint8Array | null = null;

  constructor(
    private readonly shared: RouteShared,
    private readonly res: HttpResponse,
    private readonly contentType: string,
  ) {
    inFlight.count++;
  }

  abort(): void {
    this.aborted = true;
    if (this.unsent !== null) {
      // Closed with our reply still unsent: the peer stopped reading (uWS closes a connection that sends another
      // request while a reply is pending), or went away.
      this.shared.metrics.closedConnections.inc({ reason: 'unread_replies' });
      this.finishWrite();
      return;
    }
    this.shared.metrics.abortedRequests.inc();
    this.settle();
  }

  onChunk(chunk: ArrayBuffer, isLast: boolean): void {
    if (this.done) return;
    const { limits } = this.shared;
    this.received += chunk.byteLength;
    if (this.received > limits.maxBodyBytes) {
      this.refuse('413 Payload Too Large', 'body_too_large', `body exceeds the limit of ${limits.maxBodyBytes} bytes`, true);
      return;
    }
    // uWS reuses chunk memory after this callback: a body in one chunk is decoded in place, others are copied.
    if (isLast && this.body === null) {
      this.inCallback = true;
      this.decide(new Uint8Array(chunk));
      this.inCallback = false;
      return;
    }
    const piece = Buffer.from(chunk);
    this.body = this.body === null ? Buffer.from(piece) : Buffer.concat([this.body, piece]);
    if (isLast) {
      this.inCallback = true;
      this.decide(this.body);
      this.inCallback = false;
    }
  }

  private decide(bytes: Uint8Array): void {
    this.receivedAt = inFlight.lastStartedAt = performance.now();
    if (this.shared.sampleRaw && this.shared.decisionLog!.sampleRaw()) this.rawRequest = bytes.slice();
    this.decideOrShed(bytes, turn.age(this.receivedAt) > this.shared.shedAfterMs);
    turn.done();
  }

  private decideOrShed(bytes: Uint8Array, late: boolean): void {
    const { adapter, engine } = this.shared;
    if (late && this.shedUndecoded(bytes)) return;
    let context: BidContext;
    try {
      context = adapter.decode(bytes, this.contentType);
    } catch (err) {
      if (err instanceof InputError) this.refuse('400 Bad Request', err.reason, err.message, false);
      else this.refuse('400 Bad Request', 'undecodable', (err as Error).message, false);
      return;
    }
    if (context.refusedDeviceIds > 0) this.shared.refusedIds.inc(context.refusedDeviceIds);
    if (context.isTest) this.shared.testRequests.inc();
    if (late) engine.shed(context, this);
    else engine.handle(context, this, this.receivedAt);
  }

  /**
   * The cheapest answer to a late request: the adapter's decline made from the body without decoding it. False when
   * the protocol cannot (the request is then decoded and shed by the engine).
   */
  private shedUndecoded(bytes: Uint8Array): boolean {
    const { adapter, engine, metrics, processing } = this.shared;
    // A 204 decline needs the request decoded first: bytes that are no request still get their 400.
    if (this.shared.declinesWithoutBody) return false;
    let reply: EncodedReply | null;
    try {
      reply = adapter.shed(bytes, this.contentType, cacheSecondsFor(this.shared.rules, engine.parts.book.cacheTtlSeconds.fallback));
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      this.refuse('400 Bad Request', err.reason, err.message, false);
      return true;
    }
    if (reply === null) return false;
    this.write(reply);
    metrics.processingSeconds.observe(processing, (performance.now() - this.receivedAt) / 1000);
    metrics.requests.add(this.shared.outcomeSlot(SHED_REASON));
    this.settle();
    return true;
  }

  deliver(context: BidContext, decision: Decision): void {
    if (this.done) return;
    const { adapter, metrics, processing } = this.shared;
    if (this.aborted) {
      this.settle();
      return;
    }
    decision.processingTimeUs = Math.round((performance.now() - this.receivedAt) * 1000);
    let reply: EncodedReply;
    try {
      // A ping's answer is code 0: never a decline.
      reply = this.shared.declinesWithoutBody && decision.code !== DecisionCode.TAKE ? NO_CONTENT : adapter.encode(context, decision);
    } catch (error) {
      this.crashed('encode', error);
      return;
    }
    if (this.inCallback) {
      this.write(reply);
    } else {
      // A reply from a later turn (scoring pool, Redis) is corked by hand; the callback is shared, not per request.
      corking.request = this;
      corking.reply = reply;
      this.res.cork(writeCorkedReply);
    }
    metrics.processingSeconds.observe(processing, (performance.now() - this.receivedAt) / 1000);
    metrics.requests.add(this.shared.outcomeSlot(decision.reason));
    const { decisionLog } = this.shared;
    if (decisionLog !== null && !context.isPing) this.record(decisionLog, context, decision, reply);
    this.settle();
  }

  private record(decisionLog: DecisionLogRecorder, context: BidContext, decision: Decision, reply: EncodedReply): void {
    const timeMs = Math.round(performance.timeOrigin + this.receivedAt);
    if (this.rawRequest === null) {
      decisionLog.record(context, decision, timeMs, null);
      return;
    }
    const replyBytes = typeof reply.body === 'string' ? UTF8.encode(reply.body) : reply.body;
    decisionLog.record(context, decision, timeMs, { request: this.rawRequest, reply: replyBytes, contentType: this.contentType });
  }

  fail(_context: BidContext, stage: RequestStage): void {
    if (this.done) return;
    this.refuse('500 Internal Server Error', 'internal_error', `${stage} failed and so did the fallback`, false);
  }

  /** Something outside the engine's own boundary threw: counted, logged once, answered with a one-line 500. */
  crashed(stage: 'encode' | 'route', error: unknown): void {
    const { metrics } = this.shared;
    metrics.requestErrors.inc({ stage });
    metrics.errorLog.report(stage, error);
    if (!this.done) this.refuse('500 Internal Server Error', 'internal_error', `${stage} failed`, false);
  }

  private refuse(status: string, reason: string, message: string, closeConnection: boolean): void {
    if (!this.aborted) refuse(this.res, this.shared.metrics, status, reason, message, closeConnection);
    else this.shared.metrics.rejectedInputs.inc({ reason });
    this.settle();
  }

  /**
   * Backpressure: a reply goes out only as fast as the peer reads. `end` would queue whatever the socket does not
   * take in memory, without limit for a peer that keeps sending and never reads; `tryEnd` writes what fits and
   * the rest waits for the socket to drain. While it waits, uWS reads no further request from that connection
   * (it closes one that pipelines another), so a connection holds at most one unsent reply.
   */
  write(reply: EncodedReply): void {
    if (reply === NO_CONTENT) {
      this.res.writeStatus('204 No Content').endWithoutBody(undefined, inFlight.draining);
      return;
    }
    const body = typeof reply.body === 'string' ? UTF8.encode(reply.body) : reply.body;
    this.res.writeStatus(STATUS_OK).writeHeader(CONTENT_TYPE, headerBytes(reply.contentType));
    if (inFlight.draining) {
      // The peer learns from the close to take its next request elsewhere; the reply is its last on this connection.
      this.res.end(body, true);
      return;
    }
    const [, done] = this.res.tryEnd(body, body.length);
    if (done) return;
    this.unsent = body;
    this.res.onWritable((offset) => {
      const [ok, finished] = this.res.tryEnd(body.subarray(offset), body.length);
      if (finished) this.finishWrite();
      return ok;
    });
  }

  private finishWrite(): void {
    this.unsent = null;
    inFlight.count--;
  }

  private settle(): void {
    if (this.done) return;
    this.done = true;
    this.body = null;
    if (this.unsent === null) inFlight.count--;
  }
}

const UTF8 = new TextEncoder();

/** uWS takes bytes as they are; a string it must first convert to UTF-8, on every request. */
const STATUS_OK = Buffer.from('200 OK');
const CONTENT_TYPE = Buffer.from('Content-Type');
const CONTENT_LENGTH_KEY = Buffer.from('content-length');
const CONTENT_TYPE_KEY = Buffer.from('content-type');
/** The adapters' few content types, as bytes. */
const contentTypes = new Map<string, Buffer>();
function headerBytes(value: string): Buffer {
  let bytes = contentTypes.get(value);
  if (bytes === undefined) {
    if (contentTypes.size >= 64) contentTypes.clear();
    contentTypes.set(value, (bytes = Buffer.from(value)));
  }
  return bytes;
}
/** A decline where the media's rules say 204: no body at all. */
const NO_CONTENT: EncodedReply = { body: new Uint8Array(0), contentType: '' };

/** cork() runs its callback at once, so one module-level slot carries the reply into it. */
const corking: { request: MediaRequest | null; reply: EncodedReply | null } = { request: null, reply: null };
function writeCorkedReply(): void {
  corking.request!.write(corking.reply!);
  corking.request = null;
  corking.reply = null;
}

/** Answers a refused request: status, one line `reason: message`, counted by reason. */
export function refuse(
  res: HttpResponse,
  metrics: Metrics,
  status: string,
  reason: string,
  message: string,
  closeConnection: boolean,
  allow?: string,
): void {
  metrics.rejectedInputs.inc({ reason });
  res.cork(() => {
    res.writeStatus(status).writeHeader('Content-Type', 'text/plain');
    if (allow) res.writeHeader('Allow', allow);
    const text = `${reason}: ${oneLine(message)}\n`;
    if (closeConnection || inFlight.draining) {
      res.end(text, true);
      return;
    }
    // A peer that sends bad requests without reading the refusals would otherwise queue them without limit.
    if (!res.tryEnd(text, Buffer.byteLength(text))[1]) {
      metrics.closedConnections.inc({ reason: 'unread_replies' });
      res.close();
    }
  });
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').slice(0, 300);
}
