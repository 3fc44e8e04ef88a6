import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { stripVTControlCharacters } from 'node:util';
import { createLogger } from '../src/logger.js';

function capture() {
  const lines: string[] = [];
  return { lines, destination: { write: (s: string) => lines.push(s) } };
}

describe('createLogger', () => {
  it('writes JSON lines when not on a terminal', () => {
    const out = capture();
    const log = createLogger({ level: 'info', pretty: false, destination: out.destination });
    log.child({ component: 'node' }).info({ sandbox: 'abc' }, 'created');
    log.debug('not at this level');
    assert.equal(out.lines.length, 1);
    const entry = JSON.parse(out.lines[0] ?? '');
    assert.equal(entry.msg, 'created');
    assert.equal(entry.component, 'node');
    assert.equal(entry.sandbox, 'abc');
    assert.equal(entry.level, 30);
    assert.equal(entry.pid, process.pid);
  });

  it('writes readable lines on a terminal, at once', () => {
    const out = capture();
    const log = createLogger({ level: 'info', pretty: true, destination: out.destination });
    log.child({ component: 'node' }).warn({ sandbox: 'abc' }, 'careful');
    log.error({ err: new Error('boom') }, 'failed');
    // Written synchronously: nothing is lost if the process exits right after.
    assert.equal(out.lines.length, 2);
    const text = stripVTControlCharacters(out.lines.join(''));
    assert.match(text, /^\[\d\d:\d\d:\d\d\.\d{3}\] WARN: careful\n/);
    assert.match(text, /component: "node"/);
    assert.match(text, /sandbox: "abc"/);
    assert.match(text, /ERROR: failed\n[\s\S]*Error: boom/);
    assert.doesNotMatch(text, /"level":/);
  });
});
