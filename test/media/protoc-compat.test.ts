import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import type { BidContext, Decision } from '../../src/engine/types.js';
import { nativeAdapter } from '../../src/media/native/adapter.js';
import { oceanAdapter } from '../../src/media/ocean/adapter.js';
import { tencentSpAdapter } from '../../src/media/tencent-sp/adapter.js';
import { tencentAdapter } from '../../src/media/tencent/adapter.js';
import { hashRawDeviceId } from '../../src/store/device-key.js';
import { DeviceIdKind } from '../../src/engine/types.js';
import { contextToText } from './fixture-support.js';

/**
 * Cross-implementation check: protoc (Google's C++ protobuf) encodes requests from text format and decodes our
 * replies, so a field number or type that only agrees with itself inside protobufjs shows up here.
 */

const protoDir = fileURLToPath(new URL('../../proto/', import.meta.url));
const protocFound = spawnSync('protoc', ['--version']).status === 0;
if (!protocFound) {
  console.warn('\n*** protoc NOT FOUND on PATH: protoc-compat tests SKIPPED (apt-get install protobuf-compiler) ***\n');
}

function protoc(mode: '--encode' | '--decode', messageType: string, file: string, input: string | Uint8Array): Buffer {
  return execFileSync('protoc', [`${mode}=${messageType}`, `-I${protoDir}`, `${protoDir}${file}`], { input });
}

const TENCENT = 'tencent/rta.proto';
const TENCENT_SP = 'tencent/rtasp.proto';
const OCEAN = 'ocean/rta.proto';
const NATIVE = 'rta/v1/native.proto';

const take: Decision = {
  code: 0,
  reason: 'take',
  strategies: [
    { strategyId: 'new_prime', coefficient: 1.35, creativeId: 0, cpaPriceFen: 12000, cpcPriceFen: 0, experimentTag: 301, experimentTagName: 'coef_v2_b', pcvr: 0.25 },
    { strategyId: 'reactivate', coefficient: 0.5, creativeId: 4503599627370497, cpaPriceFen: 0, cpcPriceFen: 150, experimentTag: 0, experimentTagName: '', pcvr: 0 },
  ],
  adResults: [{ adGroupId: 9876543210123, ignore: false, creatives: [{ creativeId: 17, raiseFactor: 1.5 }] }],
  cacheTtlSeconds: 7200,
  experimentTag: 12,
  experimentTagName: 'ctrl',
  processingTimeUs: 1500,
  modelVersion: 'apply@3',
  bookVersion: '3f9a1c2b7d4e',
  mediaStrategyIds: new Map(),
};

