/**
 * Binds one Connection and the message reducer to React. Switching endpoint or base URL makes a
 * new Connection (and a fresh list); everything protocol-specific stays in src/client.
 */
import { useCallback, useEffect, useMemo, useReducer, useRef, useSyncExternalStore } from 'react';
import {
  codecFor,
  Connection,
  healthUrl,
  initialMessages,
  messagesReducer,
  REQUESTED_SUBPROTOCOLS,
  socketUrl,
  visibleMessages,
  type ChatMessage,
  type ConnectionState,
  type Endpoint,
  type ServerEvent,
} from '../client';

/** Room used once wshub.v1 has rooms; the raw protocol has one implicit room per endpoint. */
const ROOM = 'lobby';

/** Does anything answer HTTP at `url`? An opaque (no-cors) response is enough to say yes. */
async function reachable(url: string): Promise<boolean> {
  try {
    await fetch(url, { mode: 'no-cors', cache: 'no-store', signal: AbortSignal.timeout(3_000) });
    return true;
  } catch {
    return false;
  }
}

export interface ChatSession {
  url: string;
  connection: ConnectionState;
  messages: ChatMessage[];
  /** Send a text; false (nothing sent, nothing recorded) unless connected. */
  send: (text: string) => boolean;
  reconnectNow: () => void;
  disconnect: () => void;
}

export function useChatSession(base: string, endpoint: Endpoint, nick: string): ChatSession {
  const url = socketUrl(base, endpoint);
  const conn = useMemo(
    () => new Connection({ url, protocols: REQUESTED_SUBPROTOCOLS, probe: () => reachable(healthUrl(base)) }),
    [url, base],
  );
  const connection = useSyncExternalStore(conn.subscribe, conn.getState);
  const [state, dispatch] = useReducer(messagesReducer, endpoint, initialMessages);
  const nickRef = useRef(nick);
  nickRef.current = nick;

  useEffect(() => {
    dispatch({ type: 'reset', mode: endpoint });
    const ctx = () => ({ nick: nickRef.current, room: ROOM });
    const onEvent = (ev: ServerEvent) => {
      const now = Date.now();
      if (ev.type === 'message') dispatch({ type: 'received', text: ev.text, ts: ev.ts ?? now, nick: ev.nick });
      else if (ev.type === 'binary')
        dispatch({ type: 'system', text: `Received a binary frame (${ev.bytes} bytes), not shown.`, ts: now });
      else dispatch({ type: 'system', text: ev.text, ts: now, tone: 'error' });
    };
    const offFrame = conn.onFrame((data) => codecFor(conn.getState().protocol).decode(data).forEach(onEvent));
    const offOpen = conn.onOpen(() => {
      for (const frame of codecFor(conn.getState().protocol).greet(ctx())) conn.send(frame);
    });
    const online = () => conn.reconnectNow();
    window.addEventListener('online', online);
    conn.start();
    return () => {
      window.removeEventListener('online', online);
      offFrame();
      offOpen();
      conn.stop();
    };
  }, [conn, endpoint]);

  // Transcript lines for connection changes.
  const prevStatus = useRef({ url: connection.url, status: connection.status });
  useEffect(() => {
    const prev = prevStatus.current;
    prevStatus.current = { url: connection.url, status: connection.status };
    if (prev.url !== connection.url || prev.status === connection.status) return;
    const ts = Date.now();
    if (connection.status === 'open') {
      dispatch({ type: 'system', text: `Connected to ${connection.url}`, ts });
    } else if (prev.status === 'open') {
      dispatch({ type: 'disconnected' });
      const close = connection.lastClose;
      const text = close && connection.status !== 'closed' ? `Disconnected: ${close.detail}` : 'Disconnected.';
      dispatch({ type: 'system', text, ts, tone: 'error' });
    }
  }, [connection]);

  const send = useCallback(
    (text: string) => {
      const codec = codecFor(conn.getState().protocol);
      if (!conn.send(codec.encodeText(text, { nick: nickRef.current, room: ROOM }))) return false;
      dispatch({ type: 'sent', text, ts: Date.now(), nick: nickRef.current || undefined });
      return true;
    },
    [conn],
  );

  return {
    url,
    connection,
    messages: visibleMessages(state),
    send,
    reconnectNow: useCallback(() => conn.reconnectNow(), [conn]),
    disconnect: useCallback(() => conn.stop(), [conn]),
  };
}
