import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { JoinedOutcome } from '../attribution/attribution.js';
import { CREDIT_APPROVED, EVENT_KINDS } from '../attribution/events.js';
import type { Config } from '../config.js';
import type { DeviceStore } from '../engine/engine.js';
import { log } from '../observe/log.js';
import { FeatureExtractor } from '../scoring/features.js';
import { loadLogisticModel, type LogisticModel } from '../scoring/logistic.js';
import { readManifest, type ModelManifest } from '../scoring/manifest.js';
import type { ProfileSchema } from '../store/profile-schema.js';
import { onSchedule } from '../controllers/controller.js';
import type { LearnerFigures } from './ftrl.js';
import type { LearnerData, LearnerRequest } from './learner-thread.js';

/**
 * Online learning of one logistic model (learning.model, `approve` by default: P(approved | applied)) from the
 * outcomes attribution joins. A credit application is an example, labelled 1 when its approval is joined and 0
 * when none came within learning.labelAfterSeconds; its features are the device's profile as the store holds it
 * when the application arrives. The learner runs on a thread of its own (learner-thread.ts). On a schedule
 * (learning.intervalMinutes) a look asks for the learned model and its figures; it goes into service only when it
 * has learned from learning.minExamples new examples and is not worse than the model in service on the recent
 * examples (log loss no higher, AUC no lower), and then as a new model version: its file and a manifest in
 * learning.dir, the look with its figures a line of learning.dir/versions.jsonl, loaded by the same hot reload as the daily files.
 * Every look is logged and listed; a person's rollback puts the daily files back in service and stops the
 * schedule, and new daily files replace the learned model and start it afresh from them.
 */
export const LEARNING_AUTHOR = 'controller:learning';
const CREDIT_APPLICATION = EVENT_KINDS.indexOf('credit_application');
const KEPT_VERSIONS = 20;

export interface LookRecord {
  time: string;
  result: 'published' | 'not_better' | 'too_few_examples' | 'rolled_back';
  /** The version put in service (published), or the one that stayed. */
  version: string;
  reason: string;
  figures: LearnerFigures;
  file?: string;
  manifest?: string;
}

export interface LearningState {
  enabled: boolean;
  model: string;
  intervalMinutes: number;
  inService: string;
  pendingApplications: number;
  examples: { positive: number; negative: number };
  lastLook: LookRecord | null;
  /** Looks, newest first (at most 50). */
  looks: LookRecord[];
  failed: string | null;
}

export interface LearningHooks {
  /** The daily files' manifest (learning starts from its model, and returns to it on rollback). */
  configuredManifest: string;
  profile: ProfileSchema;
  /** The embedded device store in service now. */
  store(): DeviceStore;
  /** Puts a manifest in service by the hot reload; the message goes with the change. */
  putInService(manifest: string, message: string): Promise<void>;
}

