import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { z } from 'zod';
import type { Attribution } from '../attribution/attribution.js';
import { RESULT_DIMENSIONS, type ResultDimension } from '../attribution/results.js';
import type { BookController, ControllerStep } from '../controllers/controller.js';
import type { OnlineLearning } from '../learning/online-learning.js';
import { InputError, issueText } from '../engine/errors.js';
import { explanationText, type Explanation } from '../observe/explain.js';
import { log } from '../observe/log.js';
import type { Metrics } from '../observe/metrics.js';
import { BookRefused, UnknownVersion, type BookVersions } from '../strategy/versions.js';
import { ExplainError } from './explain.js';
import { refuse } from './media-route.js';
import { RELOAD_TARGETS, type ReloadTarget } from './reload.js';
import { secretCheck } from './secret.js';
import type { Uws } from './uws.js';

/**
 * The admin port (loopback by default): Prometheus metrics and readiness. Kept off the media port so a media
 * platform can never scrape or probe it. `POST /reload/models|strategies|devices` hot-reloads that part from the
 * files the config names (the old part keeps serving if the new one is refused). `/books` lists, shows, diffs,
 * applies and rolls back the strategy book's versions (strategy/versions.ts).
 */
export interface AdminHooks {
  /** Counts the admin port's own refusals. */
  metrics: Metrics;
  /** The bearer token every route requires, or null when the port is open (loopback only). */
  token: string | null;
  /** Prometheus text for every thread. */
  exposition(): Promise<string>;
  isReady(): boolean;
  reload(target: ReloadTarget): Promise<Record<string, unknown>>;
  /** The strategy book's versions, behind the /books routes. */
  books: BookVersions;
  /** Larger bodies are refused (413). */
  maxBodyBytes: number;
  /** POST /events and GET /results; null when attribution is off. */
  attribution: Attribution | null;
  /** Empty when attribution is off (the controllers act on its results). */
  controllers: readonly BookController<ControllerStep>[];
  /** Null when online learning is off (learning.enabled). */
  learning: OnlineLearning | null;
  /** POST /explain: a media request (`media` given) or the device form (null), decided and explained. */
  explain(media: string | null, body: Buffer, contentType: string): Promise<Explanation>;
}

const signature = {
  author: z.string().trim().min(1, 'say who makes the change').max(200),
  message: z.string().trim().min(1, 'say why').max(2000),
};
/** POST /books: a new book, with who sends it and why. */
const proposalSchema = z.strictObject({ book: z.record(z.string(), z.unknown()), ...signature });
/** POST /books/:id/apply. */
const applySchema = z.strictObject(signature);

