import { useEffect, useId, useState, type FormEvent } from 'react';
import { MAX_ROOM_CHARS, roomProblem } from '../client';

interface Props {
  room: string;
  /** Rooms visited in this page, for suggestions. */
  rooms: string[];
  onSwitch: (room: string) => void;
}

/** The current room, and a field to go to another (leave + join). */
export function RoomPicker({ room, rooms, onSwitch }: Props) {
  const id = useId();
  const [draft, setDraft] = useState(room);
  useEffect(() => setDraft(room), [room]);
  const name = draft.trim();
  const problem = roomProblem(name);
  const changed = name !== room;

  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    if (!problem && changed) onSwitch(name);
  };

  return (
    <form className="field room-picker" onSubmit={onSubmit}>
      <label htmlFor={id}>Room</label>
      <span className="room-input">
        <span className="room-hash" aria-hidden="true">
          #
        </span>
        <input
          id={id}
          value={draft}
          list={`${id}-list`}
          maxLength={MAX_ROOM_CHARS + 8}
          autoComplete="off"
          autoCapitalize="off"
          spellCheck={false}
          onChange={(e) => setDraft(e.target.value)}
          aria-invalid={problem !== null && changed}
          aria-describedby={`${id}-hint`}
        />
      </span>
      <datalist id={`${id}-list`}>
        {rooms.map((r) => (
          <option key={r} value={r} />
        ))}
      </datalist>
      <button type="submit" className="small-button" disabled={problem !== null || !changed}>
        Join
      </button>
      <span
        id={`${id}-hint`}
        className={problem && changed ? 'field-error' : 'sr-only'}
        role={problem && changed ? 'alert' : undefined}
      >
        {problem && changed ? problem : `In room ${room}. Names: 1–64 letters, digits, “-”, “_”, “.”.`}
      </span>
    </form>
  );
}
