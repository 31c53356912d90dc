/**
 * React glue for a client of src/client (ChatClient or EchoClient): made once per `create`
 * identity, started while mounted, retried at once when the browser comes back online.
 */
import { useEffect, useSyncExternalStore } from 'react';
import type { Connection, ConnectionState } from '../client';

interface ClientLike<S> {
  readonly connection: Connection;
  getState(): S;
  subscribe(listener: () => void): () => void;
  start(): void;
  stop(): void;
}

export function useClient<S>(client: ClientLike<S>): { state: S; connection: ConnectionState } {
  const state = useSyncExternalStore(client.subscribe, client.getState);
  const connection = useSyncExternalStore(client.connection.subscribe, client.connection.getState);
  useEffect(() => {
    // Back online: retry now what was waiting to retry (not what gave up for a reason).
    const online = () => {
      if (client.connection.getState().status === 'reconnecting') client.connection.reconnectNow();
    };
    window.addEventListener('online', online);
    client.start();
    return () => {
      window.removeEventListener('online', online);
      client.stop();
    };
  }, [client]);
  return { state, connection };
}