export function createAdminApp(uws: Uws, { metrics, token, exposition, isReady, reload, books, attribution, controllers, learning, maxBodyBytes, explain }: AdminHooks): TemplatedApp {
  const authorized = bearerCheck(token);
  const guarded =
    (handler: (res: HttpResponse, req: HttpRequest) => void) =>
    (res: HttpResponse, req: HttpRequest): void => {
      if (authorized(req.getHeader('authorization'))) handler(res, req);
      else refuse(res, metrics, '401 Unauthorized', 'unauthorized', 'this admin route needs Authorization: Bearer <server.adminToken>', false);
    };
  return uws
    .App()
    .post('/reload/:target', guarded((res, req) => {
      const target = req.getParameter(0) as ReloadTarget;
      if (!RELOAD_TARGETS.includes(target)) {
        refuse(res, metrics, '404 Not Found', 'not_found', `no reload target "${target}" (one of ${RELOAD_TARGETS.join(', ')})`, false);
        return;
      }
      let aborted = false;
      res.onAborted(() => (aborted = true));
      // Drain the (empty) body so uWS can reuse the connection.
      res.onData(() => {});
      reload(target).then(
        (summary) => !aborted && reply(res, '200 OK', 'application/json', JSON.stringify({ reloaded: target, ...summary }) + '\n'),
        (err: Error) => !aborted && reply(res, '422 Unprocessable Entity', 'text/plain', `reload_refused: ${err.message.replace(/\s+/g, ' ')}\n`),
      );
    }))
    .get('/metrics', guarded((res) => {
      let aborted = false;
      res.onAborted(() => (aborted = true));
      exposition().then(
        (text) => !aborted && reply(res, '200 OK', metrics.registry.contentType, text),
        (err: Error) => !aborted && reply(res, '500 Internal Server Error', 'text/plain', `metrics_failed: ${err.message}\n`),
      );
    }))
    .get('/readyz', guarded((res) => {
      if (isReady()) reply(res, '200 OK', 'text/plain', 'ready\n');
      else reply(res, '503 Service Unavailable', 'text/plain', 'not_ready: models, strategies or device store still loading\n');
    }))
    .get('/healthz', guarded((res) => reply(res, '200 OK', 'text/plain', 'ok\n')))
    .get('/books', guarded((res) => bookCall(res, metrics, null, () => books.list())))
    .get('/books/:id', guarded((res, req) => {
      const id = req.getParameter(0);
      bookCall(res, metrics, null, () => books.show(id));
    }))
    .get('/books/:id/diff/:other', guarded((res, req) => {
      const [id, other] = [req.getParameter(0), req.getParameter(1)];
      bookCall(res, metrics, null, () => books.diff(id, other));
    }))
    .post('/books', guarded((res) =>
      bookCall(res, metrics, maxBodyBytes, (body) => {
        const { book, ...by } = parseBody(proposalSchema, body);
        return books.propose(book, by);
      }),
    ))
    .post('/books/:id/apply', guarded((res, req) => {
      const id = req.getParameter(0);
      bookCall(res, metrics, maxBodyBytes, (body) => books.apply(id, parseBody(applySchema, body)));
    }))
    .post('/events', guarded((res, req) => {
      const contentType = req.getHeader('content-type');
      partCall(res, metrics, attribution, ATTRIBUTION_OFF, maxBodyBytes, (a, body) => a.takeEvents(body, contentType));
    }))
    .get('/results', guarded((res, req) => {
      const by = req.getQuery('by') ?? 'strategy,arm';
      partCall(res, metrics, attribution, ATTRIBUTION_OFF, null, (a) => a.report(resultDimensions(by)));
    }))
    .get('/controllers/:name', guarded((res, req) => {
      const name = req.getParameter(0);
      partCall(res, metrics, attribution, ATTRIBUTION_OFF, null, () => controllerNamed(controllers, name).state());
    }))
    .post('/controllers/:name/:action', guarded((res, req) => {
      const name = req.getParameter(0);
      const action = req.getParameter(1);
      partCall(res, metrics, attribution, ATTRIBUTION_OFF, maxBodyBytes, (_a, body) => {
        const controller = controllerNamed(controllers, name);
        byHand(name, action, ['on', 'off', 'run'], body);
        return action === 'run' ? controller.look() : controller.setEnabled(action === 'on');
      });
    }))
    .get('/learning', guarded((res) => partCall(res, metrics, learning, LEARNING_OFF, null, (l) => l.state())))
    .post('/learning/:action', guarded((res, req) => {
      const action = req.getParameter(0);
      partCall(res, metrics, learning, LEARNING_OFF, maxBodyBytes, (l, body) => {
        const by = byHand('learning', action, ['on', 'off', 'run', 'rollback'], body);
        return action === 'run' ? l.look() : action === 'rollback' ? l.rollback(by) : l.setEnabled(action === 'on');
      });
    }))
    .post('/explain', guarded((res, req) => {
      // The request object is only valid until this handler returns.
      const media = req.getQuery('media') ?? null;
      const contentType = req.getHeader('content-type');
      const asText = req.getHeader('accept').includes('text/plain');
      let aborted = false;
      res.onAborted(() => (aborted = true));
      collectBody(res, metrics, maxBodyBytes, (body) =>
        explain(media, body, contentType).then(
          (explanation) => !aborted && (asText ? reply(res, '200 OK', 'text/plain', explanationText(explanation)) : reply(res, '200 OK', 'application/json', `${JSON.stringify(explanation)}\n`)),
          (err: Error) => !aborted && refuseExplain(res, metrics, err),
        ),
      );
    }))
    .any('/*', guarded((res, req) => refuse(res, metrics, '404 Not Found', 'not_found', `no admin route ${req.getMethod().toUpperCase()} ${req.getUrl()}`, false)));
}

function bearerCheck(token: string | null): (header: string) => boolean {
  return token === null ? () => true : secretCheck(`Bearer ${token}`);
}

/**
 * One book (or attribution) call: the body collected (up to `bodyLimit`; none for a GET), `work` run on it, its
 * result answered as JSON or its error as the one-line refusal it stands for. Nothing is written once the client has gone.
 */
function bookCall(res: HttpResponse, metrics: Metrics, bodyLimit: number | null, work: (body: Buffer) => unknown, failure = 'book_history_failed'): void {
  let aborted = false;
  res.onAborted(() => (aborted = true));
  const run = (body: Buffer) =>
    void Promise.resolve(body)
      .then(work)
      .then(
        (result) => !aborted && reply(res, '200 OK', 'application/json', `${JSON.stringify(result)}\n`),
        (err: Error) => !aborted && refuseBookCall(res, metrics, err, failure),
      );
  if (bodyLimit === null) run(Buffer.alloc(0));
  else collectBody(res, metrics, bodyLimit, run);
}

