/** Shared display helpers for the resource pages. */

/** A date-time as the reader's locale shows it, in a <time> element's text. */
export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

/** MiB as MiB or GiB. */
export function mib(n: number | null | undefined): string {
  if (n === null || n === undefined || n === 0) return '—';
  return n >= 1024 ? `${(n / 1024).toFixed(n % 1024 === 0 ? 0 : 1)} GiB` : `${n} MiB`;
}

/** A number with at most `digits` decimals, grouped as the reader's locale does. */
export function num(n: number, digits = 2): string {
  return n.toLocaleString(undefined, { maximumFractionDigits: digits });
}

/** Bytes in the largest unit under 1024 of it. */
export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${num(v, i === 0 ? 0 : 1)} ${units[i]}`;
}
