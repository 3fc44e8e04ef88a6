import { ENVD_PORT } from '@aiva/protocol';
import type { NewSandbox } from '../api/e2b/schemas.js';
import { InvalidRequestError } from './errors.js';

/**
 * What aiva does with E2B's create options it does not implement (`volumeMounts` are
 * `VolumeService.resolveMounts`'s): a request that asks
 * for one is refused (400), never run without it. An empty or null value asks for
 * nothing and passes (the SDK leaves all of these out unless the caller set them).
 * Fields E2B does not have either are ignored, as before.
 */
export function checkCreateOptions(body: NewSandbox): void {
  const refuse = (field: string, why = '') => {
    throw new InvalidRequestError(`${field} is not supported by aiva${why}`);
  };
  const iamTokens = (body.iam as { tokens?: object } | null | undefined)?.tokens;
  if (iamTokens && Object.keys(iamTokens).length > 0) refuse('iam', ' (workload identity tokens)');
  // The SDK starts the MCP gateway itself (`mcp-gateway --config` in the new sandbox, whose
  // template, mcp-gateway, has it); the server only checks the shape.
  if (body.mcp != null && (typeof body.mcp !== 'object' || Array.isArray(body.mcp)))
    throw new InvalidRequestError('mcp must be an object of MCP servers (see the mcp-gateway template)');
  const network = body.network;
  if (!network) return;
  refuseUnsupportedEgress(network);
  for (const port of network.httpsPorts ?? [])
    if (port === ENVD_PORT)
      throw new InvalidRequestError(`network.httpsPorts cannot list the envd port ${ENVD_PORT}`);
  if (network.maskRequestHost !== undefined && !validMaskHost(network.maskRequestHost))
    throw new InvalidRequestError(`mask request host is not valid: ${network.maskRequestHost}`);
}

/** E2B's egress `rules` (header injection) and `egressProxy`, on create and on a network update. */
export function refuseUnsupportedEgress(network: Record<string, unknown>): void {
  const rules = network.rules;
  if (rules != null && (typeof rules !== 'object' || Object.keys(rules).length > 0))
    throw new InvalidRequestError('network.rules is not supported by aiva');
  if (network.egressProxy != null)
    throw new InvalidRequestError('network.egressProxy is not supported by aiva');
}

/** What stands for the port in a `maskRequestHost` (E2B's placeholder). */
const PORT_PLACEHOLDER = ['$', '{PORT}'].join('');

/** `host`, `host:port` or `[v6]:port`, in ASCII; `${PORT}` may stand for the port anywhere. */
function validMaskHost(mask: string): boolean {
  const m = /^(?:\[([0-9a-f:.]+)\]|([a-z0-9_.-]+))(?::(\d{1,5}))?$/i.exec(
    mask.replaceAll(PORT_PLACEHOLDER, '1'),
  );
  return Boolean(m && (m[1] || m[2]) && (m[3] === undefined || Number(m[3]) <= 65535));
}

/** The Host header of requests to `port`, if the sandbox masks it (never for envd, as E2B). */
export function maskedHost(mask: string | undefined, port: number): string | undefined {
  return mask && port !== ENVD_PORT ? mask.replaceAll(PORT_PLACEHOLDER, String(port)) : undefined;
}
