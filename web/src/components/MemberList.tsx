import { useId, useState } from 'react';
import type { Member } from '../client';

interface Props {
  members: Member[] | null;
  /** Connections in the room. */
  count: number;
  /** Our nickname, marked "you". */
  me: string | null;
  phase: 'out' | 'joining' | 'joined';
}

/** A stable pastel colour per nickname. */
function hue(nick: string): number {
  let h = 0;
  for (const c of nick) h = (h * 31 + (c.codePointAt(0) ?? 0)) % 360;
  return h;
}

/** Who is in the room. A side panel on wide screens; a bar that expands on narrow ones. */
export function MemberList({ members, count, me, phase }: Props) {
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
            {members.map((m) => (
              <li key={m.nick} className={m.nick === me ? 'member is-me' : 'member'} data-nick={m.nick}>
                <span className="avatar" style={{ background: `hsl(${hue(m.nick)} 70% 88%)` }} aria-hidden="true">
                  {[...m.nick][0]?.toUpperCase()}
                </span>
                <span className="member-nick">{m.nick}</span>
                {m.nick === me && <span className="member-you">you</span>}
                {m.connections > 1 && (
                  <span className="member-conns" title={`${m.connections} connections`}>
                    ×{m.connections}
                  </span>
                )}
              </li>
            ))}
          </ul>
        )}
      </div>
    </aside>
  );
}
