import { useCallback, useMemo } from 'react';
import { checkHandshake, EchoClient, socketUrl, type Endpoint } from '../client';
import { useClient } from '../hooks/useClient';
import { Composer } from './Composer';
import { MessageList } from './MessageList';
import { Shell } from './Shell';

interface Props {
  base: string;
  overridden: boolean;
  warning?: string;
  onEndpoint: (endpoint: Endpoint) => void;
}

/** Echo over the raw protocol (`/echo`, no subprotocol). */
export function EchoView({ base, overridden, warning, onEndpoint }: Props) {
  const url = socketUrl(base, 'echo');
  const client = useMemo(() => new EchoClient({ url, check: () => checkHandshake(url) }), [url]);
  const { state, connection } = useClient(client);
  const send = useCallback((text: string) => client.send(text), [client]);
  return (
    <Shell
      endpoint="echo"
      onEndpoint={onEndpoint}
      url={url}
      overridden={overridden}
      warning={warning}
      connection={connection}
      onRetry={() => client.connection.reconnectNow()}
      onDisconnect={() => client.stop()}
    >
      <MessageList messages={state.lines} emptyHint="Send something: the server sends it straight back." />
      <Composer connected={connection.status === 'open'} placeholder="Text to echo…" onSend={send} />
    </Shell>
  );
}
