import { useEffect, useId, useState } from 'react';
import { MAX_NICK_CHARS, nickProblem } from '../client';

interface Props {
  /** The saved nickname ('' for none). */
  value: string;
  /** What the server calls us now (shown while the field is empty). */
  serverNick: string | null;
  /** The server gives the nickname from the access token: shown, not editable. */
  locked?: boolean;
  /** Save a new nickname: on Enter, on leaving the field, or after a pause in typing. */
  onCommit: (nick: string) => void;
}

const PAUSE_MS = 800;

/** Nickname, kept in this browser and sent to the server with a `nick` request. */
export function NickField({ value, serverNick, locked = false, onCommit }: Props) {
  const id = useId();
  const [draft, setDraft] = useState(value);
  useEffect(() => setDraft(value), [value]);
  const problem = draft.trim() === '' ? null : nickProblem(draft.trim());
  const dirty = draft !== value;

  useEffect(() => {
    if (!dirty || problem) return;
    const timer = setTimeout(() => onCommit(draft), PAUSE_MS);
    return () => clearTimeout(timer);
  }, [draft, dirty, problem, onCommit]);

  const commit = () => {
    if (dirty && !problem) onCommit(draft);
  };

  if (locked) {
    return (
      <div className="field nick-field">
        <label htmlFor={id}>Nickname</label>
        <input id={id} value={serverNick ?? ''} readOnly aria-readonly="true" aria-describedby={`${id}-hint`} />
        <span id={`${id}-hint`} className="sr-only">
          Given by your access token; it cannot be changed here.
        </span>
      </div>
    );
  }

  return (
    <div className="field nick-field">
      <label htmlFor={id}>Nickname</label>
      <input
        id={id}
        value={draft}
        maxLength={MAX_NICK_CHARS * 2}
        autoComplete="nickname"
        spellCheck={false}
        placeholder={serverNick ?? 'anonymous'}
        onChange={(e) => setDraft(e.target.value)}
        onBlur={commit}
        onKeyDown={(e) => {
          if (e.key === 'Enter') commit();
        }}
        aria-invalid={problem !== null}
        aria-describedby={`${id}-hint`}
      />
      <span id={`${id}-hint`} className={problem ? 'field-error' : 'sr-only'} role={problem ? 'alert' : undefined}>
        {problem ?? 'Saved in this browser and sent to the server; empty keeps the name the server gave you.'}
      </span>
    </div>
  );
}
