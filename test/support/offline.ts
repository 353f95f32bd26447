import { Os, type BidContext } from '../../src/engine/types.js';
import { loadPersonas } from './rta-client.js';

/** A decoded Tencent first request for a demo prime prospect on Android, for engines run in process (offlineEngine). */
export function primeProspectContext(requestId: string, isTest: boolean): BidContext {
  const device = loadPersonas().prime_prospect.find((d) => d.os === 'android')!;
  return {
    media: 'tencent',
    requestId,
    requestIdBytes: null,
    isPing: false,
    isTest,
    os: Os.ANDROID,
    deviceIds: device.ids.map((id) => ({ kind: id.kind, key: Buffer.from(id.md5, 'hex') })),
    refusedDeviceIds: 0,
    platformExperimentIds: [],
    secondRequest: false,
    candidateAds: [],
    askedStrategyIds: null,
    wantsJson: false,
  };
}
