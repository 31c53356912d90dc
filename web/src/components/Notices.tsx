import type { Notice } from '../client';

/** Error frames and other things worth reading, each dismissible. */
export function Notices({ notices, onDismiss }: { notices: Notice[]; onDismiss: (key: string) => void }) {
  if (notices.length === 0) return null;
  return (
    <div className="banners">
      {notices.map((n) => (
        <div
          key={n.key}
          className={n.code === 'history_truncated' ? 'banner banner-warning notice' : 'banner banner-error notice'}
          role="alert"
          data-code={n.code}
        >
          <span className="notice-text">{n.text}</span>
          <button type="button" className="notice-close" aria-label="Dismiss" onClick={() => onDismiss(n.key)}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}
