// Every way an agent could try to get a secret somewhere other than an input
// on the secret's origin, through Playwright. Each attempt is recorded with
// its outcome; the Go test asserts the refusals and checks the site never
// received a value. ACME and EVIL are the two origins; PH is a placeholder
// the session may inject on ACME; OTHERS (JSON array) are placeholders the
// session must never inject anywhere.
import { chromium } from 'playwright-core';
import { env, main, attempt } from './lib.mjs';

main(async () => {
  const ACME = env('ACME'), EVIL = env('EVIL'), PH = env('PH');
  const others = JSON.parse(env('OTHERS'));
  const browser = await chromium.connectOverCDP(env('CDP_URL'), { timeout: 30000 });
  const context = browser.contexts()[0] ?? (await browser.newContext());
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  const results = [];
  // Submits the login form by fetch; a page that no longer works is
  // recorded (as "submit after <attempt>") instead of ending the script.
  const submitFetch = async (p) => {
    const after = results.length ? results[results.length - 1].name : 'start';
    const r = await attempt(`submit after ${after}`, async () => {
      await p.click('#fetch-submit', { timeout: 8000 });
      await p.waitForFunction(() => document.getElementById('status').textContent.startsWith('sent'), null, { timeout: 8000 });
    });
    if (!r.ok) results.push(r);
  };

  // Placeholders outside input commands. Playwright hands evaluated text to
  // its in-page helper as Runtime.callFunctionOn arguments, which pass
  // through unsubstituted; so these either get a cdpvault error or run with
  // the literal placeholder. The page reports the code points it got (which
  // no scrubbing can turn back into the placeholder) and sends the text to
  // the site.
  const codes = (s) => [...s].map((c) => c.codePointAt(0)).join(',');
  results.push(await attempt('navigate', () => page.goto(`${ACME}/login?p=${PH}`)));
  await page.goto(`${ACME}/login`);
  results.push(await attempt('evaluate-expression',
    () => page.evaluate(`(async (s) => { await fetch('/api/login', {method: 'POST', body: s}); return [...s].map((c) => c.codePointAt(0)).join(','); })('${PH}')`)));
  results.push(await attempt('evaluate-function-body', () => page.evaluate(new Function(
    `return (async (s) => { await fetch('/api/login', {method: 'POST', body: s}); return [...s].map((c) => c.codePointAt(0)).join(','); })("${PH}")`))));
  results.push(await attempt('evaluate-argument', () => page.evaluate(async (s) => {
    await fetch('/api/login', { method: 'POST', body: s });
    return [...s].map((c) => c.codePointAt(0)).join(',');
  }, PH)));
  results.push({ name: 'placeholder-codes', ok: true, value: codes(PH) });
  results.push(await attempt('extra-http-headers', async () => {
    await page.setExtraHTTPHeaders({ 'x-token': PH });
    await page.goto(`${ACME}/blank?after=headers`);
  }));
  await page.setExtraHTTPHeaders({}).catch(() => {});
  results.push(await attempt('cookies', async () => {
    await context.addCookies([{ name: 'tok', value: PH, url: ACME }]);
    await page.goto(`${ACME}/blank?after=cookies`);
  }));

  // Playwright retries a failed fill() or pressSequentially() until its
  // timeout, so those report a timeout; keyboard.insertText() reports the
  // daemon's error itself.
  const short = { timeout: 4000 };

  // Each phase below runs even if an earlier one broke; a phase that throws
  // is recorded as "phase <name>" with its error.
  const phase = async (name, fn) => {
    try {
      await fn();
    } catch (e) {
      results.push({ name: `phase ${name}`, ok: false, error: String(e && e.message ? e.message : e) });
    }
  };

  // A form in a cross-origin iframe on an allowed top-level page.
  await phase('cross-origin iframe', async () => {
  await page.goto(`${ACME}/frame`);
  const frameField = page.frameLocator('#partner').locator('#password');
  await frameField.click();
  results.push(await attempt('cross-origin-iframe-insert', () => page.keyboard.insertText(PH)));
  results.push(await attempt('cross-origin-iframe-fill', () => frameField.fill(PH, short)));
  const evilFrame = page.frames().find((f) => f.url().startsWith(EVIL));
  if (evilFrame) await submitFetch(evilFrame);
  });

  // The same with a same-site iframe of another origin (sub.acme.test), which
  // Chromium runs in the page's own process, not as a target of its own.
  await phase('same-site iframe', async () => {
  await page.goto(`${ACME}/frame?partner=sub`);
  const subField = page.frameLocator('#partner').locator('#password');
  await subField.click();
  results.push(await attempt('same-site-iframe-insert', () => page.keyboard.insertText(PH)));
  const subFrame = page.frames().find((f) => f.url().includes('//sub.acme.test'));
  if (subFrame) await submitFetch(subFrame);
  else results.push({ name: 'phase same-site iframe', ok: false, error: 'no sub.acme.test frame' });
  });

  // A navigation to another origin right before typing: the field was
  // focused on ACME, then the page went to EVIL where a field has focus.
  await phase('navigation', async () => {
  await page.goto(`${ACME}/login`);
  await page.click('#password');
  await page.evaluate((u) => { location.href = u; }, `${EVIL}/login?autofocus=1`);
  await page.waitForURL(`${EVIL}/login?autofocus=1`);
  await page.waitForFunction(() => document.activeElement && document.activeElement.id === 'password');
  results.push(await attempt('navigated-insert-text', () => page.keyboard.insertText(PH)));
  await submitFetch(page);
  });
  // The same after a server-side redirect, typed one key at a time.
  await phase('redirect', async () => {
  await page.goto(`${ACME}/redirect-to-evil`);
  await page.waitForFunction(() => document.activeElement && document.activeElement.id === 'password');
  results.push(await attempt('redirected-type', () => page.keyboard.type(PH)));
  await submitFetch(page);
  });

  // Names the session may not inject: unknown, not granted, another tenant's.
  for (const ph of others) {
    await phase(`insert and fill ${ph}`, async () => {
    await page.goto(`${ACME}/login`);
    await page.click('#password');
    results.push(await attempt(`insert ${ph}`, () => page.keyboard.insertText(ph)));
    results.push(await attempt(`fill ${ph}`, () => page.fill('#password', ph, short)));
    await submitFetch(page);
    });
    await phase(`type ${ph}`, async () => {
    await page.goto(`${ACME}/login`);
    results.push(await attempt(`type ${ph}`, () => page.locator('#password').pressSequentially(ph, short)));
    await submitFetch(page);
    });
  }
  await browser.close().catch(() => {});
  return results;
});
