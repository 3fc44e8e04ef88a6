// The server ↔ node contract without a node: which commands and results it allows, how
// versions meet, and what an error code carries.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Value } from 'typebox/value';
import {
  commandProblem,
  NODE_COMMANDS,
  NodeCommandError,
  NodeCommandOutcomeSchema,
  newSandboxId,
  parseProtocol,
  protocolCompatible,
  resultProblem,
  SANDBOX_ID_PATTERN,
} from '../src/node/index.js';

const command = (kind: string, payload: unknown) => ({
  id: 'c0ffee00-0000-4000-8000-000000000001',
  kind,
  issuedAt: '2026-11-29T12:00:00.000Z',
  payload,
});

test('every command kind checks its payload; unknown kinds and fields are told apart', () => {
  assert.equal(commandProblem(command('sandbox.kill', { sandboxId: 'abc123' })), undefined);
  // A field this side does not know is ignored (added within a major version).
  assert.equal(commandProblem(command('sandbox.kill', { sandboxId: 'abc123', later: 1 })), undefined);
  assert.match(commandProblem(command('sandbox.kill', { sandboxId: 'A/B' })) ?? '', /sandboxId/);
  assert.match(commandProblem(command('sandbox.kill', {})) ?? '', /sandbox.kill/);
  assert.match(
    commandProblem(command('sandbox.teleport', {})) ?? '',
    /unknown command kind "sandbox.teleport"/,
  );
  assert.match(commandProblem({ kind: 'sandbox.kill' }) ?? '', /not a command/);
  assert.match(
    commandProblem(command('sandbox.checkpoint', { sandboxId: 'a', name: '../etc' })) ?? '',
    /name/,
  );
  const create = {
    sandboxId: newSandboxId(),
    template: {
      name: 'app',
      layers: ['aa', 'bb'],
      diskSizeMiB: 2048,
      defaults: { user: 'user', workdir: '/home/user', vcpus: 2, memoryMiB: 512 },
      start: { cmd: 'npm start', ready: 'curl -fs localhost:3000' },
    },
    accessToken: 't',
    envVars: { A: '1' },
    network: { allowOut: ['10.0.0.0/8'], allowInternetAccess: false },
  };
  assert.equal(commandProblem(command('sandbox.create', create)), undefined);
  assert.match(commandProblem(command('sandbox.create', { ...create, envVars: { A: 1 } })) ?? '', /envVars/);
  // Layers are named by their hashes, never by a path.
  const layer = 'ab'.repeat(32);
  assert.equal(commandProblem(command('artefact.push', { layers: [layer] })), undefined);
  assert.equal(commandProblem(command('artefact.fetch', { layers: [layer] })), undefined);
  assert.match(commandProblem(command('artefact.fetch', { layers: ['../../etc'] })) ?? '', /layers/);
  // Checkpoints are named as a node's checkpoint store names them, never by a path.
  assert.equal(commandProblem(command('artefact.push', { layers: [], checkpoints: ['isnap1'] })), undefined);
  assert.equal(
    commandProblem(command('artefact.fetch', { layers: [], checkpoints: ['fork-a1'] })),
    undefined,
  );
  assert.match(
    commandProblem(command('artefact.fetch', { layers: [], checkpoints: ['../snap'] })) ?? '',
    /checkpoints/,
  );
  assert.match(
    commandProblem(command('artefact.push', { layers: [layer], checkpoints: [] })) ?? '',
    /checkpoints/,
  );
  assert.equal(commandProblem(command('sandbox.create', { ...create, buildLayers: true })), undefined);
  // Every kind has a payload and a result schema.
  for (const [kind, c] of Object.entries(NODE_COMMANDS)) assert.ok(c.payload && c.result, kind);
});

test('results are checked against their kind; an outcome is data or a coded failure', () => {
  const sandbox = {
    id: 'a',
    state: 'running',
    vcpus: 2,
    memoryMiB: 512,
    diskMiB: 2048,
    envdVersion: '0.2.0',
  };
  assert.equal(resultProblem('sandbox.create', sandbox), undefined);
  assert.match(resultProblem('sandbox.create', { ...sandbox, state: 'asleep' }) ?? '', /state/);
  assert.match(resultProblem('sandbox.kill', {}) ?? '', /existed/);
  assert.ok(Value.Check(NodeCommandOutcomeSchema, { commandId: 'x', ok: true, data: sandbox }));
  assert.ok(
    Value.Check(NodeCommandOutcomeSchema, {
      commandId: 'x',
      ok: false,
      error: {
        code: 'INVALID_STATE',
        message: 'sandbox a is paused: cannot pause it',
        details: { state: 'paused' },
      },
    }),
  );
  assert.ok(
    !Value.Check(NodeCommandOutcomeSchema, {
      commandId: 'x',
      ok: false,
      error: { code: 'OOPS', message: '' },
    }),
  );
});

test('versions meet when their majors are equal; an error keeps its code through JSON', () => {
  assert.deepEqual(parseProtocol('1.3'), { major: 1, minor: 3 });
  assert.equal(parseProtocol('1'), undefined);
  assert.equal(parseProtocol(undefined), undefined);
  assert.ok(protocolCompatible({ major: 1, minor: 0 }, { major: 1, minor: 7 }));
  assert.ok(!protocolCompatible({ major: 1, minor: 0 }, { major: 2, minor: 0 }));
  const e = new NodeCommandError({ code: 'NO_CAPACITY', message: 'no addresses left', retryable: true });
  const back = new NodeCommandError(JSON.parse(JSON.stringify(e.toFailure())));
  assert.deepEqual([back.code, back.message, back.retryable], ['NO_CAPACITY', 'no addresses left', true]);
  const ids = new Set(Array.from({ length: 1000 }, newSandboxId));
  assert.equal(ids.size, 1000);
  for (const id of ids) assert.match(id, SANDBOX_ID_PATTERN);
});
