// Puppeteer logs in on LOGIN_URL typing TEXT (a placeholder) into the
// password field with page.type(), then submits with fetch and with the form.
import puppeteer from 'puppeteer-core';
import { env, main } from './lib.mjs';

main(async () => {
  const browser = await puppeteer.connect({ browserWSEndpoint: env('WS_URL'), protocolTimeout: 30000 });
  const page = await browser.newPage();
  page.setDefaultTimeout(20000);
  await page.goto(env('LOGIN_URL'));
  await page.type('#username', env('USERNAME'));
  await page.type('#password', env('TEXT'));
  await page.click('#fetch-submit');
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('sent'));
  const status = await page.$eval('#status', (e) => e.textContent);
  await Promise.all([page.waitForNavigation(), page.click('#submit')]);
  const result = await page.$eval('#result', (e) => e.textContent);
  await page.close();
  await browser.disconnect();
  return { status, result };
});