describe.skipIf(!protocFound)('protoc compatibility: tencent', () => {
  test('a first request written by protoc decodes, doubtful ids refused', () => {
    const bytes = protoc('--encode', 'tencent.ad.rta.RtaRequest', TENCENT, `
      id: "compat-1"
      is_test: true
      device {
        os: OS_ANDROID
        idfa_md5sum: ""
        imei_md5sum: "ee7312e93d57adefe4b880dcf13ab6b5"
        oaid_md5sum: "3fe359c786cf678c65a0ad10421d0350"
        ip: "198.51.100.4"
        doubtful_ids_list: IMEI_MD5_DOUBTFUL
        cached_deviceid_type: OAID_MD5
        qaid_infos { version: 1 qaid_md5sum: "95894b56c3fa9cf979d9d22d12dcedab" }
        wx_openid { appid: "wx1" openid: "o1" }
      }
      siteset_id: 25
      request_info { request_type: NORMAL_REQUEST }
      exps { exp_id: 1 }
      exps { exp_id: 4000000000 }
      unified_request_id: "u-1"
    `);
    expect(contextToText(tencentAdapter.decode(bytes, ''))).toEqual({
      media: 'tencent',
      requestId: 'compat-1',
      isPing: false,
      isTest: true,
      os: 'ANDROID',
      deviceIds: [
        { kind: 'oaid_md5', key: '3fe359c786cf678c65a0ad10421d0350' },
        { kind: 'caid_md5', key: '95894b56c3fa9cf979d9d22d12dcedab' },
      ],
      refusedDeviceIds: 1,
      platformExperimentIds: [1, 4000000000],
      secondRequest: false,
      candidateAds: [],
      wantsJson: false,
    });
  });

  test('a second request written by protoc (packed template ids, 64-bit ids) decodes', () => {
    const bytes = protoc('--encode', 'tencent.ad.rta.RtaRequest', TENCENT, `
      id: "compat-2"
      device { os: OS_IOS idfa_md5sum: "674c1f1fbe541044ab36c65ba287ef68" }
      request_info { request_type: ADLIST_REQUEST }
      ad_infos {
        adgroup_id: 9876543210123
        creative_infos { creative_id: 4503599627370497 crt_template_id: 311 }
        creative_infos { creative_id: 17 crt_template_id: 721 }
        product_infos { product_lib: 3 out_product_id: "p" }
        advertiser_id: 2233445
        out_target_id: "new_prime"
      }
      crt_template_id: [311, 721]
      rta_trace_id_list: "compat-1"
      ad_request_time: 1717200000123
    `);
    const context = tencentAdapter.decode(bytes, '');
    expect(context.secondRequest).toBe(true);
    expect(context.os).toBe(1);
    expect(context.candidateAds).toEqual([
      {
        adGroupId: 9876543210123,
        advertiserId: 2233445,
        outTargetId: 'new_prime',
        creatives: [
          { creativeId: 4503599627370497, templateId: 311 },
          { creativeId: 17, templateId: 721 },
        ],
      },
    ]);
  });

  test('our reply to a second request decodes in protoc with every field where the protocol page puts it', () => {
    const context = tencentAdapter.decode(
      protoc('--encode', 'tencent.ad.rta.RtaRequest', TENCENT, 'id: "compat-3" request_info { request_type: ADLIST_REQUEST }'),
      '',
    );
    const reply = tencentAdapter.encode(context, take);
    const text = protoc('--decode', 'tencent.ad.rta.RtaResponse', TENCENT, reply.body as Uint8Array).toString();
    expect(text).toBe(
      [
        'request_id: "compat-3"',
        'code: 0',
        'processing_time_ms: 2',
        'response_cache_time: 7200',
        'dsp_tag: 12',
        'out_target_id: "new_prime"',
        'out_target_id: "reactivate"',
        'target_infos {',
        '  out_target_id: "new_prime"',
        '  cpa_price: 12000',
        '  user_weight_factor: 1.35',
        '  dsp_tag: 301',
        '  dsp_tag_str: "coef_v2_b"',
        '  pcvr: 0.25',
        '}',
        'target_infos {',
        '  out_target_id: "reactivate"',
        '  cpc_price: 150',
        '  user_weight_factor: 0.5',
        '}',
        'ad_results {',
        '  adgroup_id: 9876543210123',
        '  creative_results {',
        '    creative_id: 17',
        '    out_raise_factor: 1.5',
        '  }',
        '}',
        'dsp_tag_str: "ctrl"',
        '',
      ].join('\n'),
    );
  });

  test('a ping reply is request_id and code only', () => {
    const ping: BidContext = { ...tencentAdapter.decode(new Uint8Array(0), ''), requestId: 'p', isPing: true };
    const text = protoc('--decode', 'tencent.ad.rta.RtaResponse', TENCENT, tencentAdapter.encode(ping, take).body as Uint8Array);
    expect(text.toString()).toBe('request_id: "p"\ncode: 0\n');
  });
});

