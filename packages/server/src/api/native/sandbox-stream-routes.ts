import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { LiveSandbox } from '../../services/live-sandboxes.js';
import type { SandboxService } from '../../services/sandbox-service.js';
import type { TeamService } from '../../services/team-service.js';
import { callerOf } from '../authenticate.js';
import type { ListedSandbox } from '../e2b/schemas.js';

/** How often the live index is looked at for a change of the team's sandboxes. */
const SAMPLE_MS = 500;
/** How often a comment keeps the connection open, and the credential is checked again. */
const HEARTBEAT_MS = 15_000;
/** At most this many sandboxes (newest first) in one list. */
const MAX_LISTED = 1000;

/** What the list shows of the team's sandboxes changes only if this does: ids, states, ends. */
function fingerprint(live: Iterable<LiveSandbox>, teamId: string | undefined): string {
  const parts: string[] = [];
  for (const s of live)
    if (teamId === undefined || s.teamId === teamId) parts.push(`${s.id}:${s.state}:${s.endAt}`);
  return parts.sort().join(',');
}

/**
 * `GET /v1/sandboxes/stream`: server-sent events for the web console (and any script).
 * Each `sandboxes` event is the team's whole list of running and paused sandboxes, as `GET
 * /v2/sandboxes` gives it (newest first): one on connect, and one whenever a sandbox of the
 * team starts, pauses, resumes, ends or has its timeout changed. The live index (which
 * replicas keep in step with each other) is sampled every 500 ms, and the list read from
 * the database only when it changed. Every 15 s a comment keeps the connection open and
 * the caller's key or console session is checked again: once it is gone, the stream ends.
 */
export function registerSandboxStreamRoutes(
  app: FastifyInstance,
  sandboxes: SandboxService,
  teams: TeamService,
): void {
  app.get(
    '/v1/sandboxes/stream',
    {
      schema: {
        tags: ['sandboxes (aiva)'],
        summary:
          'Server-sent events: the team’s running and paused sandboxes (event `sandboxes`, data: the list), sent on connect and on every change',
        produces: ['text/event-stream'],
        querystring: Type.Object({
          teams: Type.Optional(
            Type.Literal('all', {
              description: 'the operator only: every team’s sandboxes, each with its teamID (403 for others)',
            }),
          ),
        }),
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      const everyTeam = (request.query as { teams?: 'all' }).teams === 'all';
      if (everyTeam) await teams.requireOperator(caller, 'see every team’s sandboxes');
      const teamId = everyTeam ? undefined : caller.teamId;
      const res = reply.raw;
      reply.hijack();
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        'x-accel-buffering': 'no',
      });
      res.write('retry: 2000\n\n');
      let last: string | undefined;
      let reading = false;
      let closed = false;
      const sample = async () => {
        if (reading || closed) return;
        const now = fingerprint(sandboxes.liveSandboxes(), teamId);
        if (now === last) return;
        reading = true;
        try {
          const items: ListedSandbox[] = [];
          let nextToken: string | undefined;
          do {
            const page = await sandboxes.list(caller, { nextToken, limit: 100 }, everyTeam);
            items.push(...page.items);
            nextToken = page.nextToken;
          } while (nextToken && items.length < MAX_LISTED);
          last = now;
          if (!closed) res.write(`event: sandboxes\ndata: ${JSON.stringify(items)}\n\n`);
        } catch (e) {
          request.log.warn({ err: e }, 'sandbox stream: listing failed (tried again at the next sample)');
        } finally {
          reading = false;
        }
      };
      const sampler = setInterval(() => void sample(), SAMPLE_MS);
      const heartbeat = setInterval(async () => {
        if (request.stillAuthenticated && !(await request.stillAuthenticated())) {
          res.end('event: ended\ndata: "the key or console session is no longer valid"\n\n');
          return;
        }
        res.write(': keep-alive\n\n');
      }, HEARTBEAT_MS);
      res.on('close', () => {
        closed = true;
        clearInterval(sampler);
        clearInterval(heartbeat);
      });
      await sample();
    },
  );
}
