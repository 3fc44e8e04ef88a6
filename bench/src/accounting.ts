// What accounting costs an API call, side by side on one `aiva up`: an authenticated read
// by a team without a request rate (no bucket row: one statement that inserts nothing)
// against the same read by a team whose key draws on a token bucket in the database; and
// a mutating call (which appends an audit row) against a read of the same sandbox. The
// requests alternate between the two sides, so drift in the host's load falls on both.

import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Sandbox } from 'e2b';
import { aivaUpForSdk, benchScratch } from './aiva-up.js';
import { type Benchmark, quantile, round } from './bench.js';

const ROUNDS = 400;

const median = (xs: number[]) =>
  round(
    quantile(
      [...xs].sort((a, b) => a - b),
      0.5,
    ),
    3,
  );

async function timed(url: string, key: string, method = 'GET', body?: unknown): Promise<number> {
  const t = performance.now();
  const r = await fetch(url, {
    method,
    headers: { 'x-api-key': key, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  await r.arrayBuffer();
  if (!r.ok) throw new Error(`${method} ${url}: ${r.status}`);
  return performance.now() - t;
}

export const accountingBenchmark: Benchmark = {
  name: 'accounting',
  description:
    'per-request cost of accounting: a read with a per-key token bucket vs without; a mutating call (audit row) vs a read of the same sandbox',
  async run() {
    const scratch = await benchScratch('accounting');
    const server = await aivaUpForSdk(join(scratch, 'home'), ['--runtime', 'container']);
    try {
      const made = await fetch(`${server.url}/v1/teams`, {
        method: 'POST',
        headers: { 'x-api-key': server.apiKey, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'rated', quota: { requestsPerSecond: 1_000_000 } }),
      });
      if (made.status !== 201) throw new Error(`POST /v1/teams: ${made.status} ${await made.text()}`);
      const rated = (await made.json()) as { key: string };
      const plain: number[] = [];
      const bucket: number[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        plain.push(await timed(`${server.url}/v2/sandboxes`, server.apiKey));
        bucket.push(await timed(`${server.url}/v2/sandboxes`, rated.key));
      }
      const sbx = await Sandbox.create({ timeoutMs: 600_000 });
      const read: number[] = [];
      const audited: number[] = [];
      try {
        const at = `${server.url}/sandboxes/${sbx.sandboxId}`;
        for (let i = 0; i < ROUNDS; i++) {
          read.push(await timed(at, server.apiKey));
          audited.push(await timed(`${at}/timeout`, server.apiKey, 'POST', { timeout: 600 }));
        }
      } finally {
        await sbx.kill();
      }
      const detail = `median of ${ROUNDS}, alternating, sequential, on loopback`;
      return {
        rows: [
          { metric: 'read, team without a rate', value: median(plain), unit: 'ms', detail },
          { metric: 'read, key with a token bucket', value: median(bucket), unit: 'ms', detail },
          {
            metric: 'bucket / no bucket',
            value: round(median(bucket) / median(plain), 2),
            unit: 'ratio',
          },
          { metric: 'GET /sandboxes/{id}', value: median(read), unit: 'ms', detail },
          { metric: 'POST /sandboxes/{id}/timeout (audited)', value: median(audited), unit: 'ms', detail },
          {
            metric: 'audited mutation / read',
            value: round(median(audited) / median(read), 2),
            unit: 'ratio',
          },
        ],
        environment: { database: 'PGlite (embedded)', driver: 'container' },
        notes: [
          'The mutation also updates the sandbox row and its end time on the node; the audit row is one insert of it.',
        ],
      };
    } finally {
      await server.stop();
      await rm(scratch, { recursive: true, force: true });
    }
  },
};