describe.skipIf(!protocFound)('protoc compatibility: native', () => {
  test('a request written by protoc decodes', () => {
    const bytes = protoc('--encode', 'rta.v1.NativeRequest', NATIVE, `
      request_id: "n-compat"
      media: "oppo"
      os: OS_IOS
      device_ids { type: IDFA_MD5 md5: "674c1f1fbe541044ab36c65ba287ef68" }
      device_ids { type: ID_TYPE_UNSPECIFIED md5: "3fe359c786cf678c65a0ad10421d0350" }
      experiment_ids: [3, 70000]
      second_request: true
      candidate_ads {
        ad_group_id: 9876543210123
        advertiser_id: 8800000001
        strategy_id: "new_prime"
        creatives { creative_id: 4503599627370497 template_id: 9 }
      }
    `);
    expect(contextToText(nativeAdapter.decode(bytes, ''))).toEqual({
      media: 'native',
      requestId: 'n-compat',
      isPing: false,
      isTest: false,
      os: 'IOS',
      deviceIds: [{ kind: 'idfa_md5', key: '674c1f1fbe541044ab36c65ba287ef68' }],
      refusedDeviceIds: 1,
      platformExperimentIds: [3, 70000],
      secondRequest: true,
      candidateAds: [
        {
          adGroupId: 9876543210123,
          advertiserId: 8800000001,
          outTargetId: 'new_prime',
          creatives: [{ creativeId: 4503599627370497, templateId: 9 }],
        },
      ],
      wantsJson: false,
    });
  });

  test('our protobuf reply decodes in protoc', () => {
    const context = nativeAdapter.decode(protoc('--encode', 'rta.v1.NativeRequest', NATIVE, 'request_id: "n-2"'), '');
    const text = protoc('--decode', 'rta.v1.NativeResponse', NATIVE, nativeAdapter.encode(context, take).body as Uint8Array);
    expect(text.toString()).toBe(
      [
        'request_id: "n-2"',
        'reason: "take"',
        'decisions {',
        '  strategy_id: "new_prime"',
        '  coefficient: 1.35',
        '  cpa_price_fen: 12000',
        '  experiment_tag: 301',
        '  experiment_tag_name: "coef_v2_b"',
        '  pcvr: 0.25',
        '}',
        'decisions {',
        '  strategy_id: "reactivate"',
        '  coefficient: 0.5',
        '  creative_id: 4503599627370497',
        '  cpc_price_fen: 150',
        '}',
        'ad_results {',
        '  ad_group_id: 9876543210123',
        '  creatives {',
        '    creative_id: 17',
        '    raise_factor: 1.5',
        '  }',
        '}',
        'cache_ttl_seconds: 7200',
        'processing_time_us: 1500',
        'model_version: "apply@3"',
        'experiment_tag: 12',
        'experiment_tag_name: "ctrl"',
        'book_version: "3f9a1c2b7d4e"',
        '',
      ].join('\n'),
    );
  });
});

describe.skipIf(!protocFound)('protoc compatibility: tencent-sp', () => {
  test('a request written by protoc decodes: CAIDs newest version first, the cached id not repeated', () => {
    const bytes = protoc('--encode', 'tencent.ad.rtasp.RTASPRequest', TENCENT_SP, `
      id: "sp-compat"
      device {
        did_md5: "674c1f1fbe541044ab36c65ba287ef68"
        did_type: IDFA_MD5
        os: OS_IOS
        idfa_md5: "674c1f1fbe541044ab36c65ba287ef68"
        caid { origin_version: "20220111" caid_md5: "95894b56c3fa9cf979d9d22d12dcedab" }
        caid { origin_version: "20230330" caid_md5: "5b2f0a1c9e8d7c6b5a4f3e2d1c0b9a88" }
      }
      exp_ids: [7, 4000000000]
    `);
    expect(contextToText(tencentSpAdapter.decode(bytes, ''))).toMatchObject({
      media: 'tencent-sp',
      requestId: 'sp-compat',
      os: 'IOS',
      deviceIds: [
        { kind: 'idfa_md5', key: '674c1f1fbe541044ab36c65ba287ef68' },
        { kind: 'caid_md5', key: '5b2f0a1c9e8d7c6b5a4f3e2d1c0b9a88' },
        { kind: 'caid_md5', key: '95894b56c3fa9cf979d9d22d12dcedab' },
      ],
      refusedDeviceIds: 0,
      platformExperimentIds: [7, 4000000000],
    });
  });

  test('our reply decodes in protoc: a yes vote with its adjustments per taken strategy, no for the rest', () => {
    const context = tencentSpAdapter.decode(protoc('--encode', 'tencent.ad.rtasp.RTASPRequest', TENCENT_SP, 'id: "sp-2"'), '');
    const decision = { ...take, mediaStrategyIds: new Map([['new_prime', 'new_prime'], ['reactivate', 'reactivate'], ['dormant', 'dormant']]) };
    const text = protoc('--decode', 'tencent.ad.rtasp.RTASPResponse', TENCENT_SP, tencentSpAdapter.encode(context, decision).body as Uint8Array);
    expect(text.toString()).toBe(
      [
        'id: "sp-2"',
        // protoc prints a map's entries by key.
        'strategy_list {',
        '  key: "dormant"',
        '  value {',
        '    voting: VOTING_NO',
        '  }',
        '}',
        'strategy_list {',
        '  key: "new_prime"',
        '  value {',
        '    voting: VOTING_YES',
        '    user_weight_factor: 1.35',
        '    cpa_price: 12000',
        '  }',
        '}',
        'strategy_list {',
        '  key: "reactivate"',
        '  value {',
        '    voting: VOTING_YES',
        '    user_weight_factor: 0.5',
        '    cpc_price: 150',
        '  }',
        '}',
        '',
      ].join('\n'),
    );
  });
});