export class OnlineLearning {
  private enabled: boolean;
  private stopSchedule: (() => void) | null = null;
  private readonly worker: Worker;
  private readonly replies = new Map<number, { resolve: (reply: Record<string, unknown>) => void; reject: (err: Error) => void }>();
  private nextId = 0;
  private readonly featureNames: string[];
  private readonly extractor: FeatureExtractor;
  private base: LogisticModel;
  private inService: string;
  /**
   * Applications waiting to be labelled, by media, trace id and strategy: the features, when they came, and whether
   * their approval has. Every label is given at the same age, labelAfterSeconds, so the recent examples are never
   * richer in approvals (which come early) than in refusals (known only by waiting).
   */
  private readonly pending = new Map<string, { row: Float32Array; atMs: number; approved: boolean }>();
  /** Makes looks, rollbacks and rebases one at a time. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly rows: Float32Array[] = [];
  private readonly labels: number[] = [];
  private flushing = false;
  private examplesAtPublish = 0;
  private published = 0;
  private readonly looks: LookRecord[] = [];
  private failed: string | null = null;
  private readonly labelled = { positive: 0, negative: 0 };
  private readonly examples: Counter<'label'>;
  private readonly lookResults: Counter<'result'>;
  private readonly dropped: Counter<'reason'>;

  constructor(
    private readonly config: Config['learning'],
    private readonly hooks: LearningHooks,
    registry: Registry,
  ) {
    this.enabled = config.enabled;
    const entry = this.entry(readManifest(hooks.configuredManifest, hooks.profile));
    this.featureNames = entry.features;
    this.extractor = new FeatureExtractor(hooks.profile, entry.features);
    this.base = loadLogisticModel(entry.file);
    this.inService = entry.version;
    mkdirSync(config.dir, { recursive: true });
    this.published = this.history().filter((l) => l.result === 'published').length;
    const data: LearnerData = { base: this.base, featureNames: this.featureNames, params: config.ftrl };
    this.worker = new Worker(new URL('./learner-thread.js', import.meta.url), { workerData: data });
    this.worker.on('message', (reply: Record<string, unknown> & { id: number }) => {
      this.replies.get(reply.id)?.resolve(reply);
      this.replies.delete(reply.id);
    });
    const fail = (err: Error) => {
      this.failed = err.message;
      log('error', 'learning_failed', { message: err.message });
      for (const { reject } of this.replies.values()) reject(err);
      this.replies.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => this.failed ?? fail(new Error(`the learner thread exited (code ${code})`)));
    this.worker.unref();
    this.examples = new Counter({ name: 'rta_learning_examples_total', help: 'Examples the online learner learned from, by label (1 approved, 0 not within labelAfterSeconds).', labelNames: ['label'] as const, registers: [registry] });
    this.lookResults = new Counter({ name: 'rta_learning_looks_total', help: 'Online learning looks, by result: published, not_better, too_few_examples, rolled_back.', labelNames: ['result'] as const, registers: [registry] });
    this.dropped = new Counter({ name: 'rta_learning_dropped_total', help: 'Outcomes the online learner could not label: approval_without_application, too_many_pending (learning.maxPending).', labelNames: ['reason'] as const, registers: [registry] });
    const pending = this.pending;
    new Gauge({ name: 'rta_learning_pending_applications', help: 'Credit applications waiting for their approval or for labelAfterSeconds.', registers: [registry], collect() { this.set(pending.size); } });
  }

  start(): void {
    this.stopSchedule = onSchedule('learning_look', this.config.intervalMinutes, () => this.enabled, () => this.look());
  }

  stop(): void {
    this.stopSchedule?.();
    // Not a failure: the exit that follows is ours.
    this.failed = 'stopped';
    void this.worker.terminate();
  }

  /** Attribution's listener: applications and approvals become examples. */
  hear({ event, strategyId, device }: JoinedOutcome): void {
    this.mature(Date.now());
    if (event.kind !== CREDIT_APPLICATION && event.kind !== CREDIT_APPROVED) return;
    const key = `${event.media}\n${event.traceId}\n${strategyId}`;
    const application = this.pending.get(key);
    if (event.kind === CREDIT_APPROVED) {
      // Without its application (not yet posted, already labelled, or before a restart) it cannot be labelled fairly.
      if (application) application.approved = true;
      else this.dropped.inc({ reason: 'approval_without_application' });
      return;
    }
    if (application) return;
    if (this.pending.size >= this.config.maxPending) {
      this.pending.delete(this.pending.keys().next().value!);
      this.dropped.inc({ reason: 'too_many_pending' });
    }
    this.pending.set(key, { row: this.features(device), atMs: Date.now(), approved: false });
  }

  setEnabled(enabled: boolean): LearningState {
    this.enabled = enabled;
    return this.state();
  }

  state(): LearningState {
    return {
      enabled: this.enabled,
      model: this.config.model,
      intervalMinutes: this.config.intervalMinutes,
      inService: this.inService,
      pendingApplications: this.pending.size,
      examples: { ...this.labelled },
      lastLook: this.looks[0] ?? null,
      looks: this.looks,
      failed: this.failed,
    };
  }

