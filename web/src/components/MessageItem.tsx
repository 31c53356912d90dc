import type { DeliveryStatus, Line } from '../client';

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

const STATUS_TEXT: Partial<Record<DeliveryStatus, string>> = {
  pending: 'sending…',
  unconfirmed: 'not confirmed',
  failed: 'not sent',
};

function author(m: Line): string {
  switch (m.kind) {
    case 'own':
      return m.nick ? `${m.nick} (you)` : 'You';
    case 'echo':
      return 'Echo';
    case 'other':
      return m.nick || 'Someone';
    case 'system':
      return '';
  }
}

/** One line. Text is rendered as text (React escapes it); newlines and long words wrap. */
export function MessageItem({ message: m }: { message: Line }) {
  const time = (
    <time dateTime={new Date(m.ts).toISOString()} title={new Date(m.ts).toLocaleString()}>
      {timeFormat.format(m.ts)}
    </time>
  );
  if (m.kind === 'system') {
    return (
      <li
        className={`message message-system tone-${m.tone ?? 'info'}${m.event ? ' is-presence' : ''}`}
        data-kind="system"
        data-event={m.event}
      >
        <span className="message-text">{m.text}</span> {time}
      </li>
    );
  }
  const status = m.status ? STATUS_TEXT[m.status] : undefined;
  return (
    <li
      className={`message message-${m.kind}${m.status ? ` is-${m.status}` : ''}${m.local ? ' is-local' : ''}`}
      data-kind={m.kind}
      data-id={m.id}
      data-local={m.local ? 'true' : undefined}
      data-nick={m.nick}
      data-user={m.user}
    >
      <div className="message-meta">
        <span className="message-author" title={m.user === undefined ? undefined : `user ${m.user}`}>
          {author(m)}
        </span>
        {time}
        {m.id !== undefined && (
          <span className="message-id" title="Message number in this room">
            #{m.id}
          </span>
        )}
        {m.local && (
          <span
            className="message-local"
            title="Other servers were unreachable: only people connected to this server got it, and it is not in the room's history."
          >
            local only
          </span>
        )}
        {status && <span className="message-status">{status}</span>}
      </div>
      <p className="message-text">{m.text}</p>
    </li>
  );
}
