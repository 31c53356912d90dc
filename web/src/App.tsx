import { useEffect, useMemo, useState } from 'react';
import { ENDPOINT_PATHS, parseEndpoint, resolveSocketBase, type Endpoint } from './client';
import { Composer } from './components/Composer';
import { ConnectionBanner } from './components/ConnectionBanner';
import { MessageList } from './components/MessageList';
import { ModeSwitch } from './components/ModeSwitch';
import { NickField } from './components/NickField';
import { StatusPill } from './components/StatusPill';
import { useChatSession } from './hooks/useChatSession';
import { useStoredString } from './hooks/useStoredString';

/** Keep `?mode=` in the address bar so a reload or a shared link opens the same endpoint. */
function rememberMode(endpoint: Endpoint) {
  const url = new URL(window.location.href);
  url.searchParams.set('mode', endpoint);
  window.history.replaceState(null, '', url);
}

export function App() {
  const socketBase = useMemo(() => resolveSocketBase(window.location), []);
  const [endpoint, setEndpoint] = useState<Endpoint>(() => parseEndpoint(window.location.search));
  const [nick, setNick] = useStoredString('wshub.nick');
  const session = useChatSession(socketBase.base, endpoint, nick.trim());
  const connected = session.connection.status === 'open';

  useEffect(() => {
    document.title = `wshub · ${endpoint === 'chat' ? 'Chat' : 'Echo'}`;
  }, [endpoint]);

  const changeEndpoint = (next: Endpoint) => {
    setEndpoint(next);
    rememberMode(next);
  };

  return (
    <main className="app">
      <section className="card" aria-labelledby="title">
        <header className="card-header">
          <div className="brand-row">
            <span className="brand" aria-hidden="true">
              <span className="brand-mark" />
              wshub
            </span>
            <StatusPill state={session.connection} onRetry={session.reconnectNow} onDisconnect={session.disconnect} />
          </div>
          <h1 id="title">
            WebSocket GET <span className="title-path">{ENDPOINT_PATHS[endpoint]}</span>
          </h1>
          <p className="endpoint-url">
            <code>{session.url}</code>
            {socketBase.overridden && <span className="badge">?server</span>}
          </p>
          <div className="controls">
            <ModeSwitch value={endpoint} onChange={changeEndpoint} />
            <NickField value={nick} onChange={setNick} />
          </div>
        </header>
        <ConnectionBanner state={session.connection} warning={socketBase.warning} />
        <MessageList
          messages={session.messages}
          emptyHint={
            endpoint === 'chat'
              ? 'No messages yet. Everyone connected to /ws sees what you send.'
              : 'Send something: the server sends it straight back.'
          }
        />
        <Composer
          connected={connected}
          placeholder={endpoint === 'chat' ? 'Message everyone…' : 'Text to echo…'}
          onSend={session.send}
        />
      </section>
    </main>
  );
}
