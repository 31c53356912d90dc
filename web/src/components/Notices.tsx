import type { Notice } from '../client';

/** Tone of a notice: warnings for things that pass, info for good news, errors otherwise. */
function noticeClass(code: Notice['code']): string {
  switch (code) {
    case 'history_truncated':
    case 'history_unavailable':
    case 'cross_node_interrupted':
    case 'rate_limited':
      return 'banner banner-warning notice';
    case 'cross_node_restored':
      return 'banner banner-info notice';
    default:
      return 'banner banner-error notice';
  }
}

/** Error and notice frames and other things worth reading, each dismissible. */
export function Notices({ notices, onDismiss }: { notices: Notice[]; onDismiss: (key: string) => void }) {
  if (notices.length === 0) return null;
  return (
    <div className="banners">
      {notices.map((n) => (
        <div
          key={n.key}
          className={noticeClass(n.code)}
          role={n.code === 'cross_node_restored' ? 'status' : 'alert'}
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
