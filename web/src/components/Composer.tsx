import { useId, useLayoutEffect, useRef, useState, type FormEvent, type KeyboardEvent } from 'react';

interface Props {
  connected: boolean;
  placeholder: string;
  /** Returns false when nothing could be sent (then the text stays in the box). */
  onSend: (text: string) => boolean;
}

/** Message box: Enter sends, Shift+Enter adds a line; disabled sending keeps the typed text. */
export function Composer({ connected, placeholder, onSend }: Props) {
  const [text, setText] = useState('');
  const box = useRef<HTMLTextAreaElement>(null);
  const hintId = useId();
  const canSend = connected && text.length > 0;

  // Grow with the text up to the CSS max-height.
  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    el.style.height = 'auto';
    el.style.height = `${el.scrollHeight}px`;
  }, [text]);

  const submit = () => {
    if (!canSend) return;
    if (onSend(text)) setText('');
    box.current?.focus();
  };

  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    // Enter while an IME (Japanese, Chinese…) is composing confirms the conversion: never send then.
    if (e.key !== 'Enter' || e.shiftKey || e.nativeEvent.isComposing || e.keyCode === 229) return;
    e.preventDefault();
    submit();
  };

  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    submit();
  };

  return (
    <form className="composer" onSubmit={onSubmit}>
      <label htmlFor={`${hintId}-box`} className="sr-only">
        Message
      </label>
      <textarea
        id={`${hintId}-box`}
        ref={box}
        rows={1}
        value={text}
        placeholder={placeholder}
        onChange={(e) => setText(e.target.value)}
        onKeyDown={onKeyDown}
        aria-describedby={hintId}
        enterKeyHint="send"
        autoComplete="off"
      />
      <button type="submit" className="send-button" disabled={!canSend}>
        Send
      </button>
      <p id={hintId} className={connected ? 'composer-hint sr-only' : 'composer-hint'}>
        {connected
          ? 'Enter sends, Shift+Enter starts a new line.'
          : 'Not connected: sending is paused, and what you type is kept.'}
      </p>
    </form>
  );
}