  /** One look now: the learned model goes into service when it has learned enough and is not worse. */
  look(): Promise<LearningState> {
    return this.serially(() => this.lookNow());
  }

  private async lookNow(): Promise<LearningState> {
    this.mature(Date.now());
    await this.flush();
    const version = `${this.base.version}.online-${this.published + 1}`;
    const reply = await this.ask({ type: 'look', version, description: `${this.base.description ?? this.config.model}; learned online from joined outcomes` });
    const figures = reply.figures as LearnerFigures;
    const fresh = figures.examples - this.examplesAtPublish;
    const record: LookRecord = { time: new Date().toISOString(), result: 'too_few_examples', version: this.inService, reason: '', figures };
    const shown = (f: { logLoss: number; auc: number }) => `log loss ${f.logLoss.toFixed(4)}, AUC ${f.auc.toFixed(4)}`;
    const comparison = `learned ${shown(figures.candidate)} against in service ${shown(figures.live)} on the last ${figures.holdout} examples (${figures.positives} approved)`;
    if (fresh < this.config.minExamples) record.reason = `${fresh} new examples, fewer than minExamples ${this.config.minExamples}`;
    else if (figures.positives === 0 || figures.positives === figures.holdout) {
      record.result = 'not_better';
      record.reason = `the last ${figures.holdout} examples are all ${figures.positives === 0 ? 'refused' : 'approved'}: nothing to rank them by`;
    } else if (!(figures.candidate.logLoss <= figures.live.logLoss) || figures.candidate.auc < figures.live.auc) {
      record.result = 'not_better';
      record.reason = comparison;
    } else {
      const file = join(this.config.dir, `${this.config.model}-${version}.json`);
      const manifest = join(this.config.dir, `manifest-${version}.json`);
      writeFileSync(file, `${JSON.stringify(reply.candidate, null, 1)}\n`);
      writeFileSync(manifest, `${JSON.stringify(this.manifestWith(version, file), null, 2)}\n`);
      await this.hooks.putInService(manifest, `${this.config.model}@${version}: ${comparison}`);
      await this.ask({ type: 'adopt' });
      Object.assign(record, { result: 'published', version, reason: comparison, file, manifest });
      this.inService = version;
      this.published++;
      this.examplesAtPublish = figures.examples;
    }
    this.record(record);
    return this.state();
  }

  /**
   * A person puts the daily files back in service; the learner starts afresh from them (what it had learned was
   * just rejected), and the schedule stops until someone switches it on again.
   */
  rollback(by: { author: string; message: string }): Promise<LearningState> {
    return this.serially(async () => {
      const rejected = this.inService;
      await this.hooks.putInService(this.hooks.configuredManifest, `${by.author}: ${by.message} (online learning rolled back to the daily files)`);
      await this.ask({ type: 'rebase', base: this.base });
      this.enabled = false;
      this.inService = this.base.version;
      const figures = ((await this.ask({ type: 'look', version: this.base.version, description: '' })).figures as LearnerFigures);
      this.examplesAtPublish = figures.examples;
      this.record({ time: new Date().toISOString(), result: 'rolled_back', version: this.base.version, reason: `${by.author}: ${by.message} (${rejected} taken out of service)`, figures });
      return this.state();
    });
  }

  /**
   * A reload of the daily files (a person's, or the manifest watcher's), between looks: learning starts again from
   * their model, so no look publishes a correction learned against the files they replaced.
   */
  reloadFiles<R>(reload: () => Promise<R>): Promise<R> {
    return this.serially(async () => {
      const result = await reload();
      const entry = this.entry(readManifest(this.hooks.configuredManifest, this.hooks.profile));
      this.base = loadLogisticModel(entry.file);
      this.inService = entry.version;
      await this.ask({ type: 'rebase', base: this.base });
      this.examplesAtPublish = 0;
      return result;
    });
  }

