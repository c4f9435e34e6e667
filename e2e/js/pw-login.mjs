// Playwright logs in on LOGIN_URL typing TEXT (a placeholder) into the
// password field with fill() (MODE=fill) or pressSequentially() (MODE=press),
// then submits with the page's own fetch and with the native form.
//
// Once cdpvault has typed the secret, the page refuses the client's script
// (taint) until it navigates, so the buttons are located before typing and
// pressed with the mouse at their coordinates; what the page did is read
// from network events, not from the page.
import { chromium } from 'playwright-core';
import { env, main, step } from './lib.mjs';

main(async () => {
  const browser = await chromium.connectOverCDP(env('CDP_URL'), { timeout: 30000 });
  const context = browser.contexts()[0] ?? (await browser.newContext());
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  await page.goto(env('LOGIN_URL'));
  await page.fill('#username', env('USERNAME'));
  const fetchBox = await page.locator('#fetch-submit').boundingBox();
  const submitBox = await page.locator('#submit').boundingBox();
  step('type the placeholder');
  if (env('MODE') === 'fill') {
    await page.fill('#password', env('TEXT'));
  } else {
    await page.locator('#password').pressSequentially(env('TEXT'));
  }
  const refused = await page.evaluate(() => document.title).then(() => 'not refused', (e) => e.message);
  step('fetch login');
  const sent = page.waitForResponse((r) => r.url().endsWith('/api/login'));
  await page.mouse.click(fetchBox.x + fetchBox.width / 2, fetchBox.y + fetchBox.height / 2);
  const status = 'sent ' + (await sent).status();
  step('form login');
  await Promise.all([
    page.waitForURL((u) => u.pathname === '/login', { waitUntil: 'load' }),
    page.waitForRequest((r) => r.method() === 'POST' && r.isNavigationRequest()),
    page.mouse.click(submitBox.x + submitBox.width / 2, submitBox.y + submitBox.height / 2),
  ]);
  const result = await page.textContent('#result');
  await page.close();
  await browser.close();
  return { status, result, refused };
});
