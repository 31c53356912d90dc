import { ENDPOINT_PATHS, type Endpoint } from '../client';

const LABELS: Record<Endpoint, string> = { chat: 'Chat', echo: 'Echo' };

interface Props {
  value: Endpoint;
  onChange: (endpoint: Endpoint) => void;
}

/** Segmented control between the chat and echo endpoints (a native radio group: arrow keys work). */
export function ModeSwitch({ value, onChange }: Props) {
  return (
    <fieldset className="mode-switch">
      <legend className="sr-only">Endpoint</legend>
      {(['chat', 'echo'] as const).map((endpoint) => (
        <label key={endpoint} className={endpoint === value ? 'mode-option is-selected' : 'mode-option'}>
          <input
            type="radio"
            name="endpoint"
            value={endpoint}
            checked={endpoint === value}
            onChange={() => onChange(endpoint)}
          />
          <span>{LABELS[endpoint]}</span>
          <code>{ENDPOINT_PATHS[endpoint]}</code>
        </label>
      ))}
    </fieldset>
  );
}
