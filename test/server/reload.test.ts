import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DeviceIdKind } from '../../src/engine/types.js';
import { nativeClient } from '../../src/media/native/client.js';
import { hashRawDeviceId } from '../../src/store/device-key.js';
import { DECISIONS_ENV, REPO_ROOT, startEngine, type EngineProcess } from '../support/engine-process.js';
import { metricSum } from '../support/rta-client.js';

/**
 * Hot reload under load: models swapped back and forth between two versions while requests keep coming. Every
 * reply must be a 200 scored wholly by one version, never a mix, and a refused model file must leave the old
 * version serving.
 */

const MODEL_FILES = ['apply.json', 'approve.json', 'risk.json', 'ltv.json'];
let dir: string;
let engine: EngineProcess;

function writeModels(version: string): string {
  const manifest = JSON.parse(readFileSync(join(REPO_ROOT, 'data/models/manifest.json'), 'utf8'));
  for (const model of manifest.models) model.version = version;
  const approve = JSON.parse(readFileSync(join(REPO_ROOT, 'data/models/approve.json'), 'utf8'));
  approve.version = version;
  writeFileSync(join(dir, 'approve.json'), JSON.stringify(approve));
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
  return manifest.models.map((m: { name: string }) => `${m.name}@${version}`).join(',');
}

async function reload(): Promise<Response> {
  return fetch(`${engine.adminUrl}/reload/models`, { method: 'POST' });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rta-reload-'));
  for (const file of MODEL_FILES) copyFileSync(join(REPO_ROOT, 'data/models', file), join(dir, file));
  writeModels('v1');
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ scoring: { manifest: join(dir, 'manifest.json'), watchManifest: false } }));
  // Loading new models blocks each serving thread for some tens of milliseconds (README, "Hot reload"); a deadline
  // longer than that keeps this test about versions, not about deadline fallbacks.
  engine = await startEngine({ RTA_CONFIG: join(dir, 'config.json'), ...DECISIONS_ENV });
});

afterAll(async () => {
  await engine?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('model hot reload', () => {
  test('swapping models repeatedly under load gives no failed and no mixed-version replies', async () => {
    const versions = { v1: writeModels('v1'), v2: writeModels('v2') };
    writeModels('v1');
    const { body, contentType } = nativeClient.encodeRequest({
      requestId: 'reload',
      os: 'android',
      // An unknown device: every such request passes the profile stage and is scored.
      ids: [{ kind: DeviceIdKind.OAID_MD5, md5: hashRawDeviceId(DeviceIdKind.OAID_MD5, 'reload-test-unknown-device') }],
      platformExperimentIds: [],
      isPing: false,
      isTest: false,
      secondRequest: false,
      ads: [],
    });
    const seen = new Map<string, number>();
    let failures = 0;
    let running = true;
    const client = async () => {
      while (running) {
        const response = await fetch(`${engine.mediaUrl}/rta/v1`, { method: 'POST', body, headers: { 'Content-Type': contentType } });
        const bytes = new Uint8Array(await response.arrayBuffer());
        if (response.status !== 200) {
          failures++;
          continue;
        }
        const reply = nativeClient.decodeReply(bytes, contentType) as { model_version?: string };
        const version = reply.model_version ?? '';
        seen.set(version, (seen.get(version) ?? 0) + 1);
      }
    };
    const clients = [client(), client(), client(), client()];
    for (let i = 0; i < 6; i++) {
      writeModels(i % 2 === 0 ? 'v2' : 'v1');
      const response = await reload();
      expect(response.status, await response.text()).toBe(200);
    }
    running = false;
    await Promise.all(clients);

    // A reply without a model version is a deadline fallback (a thread busy loading models on a loaded machine):
    // allowed, but rare. Every scored reply names exactly one whole version.
    const fallbacks = seen.get('') ?? 0;
    seen.delete('');
    const total = fallbacks + [...seen.values()].reduce((a, b) => a + b, 0);
    expect(failures).toBe(0);
    expect([...seen.keys()].sort()).toEqual([versions.v1, versions.v2].sort());
    expect(fallbacks / total).toBeLessThan(0.05);
  });

  test('a broken model file is refused with its reason and the old models keep serving', async () => {
    const serving = writeModels('v1');
    expect((await reload()).status).toBe(200);
    writeFileSync(join(dir, 'risk.json'), '{"learner": ');
    writeModels('v3');
    const response = await reload();
    expect(response.status).toBe(422);
    expect(await response.text()).toMatch(/^reload_refused: .*risk\.json/);
    copyFileSync(join(REPO_ROOT, 'data/models/risk.json'), join(dir, 'risk.json'));

    const metrics = await (await fetch(`${engine.adminUrl}/metrics`)).text();
    expect(metricSum(metrics, 'rta_model_info', { model: 'risk', version: 'v1' })).toBe(1);
    expect(metricSum(metrics, 'rta_model_info', { model: 'risk', version: 'v3' })).toBe(0);
    expect(metricSum(metrics, 'rta_reloads_total', { target: 'models', result: 'refused' })).toBeGreaterThanOrEqual(1);
    expect(serving).toContain('risk@v1');
  });
});
