import { useCallback, useEffect, useMemo, useState } from 'react';
import {
  ChatClient,
  checkHandshake,
  currentRoom,
  knownRooms,
  parseRoom,
  socketUrl,
  visibleLines,
  WSHUB_V1,
  type Endpoint,
} from '../client';
import { useClient } from '../hooks/useClient';
import { useStoredString } from '../hooks/useStoredString';
import { Composer } from './Composer';
import { MemberList } from './MemberList';
import { MessageList } from './MessageList';
import { NickField } from './NickField';
import { Notices } from './Notices';
import { RoomPicker } from './RoomPicker';
import { Shell } from './Shell';

interface Props {
  base: string;
  overridden: boolean;
  warning?: string;
  /** Access token from `?token=`, offered as the subprotocol `bearer.<token>`; null for none. */
  token: string | null;
  onEndpoint: (endpoint: Endpoint) => void;
}

/** Keep `?room=` in the address bar so a reload or a shared link opens the same room. */
function rememberRoom(room: string) {
  const url = new URL(window.location.href);
  url.searchParams.set('room', room);
  window.history.replaceState(null, '', url);
}

/** Chat over wshub.v1: rooms, nicknames, members, history. */
export function ChatView({ base, overridden, warning, token, onEndpoint }: Props) {
  const url = socketUrl(base, 'chat');
  const [nick, setNick] = useStoredString('wshub.nick');
  const [firstRoom] = useState(() => parseRoom(window.location.search));
  const client = useMemo(
    // The nickname is read once here; later changes go through setNick below.
    () =>
      new ChatClient({
        url,
        room: firstRoom,
        nick: nick.trim(),
        token,
        check: () => checkHandshake(url, { protocol: WSHUB_V1, token }),
      }),
    [url, firstRoom, token],
  );
  const { state, connection } = useClient(client);
  const room = currentRoom(state);

  useEffect(() => client.setNick(nick.trim()), [client, nick]);
  // Follows the room shown: a switch, or the way back after a join the access token refused.
  useEffect(() => {
    if (parseRoom(window.location.search) !== state.room) rememberRoom(state.room);
  }, [state.room]);

  const switchRoom = useCallback(
    (name: string) => {
      if (client.switchRoom(name)) rememberRoom(name);
    },
    [client],
  );
  const send = useCallback((text: string) => client.send(text) === 'sent', [client]);

  return (
    <Shell
      wide
      endpoint="chat"
      onEndpoint={onEndpoint}
      url={url}
      overridden={overridden}
      warning={warning}
      connection={connection}
      onRetry={() => client.connection.reconnectNow()}
      onDisconnect={() => client.stop()}
      titleExtra={<span className="title-room"> #{state.room}</span>}
      controls={
        <>
          <RoomPicker room={state.room} rooms={knownRooms(state)} onSwitch={switchRoom} />
          <NickField value={nick} serverNick={state.nick} locked={state.nickLocked} onCommit={setNick} />
        </>
      }
      notices={<Notices notices={state.notices} onDismiss={(key) => client.dismiss(key)} />}
    >
      <div className="chat-body">
        <MemberList members={room.members} count={room.count} me={state.nick} meUser={state.user} phase={room.phase} />
        <MessageList
          messages={visibleLines(state)}
          emptyHint={`No messages in #${state.room} yet. Everyone in this room sees what you send.`}
        />
      </div>
      <Composer connected={connection.status === 'open'} placeholder={`Message #${state.room}…`} onSend={send} />
    </Shell>
  );
}
