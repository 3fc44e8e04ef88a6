import { useEffect, useState } from 'preact/hooks';
import { ApiError, api, type ListedSandbox } from './api.js';

export type Feed = 'connecting' | 'live' | 'reconnecting';

/**
 * The team's running and paused sandboxes (with `everyTeam`, the operator's, every team's), live: `GET /v1/sandboxes/stream` (server-sent
 * events) sends the whole list on connect and again on every change. The browser
 * reconnects by itself after a network error; a refused stream (the session ended) it does
 * not retry, so the session is asked about and `onSessionEnded` called if it is gone.
 */
export function useSandboxStream(
  onSessionEnded: () => void,
  everyTeam = false,
): { items?: ListedSandbox[]; feed: Feed } {
  const [items, setItems] = useState<ListedSandbox[]>();
  const [feed, setFeed] = useState<Feed>('connecting');
  useEffect(() => {
    setItems(undefined);
    setFeed('connecting');
    const source = new EventSource(everyTeam ? '/v1/sandboxes/stream?teams=all' : '/v1/sandboxes/stream');
    source.addEventListener('sandboxes', (e) => {
      setItems(JSON.parse((e as MessageEvent<string>).data) as ListedSandbox[]);
      setFeed('live');
    });
    source.onerror = () => {
      setFeed('reconnecting');
      if (source.readyState === EventSource.CLOSED)
        api('GET', '/v1/console/session').catch((e) => {
          if (e instanceof ApiError && e.status === 401) onSessionEnded();
        });
    };
    return () => source.close();
  }, [everyTeam]);
  return { items, feed };
}
