import { Sandbox } from 'e2b';

const sbx = await Sandbox.create({ timeoutMs: 120_000 });
console.log(sbx.sandboxId, sbx.envdAccessToken);
await new Promise((r) => setTimeout(r, 30000));
await sbx.kill();
