import { describe, expect, it } from 'vitest';
import { classifyClose, closeCodeLabel, refineRefusal, shouldRetry } from './close';

describe('classifyClose', () => {
  it('calls a 1006 before open a refusal, with an origin hint', () => {
    const v = classifyClose({ code: 1006, reason: '', wasClean: false, opened: false });
    expect(v.kind).toBe('refused');
    expect(v.retry).toBe(true);
    expect(v.title).toMatch(/refused/);
    expect(v.detail).toMatch(/origin/);
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

describe('refineRefusal', () => {
  const refused = classifyClose({ code: 1006, reason: '', wasClean: false, opened: false });

  it('blames the handshake (origin) when the server answers HTTP', () => {
    const v = refineRefusal(refused, true);
    expect(v.kind).toBe('refused');
    expect(v.title).toBe("The server refused the connection — is this page's origin allowed?");
  });

  it('says unreachable when nothing answers', () => {
    expect(refineRefusal(refused, false).title).toBe('Cannot reach the server.');
  });

  it('leaves other verdicts alone', () => {
    const lost = classifyClose({ code: 1006, reason: '', wasClean: false, opened: true });
    expect(refineRefusal(lost, true)).toBe(lost);
  });
});

describe('refusals when an access token was offered', () => {
  it('name the token before the probe, and still the origin', () => {
    const v = classifyClose({ code: 1006, reason: '', wasClean: false, opened: false }, { withToken: true });
    expect(v.kind).toBe('refused');
    expect(v.title).toMatch(/refused/);
    expect(v.detail).toMatch(/access token/);
    expect(v.detail).toMatch(/401/);
    expect(v.detail).toMatch(/origin/);
  });

  it('name the token when the server answers HTTP', () => {
    const refused = classifyClose({ code: 1006, reason: '', wasClean: false, opened: false }, { withToken: true });
    const v = refineRefusal(refused, true, { withToken: true });
    expect(v.title).toBe('The server refused the connection — is the access token valid?');
    expect(v.detail).toMatch(/\?token=.*401/);
    expect(refineRefusal(refused, false, { withToken: true }).title).toBe('Cannot reach the server.');
  });

  it('without a token, hint that the server may require one', () => {
    const refused = classifyClose({ code: 1006, reason: '', wasClean: false, opened: false });
    expect(refused.detail).not.toMatch(/token/);
    expect(refineRefusal(refused, true).detail).toMatch(/requires an access token/);
  });
});