  private serially<T>(task: () => Promise<T>): Promise<T> {
    const next = this.queue.then(task);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private entry(manifest: ModelManifest) {
    const entry = manifest.models.find((m) => m.name === this.config.model);
    if (!entry) throw new Error(`learning.model "${this.config.model}" is not in the manifest (${manifest.modelNames.join(', ')})`);
    if (entry.format !== 'logistic-json') throw new Error(`learning.model "${this.config.model}" is ${entry.format}: only logistic-json models are learned online`);
    return entry;
  }

  /** The daily manifest with the learned model in place of its own; every other file where it was. */
  private manifestWith(version: string, file: string): Record<string, unknown> {
    const raw = JSON.parse(readFileSync(this.hooks.configuredManifest, 'utf8')) as { models: { name: string; file: string; version: string }[] };
    const resolved = readManifest(this.hooks.configuredManifest, this.hooks.profile).models;
    raw.models = raw.models.map((m, i) => (m.name === this.config.model ? { ...m, version, file } : { ...m, file: resolved[i]!.file }));
    return raw;
  }

  private features(device: JoinedOutcome['device']): Float32Array {
    const row = new Float32Array(this.featureNames.length);
    const store = this.hooks.store();
    const offset = device === null ? -1 : store.find(device.keys, device.at);
    this.extractor.fill(store.records, Math.max(offset, 0), offset >= 0, device?.os ?? 0, row, 0);
    return row;
  }

  private example(row: Float32Array, label: 0 | 1): void {
    this.rows.push(row);
    this.labels.push(label);
    this.examples.inc({ label: String(label) });
    if (label === 1) this.labelled.positive++;
    else this.labelled.negative++;
    if (!this.flushing) {
      this.flushing = true;
      setImmediate(() => this.flush().catch((err: Error) => log('error', 'learning_flush_failed', { message: err.message })));
    }
  }

  /** Applications labelAfterSeconds old are labelled: approved by then, or not. */
  private mature(nowMs: number): void {
    const before = nowMs - this.config.labelAfterSeconds * 1000;
    for (const [key, application] of this.pending) {
      if (application.atMs > before) break;
      this.pending.delete(key);
      this.example(application.row, application.approved ? 1 : 0);
    }
  }

  private async flush(): Promise<void> {
    this.flushing = false;
    if (this.labels.length === 0) return;
    const width = this.featureNames.length;
    const rows = new Float32Array(this.labels.length * width);
    this.rows.forEach((row, i) => rows.set(row, i * width));
    const labels = Uint8Array.from(this.labels);
    this.rows.length = this.labels.length = 0;
    await this.ask({ type: 'learn', rows, labels });
  }

  private ask(request: LearnerRequest extends infer R ? (R extends unknown ? Omit<R, 'id'> : never) : never): Promise<Record<string, unknown>> {
    if (this.failed !== null) return Promise.reject(new Error(`the learner thread failed: ${this.failed}`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.replies.set(id, { resolve, reject });
      this.worker.postMessage({ ...request, id });
    });
  }

  private record(look: LookRecord): void {
    this.looks.unshift(look);
    this.looks.splice(50);
    this.lookResults.inc({ result: look.result });
    if (look.result === 'published' || look.result === 'rolled_back') appendFileSync(join(this.config.dir, 'versions.jsonl'), `${JSON.stringify(look)}\n`);
    if (look.result === 'published') this.prune();
    log('info', 'learning_look', { result: look.result, version: look.version, reason: look.reason });
  }

  /** Versions published before (and rollbacks), oldest first: new versions are numbered after them. */
  private history(): LookRecord[] {
    const file = join(this.config.dir, 'versions.jsonl');
    return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as LookRecord) : [];
  }

  /** Keeps the files of the newest KEPT_VERSIONS published versions; their figures stay in versions.jsonl. */
  private prune(): void {
    const published = this.history().filter((l) => l.result === 'published');
    for (const old of published.slice(0, -KEPT_VERSIONS)) for (const file of [old.file, old.manifest]) if (file) rmSync(file, { force: true });
  }
}
