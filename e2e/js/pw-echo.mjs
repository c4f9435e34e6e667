// Playwright reads the echo page (ECHO_URL) back in every way it offers:
// content, innerText, evaluate, inputValue, getAttribute, aria snapshot,
// console messages, request and response headers and bodies.
import { chromium } from 'playwright-core';
import { env, main } from './lib.mjs';
import { readEchoPage } from './echo-page.mjs';

main(async () => {
  const browser = await chromium.connectOverCDP(env('CDP_URL'), { timeout: 30000 });
  const context = browser.contexts()[0] ?? (await browser.newContext());
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  const consoleMessages = [];
  page.on('console', (m) => consoleMessages.push(m.text()));
  const exchanges = [];
  page.on('requestfinished', async (req) => {
    if (!req.url().includes('/echo-api')) return;
    exchanges.push((async () => {
      const resp = await req.response();
      return {
        url: req.url(),
        requestHeaders: await req.allHeaders(),
        requestPostData: req.postData(),
        requestPostDataBuffer: req.postDataBuffer()?.toString('base64') ?? null,
        responseHeaders: await resp.allHeaders(),
        responseText: await resp.text(),
        responseBodyBase64: (await resp.body()).toString('base64'),
      };
    })());
  });
  const nav = await page.goto(env('ECHO_URL'));
  await page.waitForFunction(() => document.getElementById('loaded').textContent === 'ECHO DONE');
  const n = Number(env('N'));
  while (exchanges.length < n) await new Promise((r) => setTimeout(r, 20));
  const out = {
    documentResponseText: await nav.text(),
    documentResponseHeaders: await nav.allHeaders(),
    content: await page.content(),
    innerText: await page.innerText('body'),
    textContent: await page.textContent('body'),
    innerHTML: await page.innerHTML('body'),
    evaluate: await page.evaluate(readEchoPage),
    inputValue: [],
    getAttribute: [],
    ariaSnapshot: await page.locator('body').ariaSnapshot(),
    consoleMessages,
    exchanges: await Promise.all(exchanges),
  };
  for (let i = 0; i < n; i++) {
    out.inputValue.push(await page.inputValue(`#field${i}`));
    out.getAttribute.push(await page.getAttribute(`#attr${i}`, 'title'));
    out.getAttribute.push(await page.getAttribute(`#b64${i}`, 'data-v'));
    out.getAttribute.push(await page.getAttribute(`#link${i}`, 'href'));
  }
  await browser.close();
  return out;
});
