import type { ReactNode } from 'react';
import { ENDPOINT_PATHS, type ConnectionState, type Endpoint } from '../client';
import { ConnectionBanner } from './ConnectionBanner';
import { ModeSwitch } from './ModeSwitch';
import { StatusPill } from './StatusPill';

interface Props {
  endpoint: Endpoint;
  onEndpoint: (endpoint: Endpoint) => void;
  url: string;
  overridden: boolean;
  warning?: string;
  connection: ConnectionState;
  onRetry: () => void;
  onDisconnect: () => void;
  /** After the title, e.g. the room. */
  titleExtra?: ReactNode;
  /** More controls next to the mode switch. */
  controls?: ReactNode;
  /** Below the connection banner. */
  notices?: ReactNode;
  children: ReactNode;
  wide?: boolean;
}

/** The card: header (brand, status, title, URL, controls), banners, then the body. */
export function Shell(props: Props) {
  const { endpoint, connection } = props;
  return (
    <main className="app">
      <section className={props.wide ? 'card card-wide' : 'card'} aria-labelledby="title">
        <header className="card-header">
          <div className="brand-row">
            <span className="brand" aria-hidden="true">
              <span className="brand-mark" />
              wshub
            </span>
            <StatusPill state={connection} onRetry={props.onRetry} onDisconnect={props.onDisconnect} />
          </div>
          <h1 id="title">
            WebSocket GET <span className="title-path">{ENDPOINT_PATHS[endpoint]}</span>
            {props.titleExtra}
          </h1>
          <p className="endpoint-url">
            <code>{props.url}</code>
            {props.overridden && <span className="badge">?server</span>}
          </p>
          <div className="controls">
            <ModeSwitch value={endpoint} onChange={props.onEndpoint} />
            {props.controls}
          </div>
        </header>
        <ConnectionBanner state={connection} warning={props.warning} />
        {props.notices}
        {props.children}
      </section>
    </main>
  );
}
