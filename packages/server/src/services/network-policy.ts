import type { NodeNetworkPolicy } from '@aiva/protocol/node';
import { refuseUnsupportedEgress } from './sandbox-options.js';

type NetworkRequest = { allowOut?: string[]; denyOut?: string[] } & Record<string, unknown>;

/**
 * The egress policy a request asks for. E2B's per-host `rules` (header injection) and
 * `egressProxy` are not implemented: asking for them is an error, not silently ignored
 * (an empty `rules` or a null `egressProxy` asks for nothing and passes).
 */
export function egressPolicy(
  allowInternetAccess: boolean | undefined,
  network: NetworkRequest,
): NodeNetworkPolicy {
  refuseUnsupportedEgress(network);
  return {
    ...(allowInternetAccess !== undefined ? { allowInternetAccess } : {}),
    ...(network.allowOut ? { allowOut: network.allowOut } : {}),
    ...(network.denyOut ? { denyOut: network.denyOut } : {}),
  };
}

/**
 * A sandbox's stored `network` after a policy update: its other settings kept, `allowOut`
 * and `denyOut` replaced (cleared when left out, as E2B does).
 */
export function updatedNetwork(
  before: Record<string, unknown> | null,
  update: NetworkRequest,
): Record<string, unknown> {
  const { allowOut: _a, denyOut: _d, ...kept } = before ?? {};
  return {
    ...kept,
    ...(update.allowOut ? { allowOut: update.allowOut } : {}),
    ...(update.denyOut ? { denyOut: update.denyOut } : {}),
  };
}
