import type { MediaAdapter } from '../engine/types.js';
import type { MediaClient } from './simulated-request.js';

/**
 * One media platform, everything the engine knows of it in one place (see the registry): its route, both sides of
 * its protocol, the rules its platform applies to our answers, and the fixtures that document and test it.
 */
export interface MediaModule {
  /** The `media` metric label, the strategy file's `media` names and the config's key. */
  readonly name: string;
  readonly path: string;
  /** One line for the README's route table. */
  readonly summary: string;
  /** Translates only: the engine has applied the media's rules to a decision before the adapter encodes it. */
  readonly adapter: MediaAdapter;
  readonly client: MediaClient;
  /** What the platform accepts of an answer, as its documentation states; config (`media.<name>`) may change them. */
  readonly rules: MediaRules;
  /** The .proto and its two message types, for fixtures and protoc cross-checks. */
  readonly proto: { readonly file: URL; readonly request: string; readonly response: string };
  /** `exemplary/` and `supplemental/` JSON fixtures, Prebid Server style. */
  readonly fixtures: URL;
  /** What the protocol can say, so the contract suite asks each module only what its media can send. */
  readonly speaks: {
    readonly ping: boolean;
    readonly test: boolean;
    readonly secondRequest: boolean;
    /** The request names the strategies it asks about (Ocean's rta_ids); otherwise every strategy is asked. */
    readonly askedStrategies: boolean;
    /** A decline names each strategy (SP's no votes, Ocean's not interested) rather than giving one code for all. */
    readonly declinesByStrategy: boolean;
  };
  /**
   * Its requests may carry raw device ids (Ocean's OAID and IDFA): hashed by the adapter, and the request bytes are
   * never kept, not even in the decision log's raw sample.
   */
  readonly carriesRawIds: boolean;
  /** The media's own ids for strategies, where it restricts them (Ocean: int64 RTA ids); checked at book load. */
  readonly strategyIdPattern?: RegExp;
}

export interface MediaRules {
  /** Coefficients outside the range are ignored by the platform (it treats them as 1.0): never send one. */
  readonly coefficient: { readonly min: number; readonly max: number; readonly decimals: number };
  /** A CPC price below this is ignored by the platform: a lower price is raised to it. */
  readonly cpcFloorFen: number;
  /** The cache time the platform accepts; the book's is clamped into it. */
  readonly cacheSeconds: { readonly min: number; readonly max: number };
  /** How a decline is answered: 200 with the protocol's decline, or 204 with no body where the media counts that as no bid. */
  readonly declineStatus: 200 | 204;
}
