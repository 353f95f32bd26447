import { BlockList, isIP } from 'node:net';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import type { Config } from '../config.js';
import { secretCheck } from './secret.js';

/**
 * Who may call a media route (config `server.mediaAuth.<media>`): source networks, a shared token, or both. Checked
 * before the body is read, so a stranger costs a header lookup and gets no decision.
 */

export type MediaAuthConfig = NonNullable<Config['server']['mediaAuth']['tencent']>;

export interface Refusal {
  status: string;
  reason: string;
  message: string;
}

export interface MediaAccess {
  /** The route's path in the router: the media's own, with `/:token` after it when the token travels in the path. */
  routePath: string;
  /** Null when the caller is admitted. */
  refusal(res: HttpResponse, req: HttpRequest): Refusal | null;
}

export const TOKEN_HEADER = 'x-rta-token';
const IPV4_MAPPED = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

export function mediaAccess(path: string, auth: MediaAuthConfig | undefined): MediaAccess {
  if (auth === undefined) return { routePath: path, refusal: () => null };
  const allowed = auth.allowFrom ? allowList(auth.allowFrom) : null;
  const tokenMatches = auth.token !== undefined ? secretCheck(auth.token) : null;
  const inPath = auth.tokenIn === 'path';
  const forbidden: Refusal = { status: '403 Forbidden', reason: 'forbidden_address', message: `this source address may not call ${path}` };
  const unauthorized: Refusal = {
    status: '401 Unauthorized',
    reason: 'unauthorized',
    message: inPath ? `${path} needs its token in the path` : `${path} needs the ${TOKEN_HEADER} header`,
  };
  return {
    routePath: tokenMatches && inPath ? `${path}/:token` : path,
    refusal(res, req) {
      if (allowed !== null && !admits(allowed, Buffer.from(res.getRemoteAddressAsText()).toString())) return forbidden;
      if (tokenMatches !== null && !tokenMatches(inPath ? req.getParameter(0) ?? '' : req.getHeader(TOKEN_HEADER))) return unauthorized;
      return null;
    },
  };
}

function allowList(networks: readonly string[]): BlockList {
  const list = new BlockList();
  for (const network of networks) {
    const [address, prefix] = network.split('/') as [string, string | undefined];
    const family = isIP(address) === 4 ? 'ipv4' : 'ipv6';
    if (prefix === undefined) list.addAddress(address, family);
    else list.addSubnet(address, Number(prefix), family);
  }
  return list;
}

/** A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; they are matched as the IPv4 address they are. */
function admits(list: BlockList, remote: string): boolean {
  const mapped = IPV4_MAPPED.exec(remote);
  const address = mapped ? mapped[1]! : remote;
  const family = isIP(address);
  return family !== 0 && list.check(address, family === 4 ? 'ipv4' : 'ipv6');
}
