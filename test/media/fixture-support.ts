import { readFileSync, readdirSync } from 'node:fs';
import protobuf from 'protobufjs';
import {
  DEVICE_ID_KIND_NAMES,
  Os,
  type BidContext,
  type CandidateAd,
  type Decision,
  type DeviceIdKind,
} from '../../src/engine/types.js';
import type { SimulatedRequest } from '../../src/media/simulated-request.js';
import { deviceKeyToHex, parseDeviceKeyHex } from '../../src/store/device-key.js';

/** A BidContext as fixtures write it: os by name, device keys as hex, media left to the adapter under test. */
export interface ContextText {
  requestId: string;
  isPing: boolean;
  isTest: boolean;
  os: string;
  deviceIds: Array<{ kind: string; key: string }>;
  refusedDeviceIds: number;
  platformExperimentIds: number[];
  secondRequest: boolean;
  candidateAds: CandidateAd[];
  /** Written only when the media names the strategies it asks about (Ocean). */
  askedStrategyIds?: string[];
  wantsJson: boolean;
}

export interface DecodeFixture {
  description: string;
  /** Absent: protobuf, the request being the message in protobufjs naming. application/json: the JSON body. */
  contentType?: string;
  request: Record<string, unknown>;
  expected?: ContextText;
  expectedError?: { reason: string; message: string };
}

export interface EncodeFixture {
  description: string;
  context: ContextText;
  /** mediaStrategyIds as an object, absent for none. */
  decision: Omit<Decision, 'mediaStrategyIds'> & { mediaStrategyIds?: Record<string, string> };
  /** The reply message in protobufjs naming, or the JSON reply when the context wants JSON. */
  reply: Record<string, unknown>;
}

export type Fixture = DecodeFixture | EncodeFixture;

export function isDecodeFixture(fixture: Fixture): fixture is DecodeFixture {
  return 'request' in fixture;
}

/** A module's fixtures, Prebid Server style: `exemplary/` the documented cases, `supplemental/` the edge cases. */
export function loadFixtures(dir: URL): Array<{ file: string; fixture: Fixture }> {
  return ['exemplary/', 'supplemental/'].flatMap((folder) =>
    readdirSync(new URL(folder, dir))
      .filter((file) => file.endsWith('.json'))
      .sort()
      .map((file) => ({ file: folder + file, fixture: JSON.parse(readFileSync(new URL(folder + file, dir), 'utf8')) as Fixture })),
  );
}

export function decisionFromFixture({ mediaStrategyIds, ...decision }: EncodeFixture['decision']): Decision {
  return { ...decision, mediaStrategyIds: new Map(Object.entries(mediaStrategyIds ?? {})) };
}

const OS_NAMES = Object.fromEntries(Object.entries(Os).map(([name, value]) => [value, name])) as Record<Os, string>;
const KIND_BY_NAME = Object.fromEntries(
  Object.entries(DEVICE_ID_KIND_NAMES).map(([kind, name]) => [name, Number(kind) as DeviceIdKind]),
);

/** Fixtures are protobufjs objects, whose ids are always valid UTF-8: requestIdBytes is null for every one. */
export function contextToText({ requestIdBytes, askedStrategyIds, ...context }: BidContext): ContextText & { media: string } {
  if (requestIdBytes !== null) throw new Error(`fixture request id ${context.requestId} decoded with raw bytes`);
  return {
    ...context,
    ...(askedStrategyIds !== null ? { askedStrategyIds } : {}),
    os: OS_NAMES[context.os],
    deviceIds: context.deviceIds.map((id) => ({ kind: DEVICE_ID_KIND_NAMES[id.kind], key: deviceKeyToHex(id.key) })),
  };
}

export function contextFromText(text: ContextText, media: string): BidContext {
  return {
    ...text,
    askedStrategyIds: text.askedStrategyIds ?? null,
    media,
    requestIdBytes: null,
    os: Os[text.os as keyof typeof Os],
    deviceIds: text.deviceIds.map((id) => {
      const key = new Uint8Array(16);
      if (!parseDeviceKeyHex(id.key, key)) throw new Error(`fixture device key ${id.key} is not 32 hex characters`);
      const kind = KIND_BY_NAME[id.kind];
      if (kind === undefined) throw new Error(`fixture device id kind ${id.kind} is unknown`);
      return { kind, key };
    }),
  };
}

