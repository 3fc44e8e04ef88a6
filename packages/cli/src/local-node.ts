import type { DriverName } from '@aiva/node';
import { dataDir, type LocalNode, openLocalNode } from '@aiva/node';
import { codeInterpreterDir, envdDir, mcpGatewayDir, recipesDir } from './install-paths.js';

/** Opens this host's node for one CLI command and closes it afterwards (its sandboxes keep running). */
export async function withLocalNode<T>(
  fn: (node: LocalNode) => Promise<T>,
  options: { defaultDriver?: DriverName } = {},
): Promise<T> {
  const node = await openLocalNode({
    home: dataDir(),
    recipesDir,
    envdDir,
    codeInterpreterDir,
    mcpGatewayDir,
    ...options,
  });
  try {
    return await fn(node);
  } finally {
    await node.sandboxes.close();
  }
}
