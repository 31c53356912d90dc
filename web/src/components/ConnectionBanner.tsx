import type { ConnectionState } from '../client';

interface Props {
  state: ConnectionState;
  /** A problem with the page's own settings (a bad ?server=). */
  warning?: string;
}

/** Why the page is not connected: refusals (with the server's reason, once it said), server closes with code and reason. */
export function ConnectionBanner({ state, warning }: Props) {
  const close = state.status === 'open' ? null : state.lastClose;
  if (!close && !warning) return null;
  const severe = close && (close.kind === 'refused' || state.status === 'closed');
  return (
    <div className="banners">
      {warning && (
        <p className="banner banner-warning" role="alert">
          {warning}
        </p>
      )}
      {close && (
        <div
          className={severe ? 'banner banner-error' : 'banner banner-warning'}
          role="alert"
          data-kind={close.kind}
          data-refusal={close.refusal}
          data-retry={String(close.retry)}
        >
          <strong>{close.title}</strong>
          <span>{close.detail}</span>
        </div>
      )}
    </div>
  );
}
