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
  const submitFetch = async (p) => {
    await p.click('#fetch-submit');
    await p.waitForFunction(() => document.getElementById('status').textContent.startsWith('sent'));
  };

  // Placeholders outside input commands.
  results.push(await attempt('navigate', () => page.goto(`${ACME}/login?p=${PH}`)));
  await page.goto(`${ACME}/login`);
  results.push(await attempt('evaluate-expression', () => page.evaluate(`'${PH}'.length`)));
  results.push(await attempt('evaluate-function-body', () => page.evaluate(new Function(`return "${PH}".length`))));
  // The arguments of Runtime.callFunctionOn pass through, never substituted.
  results.push(await attempt('evaluate-argument', () => page.evaluate((x) => x, PH)));
  results.push(await attempt('extra-http-headers', async () => {
    await page.setExtraHTTPHeaders({ 'x-token': PH });
    await page.goto(`${ACME}/blank?after=headers`);
  }));
  await page.setExtraHTTPHeaders({}).catch(() => {});
  results.push(await attempt('cookies', async () => {
    await context.addCookies([{ name: 'tok', value: PH, url: ACME }]);
    await page.goto(`${ACME}/blank?after=cookies`);
  }));

  // A form in a cross-origin iframe on an allowed top-level page.
  await page.goto(`${ACME}/frame`);
  const frame = page.frameLocator('#partner');
  results.push(await attempt('cross-origin-iframe-fill', () => frame.locator('#password').fill(PH)));
  const evilFrame = page.frames().find((f) => f.url().startsWith(EVIL));
  if (evilFrame) await submitFetch(evilFrame);

  // A navigation to another origin right before typing: the field was
  // focused on ACME, then the page went to EVIL where a field has focus.
  await page.goto(`${ACME}/login`);
  await page.click('#password');
  await page.evaluate((u) => { location.href = u; }, `${EVIL}/login?autofocus=1`);
  await page.waitForURL(`${EVIL}/login?autofocus=1`);
  await page.waitForFunction(() => document.activeElement && document.activeElement.id === 'password');
  results.push(await attempt('navigated-insert-text', () => page.keyboard.insertText(PH)));
  await submitFetch(page);
  // The same after a server-side redirect, typed one key at a time.
  await page.goto(`${ACME}/redirect-to-evil`);
  await page.waitForFunction(() => document.activeElement && document.activeElement.id === 'password');
  results.push(await attempt('redirected-type', () => page.keyboard.type(PH)));
  await submitFetch(page);

  // Names the session may not inject: unknown, not granted, another tenant's.
  for (const ph of others) {
    await page.goto(`${ACME}/login`);
    results.push(await attempt(`fill ${ph}`, () => page.fill('#password', ph)));
    await submitFetch(page);
    await page.goto(`${ACME}/login`);
    results.push(await attempt(`type ${ph}`, () => page.locator('#password').pressSequentially(ph)));
    await submitFetch(page);
  }
  await browser.close();
  return results;
});
