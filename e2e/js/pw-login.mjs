// Playwright logs in on LOGIN_URL typing TEXT (a placeholder) into the
// password field with fill() (MODE=fill) or pressSequentially() (MODE=press),
// then submits with fetch and with the native form.
import { chromium } from 'playwright-core';
import { env, main } from './lib.mjs';

main(async () => {
  const browser = await chromium.connectOverCDP(env('CDP_URL'), { timeout: 30000 });
  const context = browser.contexts()[0] ?? (await browser.newContext());
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  await page.goto(env('LOGIN_URL'));
  await page.fill('#username', env('USERNAME'));
  if (env('MODE') === 'fill') {
    await page.fill('#password', env('TEXT'));
  } else {
    await page.locator('#password').pressSequentially(env('TEXT'));
  }
  await page.click('#fetch-submit');
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('sent'));
  const status = await page.textContent('#status');
  await page.click('#submit');
  await page.waitForSelector('#result');
  const result = await page.textContent('#result');
  await page.close();
  await browser.close();
  return { status, result };
});
