// Placement without a cluster: which nodes can take a sandbox, and in what order.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { NodeSnapshot } from '@aiva/protocol/node';
import { type PlacementCandidate, rankNodes } from '../src/nodes/placement.js';

function node(
  id: string,
  o: Partial<PlacementCandidate> & {
    freeDisk?: number;
    images?: string[];
    load?: number;
    checkpoints?: string[];
  } = {},
): PlacementCandidate {
  const snapshot: NodeSnapshot = {
    protocol: '1.0',
    nodeId: id,
    bootId: 'b',
    seq: 0,
    sentAt: new Date(0).toISOString(),
    versions: { aiva: '0.1.0' },
    drivers: ['container'],
    capacity: { cores: 4, memoryMiB: 8192, memoryBudgetMiB: 8000, diskMiB: 100_000 },
    free: { memAvailableMiB: 7000, diskFreeMiB: o.freeDisk ?? 50_000, load1: o.load ?? 0 },
    artefacts: { recipes: ['base'], images: o.images ?? [] },
    checkpoints: (o.checkpoints ?? []).map((name) => ({ name, memory: false, bytes: 1 })),
    sandboxes: [],
  };
  return { id, state: 'ready', labels: {}, snapshot, allocatedMiB: 0, ...o };
}

const req = { memoryMiB: 512, vcpus: 1 };

test('the node with the most memory left comes first; one with the image warm wins over a slightly emptier one', () => {
  const ranked = rankNodes(req, [node('a', { allocatedMiB: 4000 }), node('b', { allocatedMiB: 1000 })]);
  assert.ok(Array.isArray(ranked));
  assert.deepEqual(
    ranked.map((r) => r.id),
    ['b', 'a'],
  );
  const warm = rankNodes({ ...req, imageHash: 'img' }, [
    node('a', { allocatedMiB: 1500, images: ['img'] }),
    node('b', { allocatedMiB: 1000 }),
  ]);
  assert.ok(Array.isArray(warm));
  assert.equal(warm[0]?.id, 'a');
});

test('nodes that cannot take it are left out, and when none can the reasons are named', () => {
  const nodes = [
    node('full', { allocatedMiB: 7800 }),
    node('cordoned', { state: 'cordoned' }),
    node('gone', { state: 'unreachable' }),
    node('silent', { snapshot: undefined }),
    node('gpu', { labels: { gpu: 'yes' } }),
    node('cut', { connected: false }),
  ];
  assert.deepEqual(
    (rankNodes(req, nodes) as { id: string }[]).map((r) => r.id),
    ['gpu'],
  );
  const why = rankNodes({ ...req, labels: { zone: 'b' } }, nodes);
  assert.equal(typeof why, 'string');
  for (const part of [
    'full: lacks the label zone=b',
    'cordoned: cordoned',
    'gone: unreachable',
    'silent: has not reported yet',
    'gpu: lacks the label zone=b',
    'cut: has no tunnel to this server',
  ])
    assert.ok((why as string).includes(part), `${why} names ${part}`);
  assert.equal(rankNodes({ ...req, node: 'nope' }, nodes), 'there is no node nope');
  assert.equal(rankNodes({ ...req, node: 'cut' }, nodes), 'cut: has no tunnel to this server');
  assert.deepEqual(
    (rankNodes({ ...req, node: 'gpu' }, nodes) as { id: string }[]).map((r) => r.id),
    ['gpu'],
  );
  assert.equal(
    rankNodes(req, [node('full', { allocatedMiB: 7800 })]),
    'full: has 200 MiB of its memory budget left',
  );
  assert.match(rankNodes({ ...req, vcpus: 8 }, [node('a')]) as string, /a: has 4 cores/);
  assert.match(rankNodes({ ...req, recipe: 'desktop' }, [node('a')]) as string, /a: has no template desktop/);
  assert.equal(rankNodes(req, []), 'there are no nodes');
});

test('a create from a checkpoint goes to a node that holds it, else to any other that can take it', () => {
  const ids = (r: ReturnType<typeof rankNodes>) => (r as { id: string }[]).map((x) => x.id);
  const holder = node('holder', { allocatedMiB: 6000, load: 3, checkpoints: ['snap1'] });
  const empty = node('empty');
  assert.deepEqual(ids(rankNodes({ ...req, checkpoint: 'snap1' }, [empty, holder])), ['holder', 'empty']);
  // Its holder cordoned or full: another node takes it (and fetches the checkpoint).
  assert.deepEqual(
    ids(rankNodes({ ...req, checkpoint: 'snap1' }, [empty, { ...holder, state: 'cordoned' }])),
    ['empty'],
  );
  assert.deepEqual(
    ids(rankNodes({ ...req, checkpoint: 'snap1' }, [empty, { ...holder, allocatedMiB: 7900 }])),
    ['empty'],
  );
});