/**
 * protobufjs' fromObject silently drops misspelt fields and unknown enum names; a fixture with a typo would then
 * test less than it says. This walks the text form against the type and names the first mistake.
 */
export function assertFixtureMatchesType(type: protobuf.Type, value: Record<string, unknown>, path = type.name): void {
  for (const [key, item] of Object.entries(value)) {
    const field = type.fields[key];
    if (field === undefined) throw new Error(`fixture: ${path}.${key} is not a field of ${type.fullName}`);
    field.resolve();
    const elements = field instanceof protobuf.MapField ? Object.values(item as object) : field.repeated ? (item as unknown[]) : [item];
    for (const element of elements) {
      if (field.resolvedType instanceof protobuf.Type) {
        assertFixtureMatchesType(field.resolvedType, element as Record<string, unknown>, `${path}.${key}`);
      } else if (field.resolvedType instanceof protobuf.Enum && typeof element === 'string') {
        if (!(element in field.resolvedType.values)) throw new Error(`fixture: ${path}.${key} has no value ${element}`);
      }
    }
  }
}

/** Long and enum values as text, so that a decoded message compares with a fixture's text form. */
export const TEXT_FORM: protobuf.IConversionOptions = { longs: String, enums: String };

/** The fixture's reply as it reads after a trip over the wire (float32 rounding, proto3 defaults dropped). */
export function overTheWire(type: protobuf.Type, value: Record<string, unknown>): Record<string, unknown> {
  return type.toObject(type.decode(type.encode(type.fromObject(value)).finish()), TEXT_FORM);
}

/**
 * A whole decision: a demo device (data/generated/personas.json, seed 42) asks through the media's client, the
 * engine decides with the demo book and models on its default config, and the reply is what the media reads.
 */
export interface RoundTripFixture {
  description: string;
  persona: string;
  /** Send the persona's raw ids where the protocol carries raw ids (Ocean), rather than their md5s. */
  rawIds?: boolean;
  /** The request's own fields: requestId and any others (askedStrategyIds, platformExperimentIds, isTest...). */
  request: Partial<SimulatedRequest> & { requestId: string };
  /** The reply decoded as the media decodes it, without the fields that change with every run or book edit. */
  reply: Record<string, unknown>;
}

/** Reply fields left out of round trips: processing times vary per run, the book's version with every edit. */
export const VOLATILE_REPLY_FIELDS = ['processing_time_ms', 'processing_time_us', 'book_version', 'bookVersion', 'processingTimeUs'];

export function loadRoundTrips(dir: URL): Array<{ file: string; fixture: RoundTripFixture }> {
  const folder = new URL('round-trip/', dir);
  return readdirSync(folder)
    .filter((file) => file.endsWith('.json'))
    .sort()
    .map((file) => ({ file: `round-trip/${file}`, fixture: JSON.parse(readFileSync(new URL(file, folder), 'utf8')) as RoundTripFixture }));
}

interface PersonasFile {
  personas: Record<string, { devices: Array<{ os: 'android' | 'ios'; ids: Array<{ kind: string; raw: string; md5: string }> }> }>;
}

export function roundTripRequest(fixture: RoundTripFixture, personasFile: URL): SimulatedRequest {
  const personas = (JSON.parse(readFileSync(personasFile, 'utf8')) as PersonasFile).personas;
  const device = personas[fixture.persona]?.devices[0];
  if (!device) throw new Error(`round trip: no persona "${fixture.persona}"`);
  return {
    os: device.os,
    ids: device.ids.map((id) => ({ kind: KIND_BY_NAME[id.kind]!, md5: id.md5, ...(fixture.rawIds ? { raw: id.raw } : {}) })),
    platformExperimentIds: [],
    isPing: false,
    isTest: false,
    secondRequest: false,
    ads: [],
    ...fixture.request,
  };
}

export function withoutVolatileFields(reply: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(reply).filter(([key]) => !VOLATILE_REPLY_FIELDS.includes(key)));
}
