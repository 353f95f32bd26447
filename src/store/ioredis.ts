import { Cluster, Redis } from 'ioredis';

/**
 * ioredis, the one way the engine imports it. Loading ioredis runs `class VerbatimString extends String`, and V8
 * answers a new subclass of String by putting String.prototype into dictionary mode. Nothing turns it back by
 * itself, so from then on optimised code cannot inline any string method (`charCodeAt` in the decoders, the device
 * id parser, protobufjs's writer, the decision log): each call pays a generic property lookup, about 14k
 * instructions per Tencent request in the perf gate (counted in some runs and not in others, which made the gate
 * flap). A property load through a String object, once its inline cache exists, has V8 make the prototype fast
 * again (test/store/ioredis.test.ts watches this with V8's own %HasFastProperties).
 */
function fastStringPrototype(): void {
  const wrapper = new String('');
  const load = (s: string) => s.charCodeAt;
  // V8 gives a function its inline caches only after a budget of calls (10 for this one in Node 20): 64 is ample.
  for (let i = 0; i < 64; i++) load(wrapper as string);
}
fastStringPrototype();

export { Cluster, Redis };