describe.skipIf(!protocFound)('protoc compatibility: ocean', () => {
  test('a request written by protoc decodes: raw ids hashed on arrival, the RTA ids asked kept as text', () => {
    const bytes = protoc('--encode', 'ocean.rta.Req', OCEAN, `
      platform: ANDROID
      did: "86012345678901A"
      did_type: IMEI
      slot_id: 900000000000001
      experiment: 3
      req_id: "ocean-compat"
      source: "pangle"
      rta_ids: [7001, 9007199254740993]
      enable_strategy: 1
      device { oaid: "3a9c0b1e-77f4-4c2d-9e8a-5b6c7d8e9f00" ip: "198.51.100.4" device_os_type: DEVICE_ANDROID }
      creative_type: [1, 2]
      vids: [11, 12]
    `);
    expect(contextToText(oceanAdapter.decode(bytes, ''))).toMatchObject({
      media: 'ocean',
      requestId: 'ocean-compat',
      os: 'ANDROID',
      deviceIds: [
        { kind: 'oaid_md5', key: hashRawDeviceId(DeviceIdKind.OAID_MD5, '3a9c0b1e-77f4-4c2d-9e8a-5b6c7d8e9f00') },
        { kind: 'imei_md5', key: hashRawDeviceId(DeviceIdKind.IMEI_MD5, '86012345678901A') },
      ],
      refusedDeviceIds: 0,
      platformExperimentIds: [11, 12],
      askedStrategyIds: ['7001', '9007199254740993'],
    });
  });

  test('our reply decodes in protoc: per RTA id asked, interested with its scores or not, bid_type and cache time', () => {
    const context = oceanAdapter.decode(protoc('--encode', 'ocean.rta.Req', OCEAN, 'req_id: "o-2" rta_ids: [7001, 7002, 7003]'), '');
    const decision = { ...take, mediaStrategyIds: new Map([['new_prime', '7001'], ['reactivate', '7003']]) };
    const text = protoc('--decode', 'ocean.rta.Rsp', OCEAN, oceanAdapter.encode(context, decision).body as Uint8Array);
    expect(text.toString()).toBe(
      [
        'req_id: "o-2"',
        'user_infos {',
        '  is_interested: true',
        '  user_scores {',
        '    user_type: PRICE_COEF',
        '    quality: 1.35',
        '  }',
        '  user_scores {',
        '    user_type: PRICE_BID',
        '    quality: 12000',
        '    pricing_type: OCPC',
        '  }',
        '  rta_id: 7001',
        '  action_scores {',
        '    action_type: LOAN_CREDIT',
        '    quality: 0.25',
        '  }',
        '}',
        'user_infos {',
        '  rta_id: 7002',
        '}',
        'user_infos {',
        '  is_interested: true',
        '  user_scores {',
        '    user_type: PRICE_COEF',
        '    quality: 0.5',
        '  }',
        '  user_scores {',
        '    user_type: PRICE_BID',
        '    quality: 150',
        '    pricing_type: CPC',
        '  }',
        '  rta_id: 7003',
        '}',
        'bid_type {',
        '}',
        'cache_time_secs: 7200',
        '',
      ].join('\n'),
    );
  });
});
