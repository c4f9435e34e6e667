// Ordinary typing: each text of TEXTS (a JSON array) is typed one key at a
// time into the #note field with Playwright pressSequentially() (CLIENT=pw) or
// Puppeteer type() (CLIENT=pptr); the field's value is read back once it has
// settled (held input may wait for the daemon's idle flush).
import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';
import { env, main } from './lib.mjs';

async function settle(read, want) {
  const deadline = Date.now() + 10000;
  let got = await read();
  while (got !== want && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    got = await read();
  }
  return got;
}

main(async () => {
  const texts = JSON.parse(env('TEXTS'));
  const out = [];
  if (env('CLIENT') === 'pw') {
    const browser = await chromium.connectOverCDP(env('CDP_URL'), { timeout: 30000 });
    const context = browser.contexts()[0] ?? (await browser.newContext());
    const page = await context.newPage();
    page.setDefaultTimeout(20000);
    await page.goto(env('LOGIN_URL'));
    for (const text of texts) {
      await page.fill('#note', '');
      await page.locator('#note').pressSequentially(text);
      out.push({ text, got: await settle(() => page.inputValue('#note'), text) });
    }
    await browser.close();
  } else {
    const browser = await puppeteer.connect({ browserWSEndpoint: env('WS_URL'), protocolTimeout: 30000 });
    const page = await browser.newPage();
    await page.goto(env('LOGIN_URL'));
    for (const text of texts) {
      await page.$eval('#note', (e) => { e.value = ''; });
      await page.type('#note', text);
      out.push({ text, got: await settle(() => page.$eval('#note', (e) => e.value), text) });
    }
    await browser.disconnect();
  }
  return out;
});
