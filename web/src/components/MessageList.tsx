import { useLayoutEffect, useRef, useState } from 'react';
import type { Line } from '../client';
import { MessageItem } from './MessageItem';

/** How close to the bottom (px) still counts as "at the bottom". */
const STICKY_PX = 48;

/**
 * The transcript: a live log for screen readers; follows the newest message unless the user
 * scrolled up, in which case a button offers to jump down.
 */
export function MessageList({ messages, emptyHint }: { messages: Line[]; emptyHint: string }) {
  const scroller = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  const seenCount = useRef(messages.length);
  const [unseen, setUnseen] = useState(0);

  const scrollToEnd = () => {
    const el = scroller.current;
    if (el) el.scrollTop = el.scrollHeight;
    atBottom.current = true;
    setUnseen(0);
  };

  useLayoutEffect(() => {
    const added = messages.length - seenCount.current;
    seenCount.current = messages.length;
    const last = messages[messages.length - 1];
    // Follow when already at the bottom, or when the newest line is something we just sent.
    if (atBottom.current || (last?.kind === 'own' && last.status === 'pending')) scrollToEnd();
    else if (added > 0) setUnseen((n) => n + added);
  }, [messages]);

  const onScroll = () => {
    const el = scroller.current;
    if (!el) return;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < STICKY_PX;
    if (atBottom.current) setUnseen(0);
  };

  return (
    <div className="messages-wrap">
      <div
        ref={scroller}
        className="messages"
        role="log"
        aria-live="polite"
        aria-relevant="additions"
        aria-label="Messages"
        tabIndex={0}
        onScroll={onScroll}
      >
        {messages.length === 0 ? (
          <p className="messages-empty">{emptyHint}</p>
        ) : (
          <ol className="message-list">
            {messages.map((m) => (
              <MessageItem key={m.key} message={m} />
            ))}
          </ol>
        )}
      </div>
      {unseen > 0 && (
        <button type="button" className="jump-button" onClick={scrollToEnd}>
          {unseen === 1 ? '1 new message' : `${unseen} new messages`} ↓
        </button>
      )}
    </div>
  );
}
