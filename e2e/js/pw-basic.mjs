// Playwright over cdp_url: open a page, navigate, evaluate, screenshot, open a
// second page, close.
import { chromium } from 'playwright-core';
import { env, main } from './lib.mjs';

main(async () => {
  const browser = await chromium.connectOverCDP(env('CDP_URL'), { timeout: 30000 });
  const context = browser.contexts()[0] ?? (await browser.newContext());
  const page = await context.newPage();
  await page.goto(env('SITE_URL') + '/blank');
  const title = await page.title();
  const sum = await page.evaluate(() => 6 * 7);
  const shot = await page.screenshot();
  const page2 = await context.newPage();
  await page2.goto(env('SITE_URL') + '/login');
  const heading = await page2.textContent('#heading');
  await page2.close();
  await page.close();
  const version = browser.version();
  await browser.close();
  return { title, sum, heading, version, screenshotLen: shot.length, screenshotMagic: shot.subarray(0, 4).toString('hex') };
});
