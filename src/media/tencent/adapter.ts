import protobuf from 'protobufjs';
import { DecisionCode, type BidContext, type Decision, type EncodedReply, type MediaAdapter } from '../../engine/types.js';
import { loadProto, scanIdAndFlag, strictType } from '../protobuf.js';
import { checkWire } from '../wire-check.js';
import { encodeReply } from './reply.js';
import { readRequest } from './request.js';

/** Tencent Ads RTA (shared/protocols/tencent-rta.md): proto2 `tencent.ad.rta` over a plain POST body. */

const root = loadProto(new URL('../../../proto/tencent/rta.proto', import.meta.url));
const RtaRequest = strictType(root, 'tencent.ad.rta.RtaRequest');

const CONTENT_TYPE = 'application/x-protobuf';

export const tencentAdapter: MediaAdapter = {
  name: 'tencent',

  decode(body: Uint8Array): BidContext {
    checkWire(RtaRequest.rule, body);
    return readRequest(body);
  },

  shed(body: Uint8Array, _contentType: string, cacheTtlSeconds: number): EncodedReply {
    checkWire(RtaRequest.rule, body);
    const { id, flag: isPing } = scanIdAndFlag(body, REQUEST_ID_FIELD, IS_PING_FIELD);
    const writer = protobuf.Writer.create();
    if (id !== null) writer.uint32(tag(REQUEST_ID_FIELD, 2)).bytes(id);
    writer.uint32(tag(CODE_FIELD, 0)).uint32(isPing ? DecisionCode.TAKE : DecisionCode.DEADLINE_FALLBACK);
    if (!isPing) writer.uint32(tag(CACHE_TIME_FIELD, 0)).uint32(cacheTtlSeconds);
    return { body: writer.finish(), contentType: CONTENT_TYPE };
  },

  encode(context: BidContext, decision: Decision): EncodedReply {
    return { body: encodeReply(context, decision), contentType: CONTENT_TYPE };
  },
};

/** Field numbers of the shed answer, written by hand (see `shed`): RtaRequest.id and is_ping, RtaResponse's own. */
const REQUEST_ID_FIELD = 1;
const IS_PING_FIELD = 2;
const CODE_FIELD = 2;
const CACHE_TIME_FIELD = 7;
const tag = (field: number, wireType: number) => (field << 3) | wireType;
