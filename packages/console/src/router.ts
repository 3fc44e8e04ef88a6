import { useEffect, useState } from 'preact/hooks';

/** The console's pages live under /ui/ (the server answers index.html there); `/` is the sandbox list. */
export const HOME = '/ui/sandboxes';

const listeners = new Set<() => void>();

/** Goes to `path` without a reload (history API); `replace`: in place of the current entry (a redirect). */
export function navigate(path: string, replace = false): void {
  if (path === location.pathname + location.search) return;
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  for (const l of listeners) l();
}

/** The current path; re-renders on navigate() and on back/forward. */
export function usePath(): string {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const update = () => setPath(location.pathname);
    listeners.add(update);
    addEventListener('popstate', update);
    return () => {
      listeners.delete(update);
      removeEventListener('popstate', update);
    };
  }, []);
  return path;
}

/** Handles a click on an in-console link: plain clicks navigate in place, modified ones do what the browser does. */
export function onLinkClick(e: MouseEvent): void {
  const a = e.currentTarget as HTMLAnchorElement;
  if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(a.pathname + a.search);
}
