// Puppeteer over ws_url: open a page, navigate, evaluate, screenshot, open a
// second page, close.
import puppeteer from 'puppeteer-core';
import { env, main } from './lib.mjs';

main(async () => {
  const browser = await puppeteer.connect({ browserWSEndpoint: env('WS_URL'), protocolTimeout: 30000 });
  const page = await browser.newPage();
  await page.goto(env('SITE_URL') + '/blank');
  const title = await page.title();
  const sum = await page.evaluate(() => 6 * 7);
  const shot = Buffer.from(await page.screenshot());
  const page2 = await browser.newPage();
  await page2.goto(env('SITE_URL') + '/login');
  const heading = await page2.$eval('#heading', (e) => e.textContent);
  await page2.close();
  await page.close();
  const version = await browser.version();
  await browser.disconnect();
  return { title, sum, heading, version, screenshotLen: shot.length, screenshotMagic: shot.subarray(0, 4).toString('hex') };
});
