import type { MediaModule } from './module.js';
import { native } from './native/index.js';
import { ocean } from './ocean/index.js';
import { tencentSp } from './tencent-sp/index.js';
import { tencent } from './tencent/index.js';

/**
 * Every media the engine speaks. Boot, the config, the strategy book, the `rta` tool, the simulator, the
 * benchmarks, the fixture and contract tests and the README's route table all read this list: adding a media is
 * its folder and one line here.
 */
export const MEDIA_MODULES: readonly MediaModule[] = [tencent, tencentSp, ocean, native];

export const MEDIA_NAMES: readonly string[] = MEDIA_MODULES.map((m) => m.name);

/** The module of that name; throws for a name that is not registered (a caller's bug, not input). */
export function mediaModule(name: string): MediaModule {
  const module = MEDIA_MODULES.find((m) => m.name === name);
  if (!module) throw new Error(`no media module "${name}" (registered: ${MEDIA_NAMES.join(', ')})`);
  return module;
}
