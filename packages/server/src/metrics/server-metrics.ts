import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { CreateLog } from './create-log.js';

/** The Prometheus metrics the server exports on GET /metrics. */
export interface ServerMetrics {
  registry: Registry;
  sandboxes: Gauge<'state'>;
  createSeconds: Histogram;
  /** The recent creates with their times (the histogram has none), for `GET /v1/sandboxes/stats`. */
  createLog: CreateLog;
  httpSeconds: Histogram<'method' | 'route' | 'status'>;
  proxiedRequests: Counter<'port_kind' | 'outcome'>;
  /** Metered usage, as the usage records add it up (`services/usage-meter.ts`). */
  usageVcpuSeconds: Counter<'team'>;
  usageMemoryGibSeconds: Counter<'team'>;
  usageEgressBytes: Counter<'team'>;
  webhookAttempts: Counter<'outcome'>;
  lifetimes: Histogram<'reason'>;
  quotaRejections: Counter<'team' | 'kind'>;
}

export function createServerMetrics(): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'aiva_process_' });
  return {
    registry,
    sandboxes: new Gauge({
      name: 'aiva_sandboxes',
      help: 'Sandboxes by state',
      labelNames: ['state'],
      registers: [registry],
    }),
    createSeconds: new Histogram({
      name: 'aiva_sandbox_create_seconds',
      help: 'Time from a create request to a sandbox whose envd answers',
      buckets: [0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 30, 60],
      registers: [registry],
    }),
    createLog: new CreateLog(),
    httpSeconds: new Histogram({
      name: 'aiva_http_request_seconds',
      help: 'API request latency (not proxied sandbox traffic)',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      registers: [registry],
    }),
    proxiedRequests: new Counter({
      name: 'aiva_proxy_requests_total',
      help: 'Requests to sandboxes through the proxy, by port kind (envd, other) and outcome',
      labelNames: ['port_kind', 'outcome'],
      registers: [registry],
    }),
    usageVcpuSeconds: new Counter({
      name: 'aiva_usage_vcpu_seconds_total',
      help: 'Allocated vCPU-seconds of running sandboxes, by team, as metered (by the leader replica)',
      labelNames: ['team'],
      registers: [registry],
    }),
    usageMemoryGibSeconds: new Counter({
      name: 'aiva_usage_memory_gib_seconds_total',
      help: 'Allocated memory GiB-seconds of running sandboxes, by team, as metered (by the leader replica)',
      labelNames: ['team'],
      registers: [registry],
    }),
    usageEgressBytes: new Counter({
      name: 'aiva_usage_egress_bytes_total',
      help: 'Bytes sandboxes sent out of their hosts, by team, as metered (by the leader replica)',
      labelNames: ['team'],
      registers: [registry],
    }),
    lifetimes: new Histogram({
      name: 'aiva_sandbox_lifetime_seconds',
      help: 'How long sandboxes lived, from ready to their end, by end reason (killed, timeout, failed, node-lost …)',
      labelNames: ['reason'],
      buckets: [1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600],
      registers: [registry],
    }),
    webhookAttempts: new Counter({
      name: 'aiva_webhook_attempts_total',
      help: 'Webhook delivery attempts by outcome: delivered, retry (failed, to be tried again), failed (given up)',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    quotaRejections: new Counter({
      name: 'aiva_quota_rejections_total',
      help: 'Requests refused with 429 past a team quota, by team and kind (sandboxes, vcpus, memory, disk, creates, requests)',
      labelNames: ['team', 'kind'],
      registers: [registry],
    }),
  };
}
