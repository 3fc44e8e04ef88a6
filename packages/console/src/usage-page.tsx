import { useEffect, useState } from 'preact/hooks';
import { api, errorMessage } from './api.js';
import { bytes, num } from './format.js';

interface Sums {
  vcpuSeconds: number;
  memoryGiBSeconds: number;
  diskGiBSeconds: number;
  cpuSeconds: number;
  egressBytes: number;
  cost: number;
}
interface UsageItem extends Sums {
  teamID: string;
  sandboxID?: string;
  templateID?: string;
  day?: string;
}
interface UsageReport {
  from: string;
  to: string;
  groupBy: string;
  currency: string;
  items: UsageItem[];
  total: Sums & { grossCost: number; freeTier: number };
}
type GroupBy = 'sandbox' | 'template' | 'day';

/** `YYYY-MM-DD` of a date, UTC. */
function day(d: Date): string {
  return d.toISOString().slice(0, 10);
}

function firstOfMonth(): string {
  const now = new Date();
  return day(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)));
}

function money(n: number, currency: string): string {
  try {
    return n.toLocaleString(undefined, { style: 'currency', currency, maximumFractionDigits: 4 });
  } catch {
    return `${num(n, 4)} ${currency}`;
  }
}

/** The query of `GET /v1/usage` for whole UTC days from `from` through `to`. */
function usageQuery(from: string, to: string, groupBy: GroupBy): string {
  const end = new Date(`${to}T00:00:00Z`);
  end.setUTCDate(end.getUTCDate() + 1);
  return new URLSearchParams({ from: `${from}T00:00:00Z`, to: end.toISOString(), groupBy }).toString();
}

/**
 * The team's metered usage and its cost (aiva's `GET /v1/usage`) over the chosen days,
 * grouped by sandbox, template or day, as a table with its total; the same report as CSV.
 * The operator's key sees every team's usage: each row says whose.
 */
export function UsagePage(props: { operator: boolean }) {
  const [from, setFrom] = useState(firstOfMonth());
  const [to, setTo] = useState(day(new Date()));
  const [groupBy, setGroupBy] = useState<GroupBy>('sandbox');
  const [report, setReport] = useState<UsageReport>();
  const [error, setError] = useState<string>();
  const [loading, setLoading] = useState(false);

  const load = async () => {
    setError(undefined);
    if (!from || !to || from > to) return setError('Choose a range whose first day is not after its last.');
    setLoading(true);
    try {
      setReport(await api<UsageReport>('GET', `/v1/usage?${usageQuery(from, to, groupBy)}`));
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setLoading(false);
    }
  };
  useEffect(() => {
    void load();
  }, []);

  const key = (i: UsageItem) =>
    (groupBy === 'day' ? i.day : groupBy === 'template' ? i.templateID : i.sandboxID) ?? '—';
  const currency = report?.currency ?? 'USD';
  return (
    <section aria-labelledby="usage-title">
      <h1 id="usage-title">Usage and cost</h1>
      <form
        class="filters"
        aria-label="Range"
        onSubmit={(e) => {
          e.preventDefault();
          void load();
        }}
      >
        <label>
          From (UTC day)
          <input
            type="date"
            required
            value={from}
            onInput={(e) => setFrom((e.currentTarget as HTMLInputElement).value)}
          />
        </label>
        <label>
          Through (UTC day)
          <input
            type="date"
            required
            value={to}
            onInput={(e) => setTo((e.currentTarget as HTMLInputElement).value)}
          />
        </label>
        <label>
          Group by
          <select
            value={groupBy}
            onChange={(e) => setGroupBy((e.currentTarget as HTMLSelectElement).value as GroupBy)}
          >
            <option value="sandbox">sandbox</option>
            <option value="template">template</option>
            <option value="day">day</option>
          </select>
        </label>
        <div class="filters-actions">
          <button type="submit" class="primary" disabled={loading}>
            Show
          </button>
          <a
            class="button"
            href={`/v1/usage?${usageQuery(from, to, groupBy)}&format=csv`}
            download="usage.csv"
          >
            Download CSV
          </a>
        </div>
      </form>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {loading && !report && <p>Loading…</p>}
      {report && (
        <div class="table-wrap">
          <table>
            <caption>
              Usage from {new Date(report.from).toLocaleString()} to {new Date(report.to).toLocaleString()},
              by {report.groupBy}
            </caption>
            <thead>
              <tr>
                {props.operator && <th scope="col">Team</th>}
                <th scope="col">
                  {report.groupBy === 'day' ? 'Day' : report.groupBy === 'template' ? 'Template' : 'Sandbox'}
                </th>
                <th scope="col" class="num">
                  vCPU-seconds
                </th>
                <th scope="col" class="num">
                  CPU seconds used
                </th>
                <th scope="col" class="num">
                  Memory GiB-seconds
                </th>
                <th scope="col" class="num">
                  Disk GiB-seconds
                </th>
                <th scope="col" class="num">
                  Egress
                </th>
                <th scope="col" class="num">
                  Cost
                </th>
              </tr>
            </thead>
            <tbody>
              {report.items.length === 0 && (
                <tr>
                  <td colSpan={props.operator ? 8 : 7} class="empty">
                    No usage in this range.
                  </td>
                </tr>
              )}
              {report.items.map((i) => (
                <tr key={`${i.teamID}/${key(i)}`}>
                  {props.operator && (
                    <td>
                      <code>{i.teamID}</code>
                    </td>
                  )}
                  <th scope="row">
                    <code>{key(i)}</code>
                  </th>
                  <td class="num">{num(i.vcpuSeconds, 1)}</td>
                  <td class="num">{num(i.cpuSeconds, 1)}</td>
                  <td class="num">{num(i.memoryGiBSeconds, 1)}</td>
                  <td class="num">{num(i.diskGiBSeconds, 1)}</td>
                  <td class="num">{bytes(i.egressBytes)}</td>
                  <td class="num">{money(i.cost, currency)}</td>
                </tr>
              ))}
            </tbody>
            <tfoot>
              <tr>
                {props.operator && <td />}
                <th scope="row">Total</th>
                <td class="num">{num(report.total.vcpuSeconds, 1)}</td>
                <td class="num">{num(report.total.cpuSeconds, 1)}</td>
                <td class="num">{num(report.total.memoryGiBSeconds, 1)}</td>
                <td class="num">{num(report.total.diskGiBSeconds, 1)}</td>
                <td class="num">{bytes(report.total.egressBytes)}</td>
                <td class="num">
                  {money(report.total.cost, currency)}
                  {report.total.freeTier > 0 && (
                    <div class="muted">
                      {money(report.total.grossCost, currency)} less {money(report.total.freeTier, currency)}{' '}
                      free
                    </div>
                  )}
                </td>
              </tr>
            </tfoot>
          </table>
        </div>
      )}
    </section>
  );
}
