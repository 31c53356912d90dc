import { describe, expect, it } from 'vitest';
import type { CheckAnswer, CheckOutcome } from './check';
import { classifyClose, closeCodeLabel, explainRefusal, shouldRetry } from './close';

const answered = (answer: CheckAnswer): CheckOutcome => ({ kind: 'answered', answer });

describe('classifyClose', () => {
  it('calls a 1006 before open a refusal, naming the usual causes without blaming one', () => {
    const v = classifyClose({ code: 1006, reason: '', wasClean: false, opened: false });
    expect(v.kind).toBe('refused');
    expect(v.retry).toBe(true);
    expect(v.title).toMatch(/refused/);
    expect(v.title).not.toMatch(/origin/);
    expect(v.detail).toMatch(/origin/);
    expect(v.detail).toMatch(/full/);
    expect(v.detail).toMatch(/1006/);
  });

  it('calls any close before open a refusal, whatever the code', () => {
    expect(classifyClose({ code: 1015, reason: '', wasClean: false, opened: false }).kind).toBe('refused');
  });

  it('calls a 1006 after open a lost connection', () => {
    const v = classifyClose({ code: 1006, reason: '', wasClean: false, opened: true });
    expect(v.kind).toBe('lost');
    expect(v.retry).toBe(true);
  });

  it('shows code and reason when the server closes', () => {
    const v = classifyClose({ code: 1008, reason: 'message too fast', wasClean: true, opened: true });
    expect(v.kind).toBe('server');
    expect(v.title).toContain('1008 Policy violation');
    expect(v.detail).toBe('1008 Policy violation: message too fast');
    const t = classifyClose({ code: 1013, reason: '', wasClean: true, opened: true });
    expect(t.detail).toBe('1013 Try again later, no reason given.');
    expect(classifyClose({ code: 1001, reason: 'server shutting down', wasClean: true, opened: true }).detail).toBe(
      '1001 Going away: server shutting down',
    );
  });

  it('treats 1000 as normal', () => {
    expect(classifyClose({ code: 1000, reason: '', wasClean: true, opened: true }).kind).toBe('normal');
  });

  it('does not retry application codes 4000-4999', () => {
    expect(shouldRetry(4001)).toBe(false);
    expect(shouldRetry(1008)).toBe(true);
    expect(classifyClose({ code: 4401, reason: 'bad token', wasClean: true, opened: true }).retry).toBe(false);
    expect(closeCodeLabel(4401)).toBe('4401 (application)');
    expect(closeCodeLabel(3000)).toBe('3000');
  });
});

describe('explainRefusal', () => {
  const refused = classifyClose({ code: 1006, reason: '', wasClean: false, opened: false });
  const withToken = classifyClose({ code: 1006, reason: '', wasClean: false, opened: false }, { withToken: true });

  it('says a token is missing, and not to retry', () => {
    const v = explainRefusal(refused, answered({ status: 401, reason: 'unauthorized', message: 'unauthorized: missing token', retry: false }));
    expect(v).toMatchObject({ kind: 'refused', retry: false, refusal: 'unauthorized', title: 'The server requires an access token.' });
    expect(v.detail).toContain('The server says: unauthorized: missing token.');
    expect(v.detail).toMatch(/\?token=/);
    expect(v.detail).toMatch(/Not retrying/);
    expect(v.title).not.toMatch(/origin/);
  });

  it('says an offered token was refused', () => {
    const v = explainRefusal(
      withToken,
      answered({ status: 401, reason: 'unauthorized', message: 'unauthorized: token expired', retry: false }),
      { withToken: true },
    );
    expect(v.title).toBe('The server refused the access token.');
    expect(v.detail).toMatch(/token expired/);
    expect(v.retry).toBe(false);
  });

  it('blames the origin only when the server says so', () => {
    const v = explainRefusal(refused, answered({ status: 403, reason: 'origin', message: 'origin not allowed', retry: false }));
    expect(v).toMatchObject({ retry: false, refusal: 'origin', title: "The server does not allow this page's origin." });
    expect(v.detail).toMatch(/--allowed-origin/);
  });

  it('keeps retrying a full server or too many connections', () => {
    const full = explainRefusal(refused, answered({ status: 503, reason: 'full', message: 'server at its connection limit, try again later', retry: true }));
    expect(full).toMatchObject({ retry: true, refusal: 'full', title: 'The server is full.' });
    const many = explainRefusal(refused, answered({ status: 429, reason: 'too_many_from_address', message: 'too many', retry: true }));
    expect(many).toMatchObject({ retry: true, title: 'Too many connections from your address.' });
    const down = explainRefusal(refused, answered({ status: 503, reason: 'shutting_down', message: 'server shutting down', retry: true }));
    expect(down.retry).toBe(true);
  });

  it('follows the server on reasons it does not know', () => {
    const v = explainRefusal(refused, answered({ status: 400, reason: 'bad_room', message: 'bad room name', retry: false }));
    expect(v).toMatchObject({ retry: false, title: 'The server refused the connection (HTTP 400).' });
  });

  it('retries when the server would accept the handshake now', () => {
    const v = explainRefusal(refused, answered({ status: 101, reason: 'ok', message: 'the upgrade would be accepted now', retry: true }));
    expect(v.retry).toBe(true);
    expect(v.refusal).toBeUndefined();
  });

  it('says unreachable when nothing answers, and retries', () => {
    const v = explainRefusal(refused, { kind: 'unreachable' });
    expect(v).toMatchObject({ retry: true, title: 'Cannot reach the server.' });
  });

  it('lists the usual causes when the server answers but not the check', () => {
    const v = explainRefusal(refused, { kind: 'unreadable' });
    expect(v).toMatchObject({ retry: true, title: 'The server refused the connection.' });
    expect(v.detail).toMatch(/requires an access token/);
    expect(explainRefusal(withToken, { kind: 'unreadable' }, { withToken: true }).detail).toMatch(/invalid or expired/);
  });

  it('leaves other verdicts alone', () => {
    const lost = classifyClose({ code: 1006, reason: '', wasClean: false, opened: true });
    expect(explainRefusal(lost, { kind: 'unreachable' })).toBe(lost);
  });

  it('never retries what the close code already ruled out', () => {
    const app = classifyClose({ code: 4001, reason: '', wasClean: true, opened: false });
    expect(explainRefusal(app, answered({ status: 503, reason: 'full', message: 'full', retry: true })).retry).toBe(false);
  });
});

describe('refusals when an access token was offered', () => {
  it('name the token among the causes before the server answers', () => {
    const v = classifyClose({ code: 1006, reason: '', wasClean: false, opened: false }, { withToken: true });
    expect(v.kind).toBe('refused');
    expect(v.title).toMatch(/refused/);
    expect(v.detail).toMatch(/access token from \?token= is invalid/);
  });
});
