// Named environments' records on both databases the server runs on (PGlite, and a
// PostgreSQL 15 of the test's own): init makes the environment and its volume (a taken or
// invalid name refused, nothing made), settings are set and unset (unknown keys and bad
// values refused), another team sees none of it, rm removes the volume's row and
// directory. Starting one needs a node (packages/cli's cli-environments test does that).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { checkHostLeaks } from '@aiva/node/testkit';
import { pino } from 'pino';
import { createServerMetrics } from '../src/metrics/server-metrics.js';
import { Nodes } from '../src/nodes/nodes.js';
import { EnvironmentPorts } from '../src/services/environment-ports.js';
import { EnvironmentService } from '../src/services/environment-service.js';
import { parsePorts } from '../src/services/environment-settings.js';
import { ConflictError, InvalidRequestError, NotFoundError } from '../src/services/errors.js';
import { SandboxService } from '../src/services/sandbox-service.js';
import { TeamQuotas } from '../src/services/team-quotas.js';
import type { Caller } from '../src/services/team-service.js';
import { TemplateCatalog } from '../src/services/template-catalog.js';
import type { VolumeService } from '../src/services/volume-service.js';
import { BACKENDS, type TestDatabase } from './helpers/test-databases.js';
import { openVolumeFixture, type VolumeFixture } from './helpers/volume-fixture.js';

const logger = pino({ level: 'silent' });

// Volume images are loop mounts on this host: none may outlive the file, even when a test fails.
checkHostLeaks();

for (const backend of BACKENDS)
  describe(`environments on ${backend}`, () => {
    let db: TestDatabase;
    let home: string;
    let envs: EnvironmentService;
    let volumes: VolumeService;
    let fixture: VolumeFixture;
    let caller: Caller;
    let other: Caller;

    before(async () => {
      fixture = await openVolumeFixture(backend, 'aiva-envs', logger);
      ({ db, home, volumes, caller, other } = fixture);
      const metrics = createServerMetrics();
      const nodes = new Nodes();
      const templates = new TemplateCatalog(db.database.db, nodes);
      const sandboxes = new SandboxService({
        db: db.database.db,
        nodes,
        logger,
        metrics,
        limits: { maxSandboxes: 10, memoryBudgetMiB: 10_000, maxSandboxesPerTeam: 10 },
        quotas: new TeamQuotas(db.database.db, metrics.quotaRejections, 10),
        templates,
        volumes,
      });
      envs = new EnvironmentService(
        db.database.db,
        sandboxes,
        volumes,
        templates,
        new EnvironmentPorts(logger),
        logger,
      );
    });
    after(async () => {
      await envs?.close();
      await fixture?.close();
    });

    test('init makes the environment and its volume; a taken or invalid name makes nothing', async () => {
      const env = await envs.init(caller, { name: 'web-1', template: 'base', cpus: 1, memoryMb: 512 });
      assert.equal(env.state, 'stopped');
      assert.equal(env.sandboxID, null);
      assert.equal(env.settings.memory, '512');
      const [volume] = await volumes.list(caller);
      assert.equal(volume?.name, 'web-1');
      assert.equal(volume?.id, env.volumeID);
      assert.ok(existsSync(join(home, 'volumes', env.volumeID)));

      await assert.rejects(envs.init(caller, { name: 'web-1', template: 'base' }), ConflictError);
      await assert.rejects(envs.init(caller, { name: 'Web_1', template: 'base' }), {
        name: 'InvalidRequestError',
        message: /environment name "Web_1" is not valid/,
      });
      await assert.rejects(
        envs.init(caller, { name: 'x'.repeat(64), template: 'base' }),
        InvalidRequestError,
      );
      // A volume of the name is taken: the environment is not made either.
      await volumes.create(caller, 'taken');
      await assert.rejects(envs.init(caller, { name: 'taken', template: 'base' }), {
        name: 'ConflictError',
        message: /a volume named "taken" already exists/,
      });
      assert.deepEqual(
        (await envs.list(caller)).map((e) => e.name),
        ['web-1'],
      );
      assert.equal((await volumes.list(caller)).length, 2);
      // Another team's environment of the same name is its own.
      assert.deepEqual(await envs.list(other), []);
      await assert.rejects(envs.get(other, 'web-1'), NotFoundError);
    });

    test('settings are set and unset; unknown keys and bad values are refused', async () => {
      let env = await envs.configure(
        caller,
        'web-1',
        { 'env.FOO': 'bar', restart: 'always', ports: '8080:80' },
        [],
      );
      assert.equal(env.settings['env.FOO'], 'bar');
      assert.equal(env.settings.restart, 'always');
      assert.equal(env.settings.ports, '127.0.0.1:8080:80');
      env = await envs.configure(caller, 'web-1', {}, ['env.FOO', 'memory', 'ports']);
      assert.equal(env.settings['env.FOO'], undefined);
      assert.equal(env.settings.memory, '');
      assert.equal(env.settings.ports, '');
      await assert.rejects(envs.configure(caller, 'web-1', { colour: 'blue' }, []), {
        message: /unknown setting "colour"/,
      });
      await assert.rejects(envs.configure(caller, 'web-1', { cpus: 'two' }, []), {
        message: /cpus must be a whole number/,
      });
      await assert.rejects(
        envs.configure(caller, 'web-1', { restart: 'sometimes' }, []),
        InvalidRequestError,
      );
      assert.deepEqual(parsePorts(['0.0.0.0:80:8080', '[::1]:81:8081']), [
        { bind: '0.0.0.0', host: 80, guest: 8080 },
        { bind: '::1', host: 81, guest: 8081 },
      ]);
      assert.throws(() => parsePorts(['8080:80', '8080:81']), /given twice/);
      assert.throws(() => parsePorts(['70000:80']), InvalidRequestError);
      // Nothing was half-changed by the refused ones.
      assert.equal((await envs.get(caller, 'web-1')).settings.restart, 'always');
    });

    test('deploy and logs need a running environment; rm removes it and its volume', async () => {
      await assert.rejects(envs.deploy(caller, 'web-1', { cmd: 'true' }), {
        name: 'InvalidStateError',
        message: /is not running/,
      });
      await assert.rejects(envs.logs(caller, 'web-1', {}), { name: 'InvalidStateError' });
      const { volumeID } = await envs.get(caller, 'web-1');
      await envs.remove(caller, 'web-1');
      await assert.rejects(envs.get(caller, 'web-1'), NotFoundError);
      assert.ok(!existsSync(join(home, 'volumes', volumeID)));
      assert.deepEqual(
        (await volumes.list(caller)).map((v) => v.name),
        ['taken'],
      );
      await assert.rejects(envs.remove(caller, 'web-1'), NotFoundError);
    });
  });
