// The control plane's rules without a server: each domain and node error's status code and
// body, the state transitions the control plane allows, what a row keeps of each end
// reason, and what an end time asks for.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  BuildStepError,
  failureOf,
  SandboxNotFoundError,
  SandboxSpecError,
  SandboxStateError,
} from '@aiva/node';
import { NodeCommandError } from '@aiva/protocol/node';
import { ApiError, errorBody, knownErrorReply } from '../src/api/errors.js';
import { domainError } from '../src/nodes/node-client.js';
import * as errors from '../src/services/errors.js';
import type { LiveSandbox } from '../src/services/live-sandboxes.js';
import { expiryAction } from '../src/services/sandbox-expiry.js';
import { apiState, ending, type SandboxState, transition } from '../src/services/sandbox-states.js';

test('each error maps to its status code, its own message and its headers', () => {
  const cases: [Error, number, Record<string, string>?][] = [
    [new errors.InvalidRequestError('bad'), 400],
    [new ApiError(401, 'missing API key'), 401],
    [new errors.ForbiddenError('operator only'), 403],
    [new errors.NotFoundError('sandbox x not found'), 404],
    [new errors.ConflictError('taken'), 409],
    [new errors.InvalidStateError('sandbox x is already paused'), 409],
    [new errors.TeamLimitError('your team already runs 4 sandboxes'), 429, { 'retry-after': '1' }],
    [
      new errors.TeamLimitError('your team may create 5 a minute', 'creates', 42),
      429,
      { 'retry-after': '42' },
    ],
    [new errors.OperationFailedError('the sandbox could not start', new Error('kaboom\nstack')), 500],
    [new errors.CapacityError('no capacity'), 503],
  ];
  for (const [error, code, headers = {}] of cases) {
    assert.deepEqual(knownErrorReply(error), { code, message: error.message, headers }, error.name);
    assert.deepEqual(errorBody(error), { code, message: error.message });
  }
  assert.equal(
    new errors.OperationFailedError('the sandbox could not start', new Error('kaboom\nstack')).message,
    'the sandbox could not start: kaboom',
  );
  assert.equal(new errors.NotFoundError('x').name, 'NotFoundError');
  // Anything else is no known kind: the handler hides it, a fork's result says it.
  assert.equal(knownErrorReply(new Error('ENOSPC')), undefined);
  assert.deepEqual(errorBody(new Error('ENOSPC')), { code: 500, message: 'ENOSPC' });
});

test("a node's errors cross the contract as codes and become the domain errors of their status", () => {
  const cases: [Error, number | undefined][] = [
    [new SandboxSpecError('bad spec'), 400],
    [new SandboxNotFoundError('x'), 404],
    [new SandboxStateError('x', 'paused', 'pause'), 409],
    [new Error('disk full'), undefined],
  ];
  for (const [nodeError, code] of cases) {
    // What the node sends is plain JSON; what the server makes of it keeps the message.
    const failure = JSON.parse(JSON.stringify(failureOf(nodeError)));
    const error = domainError(failure);
    assert.equal(error.message, nodeError.message, nodeError.name);
    assert.equal(knownErrorReply(error)?.code, code, nodeError.name);
  }
  assert.deepEqual(failureOf(new SandboxStateError('x', 'paused', 'pause')).details, {
    state: 'paused',
    operation: 'pause',
  });
  assert.ok(domainError(failureOf(new Error('disk full'))) instanceof NodeCommandError);
  // A build step's failure keeps its step and the layers its earlier steps made.
  const step = new BuildStepError('3', 'RUN false: exit 1');
  step.layers = ['aa', 'bb'];
  const built = domainError(JSON.parse(JSON.stringify(failureOf(step))));
  assert.ok(built instanceof errors.BuildStepFailedError);
  assert.deepEqual([built.step, built.layers, built.message], ['3', ['aa', 'bb'], 'RUN false: exit 1']);
});

test('transitions: creating → running ⇄ paused, any live state → killed | error, nothing after an end', () => {
  const states: SandboxState[] = ['creating', 'running', 'paused', 'killed', 'error'];
  const allowed = new Set([
    'creating>running',
    'creating>killed',
    'creating>error',
    'running>paused',
    'running>killed',
    'running>error',
    'paused>running',
    'paused>killed',
    'paused>error',
  ]);
  for (const from of states)
    for (const to of states) {
      if (allowed.has(`${from}>${to}`)) assert.equal(transition('x', from, to), to);
      else assert.throws(() => transition('x', from, to), errors.InvalidStateError, `${from} > ${to}`);
    }
  assert.throws(() => transition('x', 'paused', 'paused'), { message: 'sandbox x is already paused' });
  assert.equal(apiState('paused'), 'paused');
  assert.equal(apiState('running'), 'running');
});

test('an end reason decides the state and error text of the row', () => {
  assert.deepEqual(ending('killed'), { state: 'killed', error: null });
  assert.deepEqual(ending('timeout'), { state: 'killed', error: 'timeout' });
  assert.deepEqual(ending('shutdown'), { state: 'killed', error: 'server shut down' });
  assert.deepEqual(ending('lost'), { state: 'killed', error: 'lost when the server restarted' });
  assert.deepEqual(ending('lost', 'the VM exited'), { state: 'killed', error: 'the VM exited' });
  assert.deepEqual(ending('failed', 'the process died'), { state: 'error', error: 'the process died' });
});

test('an end time ends a sandbox, or pauses it with autoPause; creating and paused ones wait', () => {
  const s = (state: LiveSandbox['state'], onTimeout: 'kill' | 'pause', endAt = 1000): LiveSandbox => ({
    id: 'x',
    teamId: 't',
    nodeId: 'local',
    envdAccessToken: 'token',
    state,
    endAt,
    onTimeout,
    memoryMb: 512,
    allowPublicTraffic: true,
    autoResume: false,
    httpsPorts: [],
    autoPauseMemory: true,
  });
  assert.equal(expiryAction(s('running', 'kill', 2000), 1000), undefined);
  assert.equal(expiryAction(s('running', 'kill'), 1000), 'end');
  assert.equal(expiryAction(s('paused', 'kill'), 1000), 'end');
  assert.equal(expiryAction(s('creating', 'kill'), 1000), undefined);
  assert.equal(expiryAction(s('running', 'pause'), 1000), 'pause');
  assert.equal(expiryAction(s('paused', 'pause'), 1000), undefined);
});
