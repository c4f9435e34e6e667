// Puppeteer logs in on LOGIN_URL typing TEXT (a placeholder) into the
// password field with page.type(), then submits with the page's own fetch
// and with the native form. The buttons are located before typing and
// pressed with the mouse (the page refuses the client's script once the
// secret is in it, until it navigates).
import puppeteer from 'puppeteer-core';
import { env, main, step } from './lib.mjs';

main(async () => {
  const browser = await puppeteer.connect({ browserWSEndpoint: env('WS_URL'), protocolTimeout: 30000 });
  const page = await browser.newPage();
  page.setDefaultTimeout(20000);
  await page.goto(env('LOGIN_URL'));
  await page.type('#username', env('USERNAME'));
  const center = async (sel) => {
    const b = await (await page.$(sel)).boundingBox();
    return [b.x + b.width / 2, b.y + b.height / 2];
  };
  const [fx, fy] = await center('#fetch-submit');
  const [sx, sy] = await center('#submit');
  step('type the placeholder');
  await page.type('#password', env('TEXT'));
  const refused = await page.evaluate(() => document.title).then(() => 'not refused', (e) => e.message);
  step('fetch login');
  const [resp] = await Promise.all([page.waitForResponse((r) => r.url().endsWith('/api/login')), page.mouse.click(fx, fy)]);
  const status = 'sent ' + resp.status();
  step('form login');
  await Promise.all([page.waitForNavigation(), page.mouse.click(sx, sy)]);
  const result = await page.$eval('#result', (e) => e.textContent);
  await page.close();
  await browser.disconnect();
  return { status, result, refused };
});
