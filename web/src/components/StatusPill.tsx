import type { ConnectionState } from '../client';
import { useNow } from '../hooks/useNow';

interface Props {
  state: ConnectionState;
  onRetry: () => void;
  onDisconnect: () => void;
}

/** The announced label, and a ticking countdown kept out of the live region (aria-hidden). */
function describe(state: ConnectionState, now: number): [label: string, countdown: string] {
  switch (state.status) {
    case 'idle':
    case 'connecting':
      return ['Connecting…', ''];
    case 'open':
      return ['Connected', ''];
    case 'reconnecting': {
      if (state.retryAt === null) return [`Reconnecting… (attempt ${state.attempt + 1})`, ''];
      const seconds = Math.max(0, Math.ceil((state.retryAt - now) / 1000));
      return ['Reconnecting', ` in ${seconds} s`];
    }
    case 'closed':
      return [state.lastClose && !state.lastClose.retry ? `Closed (${state.lastClose.code})` : 'Closed', ''];
  }
}

/** Connection status (a live region) and the one action that fits it. */
export function StatusPill({ state, onRetry, onDisconnect }: Props) {
  const now = useNow(state.status === 'reconnecting' && state.retryAt !== null);
  const [label, countdown] = describe(state, now);
  return (
    <div className="status">
      <span className={`status-pill status-${state.status}`} role="status" data-status={state.status}>
        <span className="status-dot" aria-hidden="true" />
        <span>
          {label}
          {countdown && <span aria-hidden="true">{countdown}</span>}
        </span>
      </span>
      {state.status === 'open' && (
        <button type="button" className="link-button" onClick={onDisconnect}>
          Disconnect
        </button>
      )}
      {state.status === 'reconnecting' && state.retryAt !== null && (
        <button type="button" className="link-button" onClick={onRetry}>
          Retry now
        </button>
      )}
      {state.status === 'reconnecting' && (
        <button type="button" className="link-button" onClick={onDisconnect}>
          Stop
        </button>
      )}
      {state.status === 'closed' && (
        <button type="button" className="link-button" onClick={onRetry}>
          Connect
        </button>
      )}
    </div>
  );
}