/** The whole body, up to `bodyLimit` bytes (a larger one is refused with 413 and its connection closed). */
function collectBody(res: HttpResponse, metrics: Metrics, bodyLimit: number, onBody: (body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  let received = 0;
  res.onData((chunk, isLast) => {
    if (received > bodyLimit) return;
    received += chunk.byteLength;
    if (received > bodyLimit) {
      refuse(res, metrics, '413 Payload Too Large', 'body_too_large', `body exceeds server.adminMaxBodyBytes (${bodyLimit} bytes)`, true);
      return;
    }
    // uWS reuses the chunk's memory once this callback returns.
    chunks.push(Buffer.from(chunk.slice(0)));
    if (isLast) onBody(Buffer.concat(chunks));
  });
}

const ATTRIBUTION_OFF = { reason: 'attribution_off', message: 'attribution (and the controllers acting on it) is off in this engine (attribution.enabled)', failure: 'attribution_failed' };
const LEARNING_OFF = { reason: 'learning_off', message: 'online learning is off in this engine (learning.enabled)', failure: 'learning_failed' };

/** A call on a part that exists only when switched on, answered like a book call; 503 while it is off. */
function partCall<Part>(res: HttpResponse, metrics: Metrics, part: Part | null, off: typeof ATTRIBUTION_OFF, bodyLimit: number | null, work: (part: Part, body: Buffer) => unknown): void {
  if (part === null) {
    refuse(res, metrics, '503 Service Unavailable', off.reason, off.message, false);
    return;
  }
  bookCall(res, metrics, bodyLimit, (body) => work(part, body), off.failure);
}

/** A person's action on an automatic part: one of `actions`, signed with who and why, and logged. */
function byHand(part: string, action: string, actions: readonly string[], body: Buffer): z.infer<typeof applySchema> {
  if (!actions.includes(action)) throw new InputError('invalid_request', `no ${part} action "${action}" (${actions.join(', ')})`);
  const by = parseBody(applySchema, body);
  log('info', 'automatic_part_by_hand', { part, action, author: by.author, message: by.message });
  return by;
}

function controllerNamed(controllers: readonly BookController<ControllerStep>[], name: string): BookController<ControllerStep> {
  const controller = controllers.find((c) => c.name === name);
  if (!controller) throw new InputError('not_found', `no controller "${name}" (${controllers.map((c) => c.name).join(', ')})`);
  return controller;
}

/** `?by=strategy,arm`: the result dimensions to group by, in the order given. */
function resultDimensions(text: string): ResultDimension[] {
  const by = text.split(',').filter(Boolean);
  const unknown = by.find((d) => !(RESULT_DIMENSIONS as readonly string[]).includes(d));
  if (unknown !== undefined) throw new InputError('invalid_request', `by: "${unknown}" is not one of ${RESULT_DIMENSIONS.join(', ')}`);
  return by as ResultDimension[];
}

function refuseExplain(res: HttpResponse, metrics: Metrics, err: Error): void {
  if (err instanceof ExplainError) refuse(res, metrics, err.status, err.reason, err.message, false);
  else reply(res, '500 Internal Server Error', 'text/plain', `explain_failed: ${err.message.replace(/\s+/g, ' ')}\n`);
}

function parseBody<T>(schema: z.ZodType<T>, body: Buffer): T {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new InputError('invalid_json', `body is not JSON: ${(err as Error).message}`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new InputError('invalid_request', issueText(parsed.error, 'body'));
  return parsed.data;
}

function refuseBookCall(res: HttpResponse, metrics: Metrics, err: Error, failure: string): void {
  if (err instanceof InputError) {
    const status = err.reason === 'unsupported_media_type' ? '415 Unsupported Media Type' : err.reason === 'not_found' ? '404 Not Found' : '400 Bad Request';
    refuse(res, metrics, status, err.reason, err.message, false);
  }
  else if (err instanceof UnknownVersion) refuse(res, metrics, '404 Not Found', 'not_found', err.message, false);
  // Whole, unlike refuse's one short line: the growth team fixes every error of a refused book in one round.
  else if (err instanceof BookRefused) reply(res, '422 Unprocessable Entity', 'text/plain', `book_refused: ${err.message}\n`);
  else reply(res, '500 Internal Server Error', 'text/plain', `${failure}: ${err.message.replace(/\s+/g, ' ')}\n`);
}

function reply(res: HttpResponse, status: string, contentType: string, body: string): void {
  res.cork(() => res.writeStatus(status).writeHeader('Content-Type', contentType).end(body));
}
