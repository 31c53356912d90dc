import { useId, useState } from 'react';
import { isMe, type Member } from '../client';

interface Props {
  members: Member[] | null;
  /** Connections in the room. */
  count: number;
  /** Our nickname, marked "you" (when the server gives no user ids). */
  me: string | null;
  /** Our user id (from `welcome`, with access tokens): the entry with it is "you". */
  meUser?: string | null;
  phase: 'out' | 'joining' | 'joined';
}

/** A stable pastel colour per nickname. */
function hue(nick: string): number {
  let h = 0;
  for (const c of nick) h = (h * 31 + (c.codePointAt(0) ?? 0)) % 360;
  return h;
}

/** Who is in the room. A side panel on wide screens; a bar that expands on narrow ones. */
export function MemberList({ members, count, me, meUser = null, phase }: Props) {
  const id = useId();
  const [open, setOpen] = useState(false);
  const summary = members === null ? '–' : String(count);
  return (
    <aside className={open ? 'members is-open' : 'members'} aria-labelledby={`${id}-title`} data-phase={phase}>
      <h2 className="members-title" id={`${id}-title`}>
        Members <span className="members-count">{summary}</span>
      </h2>
      <button
        type="button"
        className="members-toggle"
        aria-expanded={open}
        aria-controls={`${id}-body`}
        onClick={() => setOpen((o) => !o)}
      >
        <span>
          Members <span className="members-count">{summary}</span>
        </span>
        {members && members.length > 0 && (
          <span className="members-preview" aria-hidden="true">
            {members.map((m) => m.nick).join(', ')}
          </span>
        )}
        <span className="members-chevron" aria-hidden="true">
          ▾
        </span>
      </button>
      <div className="members-body" id={`${id}-body`}>
        {members === null ? (
          <p className="members-empty">{phase === 'out' ? 'Not connected.' : 'Joining…'}</p>
        ) : (
          <ul className="member-list">
            {members.map((m) => {
              const mine = isMe(m, me, meUser);
              // Two people under one nickname: their user ids tell them apart.
              const shared = m.user !== undefined && members.some((o) => o !== m && o.nick === m.nick);
              return (
                <li
                  key={`${m.nick}\u0000${m.user ?? ''}`}
                  className={mine ? 'member is-me' : 'member'}
                  data-nick={m.nick}
                  data-user={m.user}
                  title={m.user === undefined ? undefined : `user ${m.user}`}
                >
                  <span className="avatar" style={{ background: `hsl(${hue(m.nick)} 70% 88%)` }} aria-hidden="true">
                    {[...m.nick][0]?.toUpperCase()}
                  </span>
                  <span className="member-nick">{m.nick}</span>
                  {shared && <span className="member-user">({m.user})</span>}
                  {mine && <span className="member-you">you</span>}
                  {m.connections > 1 && (
                    <span className="member-conns" title={`${m.connections} connections`}>
                      ×{m.connections}
                    </span>
                  )}
                </li>
              );
            })}
          </ul>
        )}
      </div>
    </aside>
  );
}
