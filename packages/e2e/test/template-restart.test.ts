// A template build that a server crash interrupts: after the restart the build is an
// error that says so, its build sandbox and half-made layer are gone, and the template
// builds again.
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Template } from 'e2b';
import { type AivaUp, aivaUp, removeHome, useServer } from './helpers/aiva-up.js';
import { checkHostLeaks } from './helpers/host-leaks.js';

let first: AivaUp | undefined;
let second: AivaUp | undefined;
after(async () => {
  await first?.crash();
  const code = await second?.stop();
  if (first) await removeHome(first.home);
  if (second) assert.equal(code, 0, second.output());
});
checkHostLeaks();

async function statusOf(build: { templateId: string; buildId: string }) {
  return Template.getBuildStatus(build);
}

test('a build interrupted by a server crash ends as an error, and nothing of it is left', {
  timeout: 600_000,
}, async () => {
  first = await aivaUp();
  useServer(first);
  const token = Math.random().toString(36).slice(2);
  const slow = Template().fromTemplate('base').runCmd(`echo ${token} > /home/user/token.txt && sleep 600`);
  const build = await Template.buildInBackground(slow, 'crashed-build');
  let status = await statusOf(build);
  for (let i = 0; i < 600 && !status.logEntries.some((l) => l.message.includes(token)); i++) {
    await new Promise((r) => setTimeout(r, 100));
    status = await statusOf({ ...build });
    if (status.status !== 'building') break;
  }
  // The step runs (its command is in the log) when the server dies.
  assert.equal(status.status, 'building');
  await first.crash();

  second = await aivaUp([], { home: first.home });
  useServer(second);
  const after = await statusOf(build);
  assert.equal(after.status, 'error');
  assert.match(after.reason?.message ?? '', /the server restarted during the build/);
  // The build sandbox was killed (the leak check after the file also looks) and its
  // unfinished layer removed when the node opened.
  assert.deepEqual(await readdir(join(second.home, 'sandboxes')).catch(() => []), []);
  const tmp = await readdir(join(second.home, 'images', 'tmp')).catch(() => [] as string[]);
  assert.deepEqual(
    tmp.filter((n) => n.startsWith('layer-')),
    [],
  );

  const fixed = Template().fromTemplate('base').runCmd(`echo ${token} > /home/user/token.txt`);
  await Template.build(fixed, 'crashed-build');
  const res = await fetch(`${second.url}/templates/crashed-build`, {
    method: 'DELETE',
    headers: { 'x-api-key': second.apiKey },
  });
  assert.equal(res.status, 204);
});
