import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { afterAll, expect, test } from 'vitest';
import { EmbeddedDeviceStore } from '../../src/store/embedded.js';
import { ProfileRecordWriter } from '../../src/store/profile-record.js';
import { DEFAULT_PROFILE_SCHEMA_PATH, loadProfileSchema } from '../../src/store/profile-schema.js';

const schema = loadProfileSchema(DEFAULT_PROFILE_SCHEMA_PATH);
const workers: Worker[] = [];
afterAll(() => Promise.all(workers.map((worker) => worker.terminate())));

async function ask(worker: Worker, hex: string): Promise<{ offset: number; creditBand: number | null }> {
  worker.postMessage(hex);
  const [reply] = await once(worker, 'message');
  return reply;
}

test('a worker thread reopens the store over the shared buffers and reads records without a copy', async () => {
  const store = EmbeddedDeviceStore.create(schema);
  const writer = new ProfileRecordWriter(schema);
  const creditBand = schema.field('credit_band');
  const keys = ['first', 'second'].map((raw) => createHash('md5').update(raw).digest('hex'));
  keys.forEach((hex, i) => {
    writer.clear();
    writer.write(creditBand, i + 2);
    store.addDevice(writer.record, Buffer.from(hex, 'hex'));
  });

  // Workers do not inherit the test runner's TypeScript loader on Node 20: the fixture is loaded through tsx's API.
  const fixture = new URL('./fixtures/read-profile-worker.ts', import.meta.url).href;
  const worker = new Worker(`import('tsx/esm/api').then(({ tsImport }) => tsImport(${JSON.stringify(fixture)}, ${JSON.stringify(fixture)}))`, {
    eval: true,
    workerData: store.shareBuffers(),
  });
  workers.push(worker);

  expect(await ask(worker, keys[1]!)).toEqual({ offset: schema.recordBytes, creditBand: 3 });
  expect(await ask(worker, createHash('md5').update('absent').digest('hex'))).toEqual({ offset: -1, creditBand: null });

  // Changing the byte here is seen there: both threads hold the same memory.
  store.records[schema.recordBytes + creditBand.offset] = 5;
  expect(await ask(worker, keys[1]!)).toEqual({ offset: schema.recordBytes, creditBand: 5 });
  expect(await ask(worker, keys[0]!)).toEqual({ offset: 0, creditBand: 2 });
});
