import { useRef } from 'preact/hooks';

export interface KeyValueRow {
  key: string;
  value: string;
}

/**
 * Rows of key and value inputs (env vars, metadata) with a button to add a row and one to
 * remove each; every input is labelled with the list's name and its row's number.
 */
export function KeyValueRows(props: {
  /** The list's name, e.g. "Environment variable" (labels: "Environment variable 1 name"). */
  name: string;
  /** Its legend, e.g. "Environment variables". */
  legend: string;
  rows: KeyValueRow[];
  onChange: (rows: KeyValueRow[]) => void;
  keyPlaceholder?: string;
}) {
  const list = useRef<HTMLDivElement>(null);
  const set = (i: number, change: Partial<KeyValueRow>) =>
    props.onChange(props.rows.map((r, j) => (j === i ? { ...r, ...change } : r)));
  const add = () => {
    props.onChange([...props.rows, { key: '', value: '' }]);
    // Focus the new row's key once it is there.
    setTimeout(() => list.current?.querySelector<HTMLInputElement>('.kv-row:last-child input')?.focus(), 0);
  };
  return (
    <fieldset class="kv">
      <legend>{props.legend}</legend>
      <div ref={list}>
        {props.rows.map((r, i) => (
          <div class="kv-row" key={i}>
            <input
              aria-label={`${props.name} ${i + 1} name`}
              placeholder={props.keyPlaceholder ?? 'name'}
              value={r.key}
              onInput={(e) => set(i, { key: (e.currentTarget as HTMLInputElement).value })}
            />
            <input
              aria-label={`${props.name} ${i + 1} value`}
              placeholder="value"
              value={r.value}
              onInput={(e) => set(i, { value: (e.currentTarget as HTMLInputElement).value })}
            />
            <button
              type="button"
              aria-label={`Remove ${props.name.toLowerCase()} ${i + 1}`}
              onClick={() => props.onChange(props.rows.filter((_, j) => j !== i))}
            >
              Remove
            </button>
          </div>
        ))}
      </div>
      <button type="button" onClick={add}>
        Add {props.name.toLowerCase()}
      </button>
    </fieldset>
  );
}

/** The rows as a record; rows with neither key nor value are skipped, a value without a key is an error. */
export function recordOf(name: string, rows: KeyValueRow[]): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  for (const [i, r] of rows.entries()) {
    const key = r.key.trim();
    if (!key && !r.value) continue;
    if (!key) throw new Error(`${name} ${i + 1} has a value but no name`);
    if (key in out) throw new Error(`${name} ${i + 1}: ${key} is given twice`);
    out[key] = r.value;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}
