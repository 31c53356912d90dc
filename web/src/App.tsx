import { useEffect, useMemo, useState } from 'react';
import { parseEndpoint, parseToken, resolveSocketBase, type Endpoint } from './client';
import { ChatView } from './components/ChatView';
import { EchoView } from './components/EchoView';

/** Keep `?mode=` in the address bar so a reload or a shared link opens the same endpoint. */
function rememberMode(endpoint: Endpoint) {
  const url = new URL(window.location.href);
  url.searchParams.set('mode', endpoint);
  window.history.replaceState(null, '', url);
}

export function App() {
  const socketBase = useMemo(() => resolveSocketBase(window.location), []);
  // ?token= (servers requiring access tokens): the chat offers it as a subprotocol, never shows it.
  const pageToken = useMemo(() => parseToken(window.location.search), []);
  const [endpoint, setEndpoint] = useState<Endpoint>(() => parseEndpoint(window.location.search));

  useEffect(() => {
    document.title = `wshub · ${endpoint === 'chat' ? 'Chat' : 'Echo'}`;
  }, [endpoint]);

  const changeEndpoint = (next: Endpoint) => {
    setEndpoint(next);
    rememberMode(next);
  };

  const props = {
    base: socketBase.base,
    overridden: socketBase.overridden,
    warning: socketBase.warning,
    onEndpoint: changeEndpoint,
  };
  if (endpoint === 'echo') return <EchoView {...props} />;
  const warning = [socketBase.warning, pageToken.warning].filter(Boolean).join(' ') || undefined;
  return <ChatView {...props} warning={warning} token={pageToken.token} />;
}
