import { useId } from 'react';

interface Props {
  value: string;
  onChange: (nick: string) => void;
}

/** Nickname, kept in this browser. The raw protocol has no place for it on the wire. */
export function NickField({ value, onChange }: Props) {
  const id = useId();
  return (
    <div className="nick-field">
      <label htmlFor={id}>Nickname</label>
      <input
        id={id}
        value={value}
        maxLength={32}
        autoComplete="nickname"
        spellCheck={false}
        placeholder="anonymous"
        onChange={(e) => onChange(e.target.value)}
        aria-describedby={`${id}-hint`}
      />
      <span id={`${id}-hint`} className="sr-only">
        Saved in this browser. The server will learn it once it speaks the wshub.v1 protocol.
      </span>
    </div>
  );
}
