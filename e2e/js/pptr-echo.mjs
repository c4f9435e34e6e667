// Puppeteer reads the echo page (ECHO_URL) back in every way it offers:
// content, evaluate, $eval, accessibility snapshot, console messages,
// request and response headers and bodies.
import puppeteer from 'puppeteer-core';
import { env, main } from './lib.mjs';
import { readEchoPage } from './echo-page.mjs';

main(async () => {
  const browser = await puppeteer.connect({ browserWSEndpoint: env('WS_URL'), protocolTimeout: 30000 });
  const page = await browser.newPage();
  page.setDefaultTimeout(20000);
  const consoleMessages = [];
  page.on('console', (m) => consoleMessages.push({ text: m.text(), args: m.args().length }));
  const exchanges = [];
  page.on('requestfinished', (req) => {
    if (!req.url().includes('/echo-api')) return;
    exchanges.push((async () => {
      const resp = req.response();
      return {
        url: req.url(),
        requestHeaders: req.headers(),
        requestPostData: req.postData() ?? null,
        responseHeaders: resp.headers(),
        responseText: await resp.text(),
      };
    })());
  });
  const nav = await page.goto(env('ECHO_URL'));
  await page.waitForFunction(() => document.getElementById('loaded').textContent === 'ECHO DONE');
  const n = Number(env('N'));
  while (exchanges.length < n) await new Promise((r) => setTimeout(r, 20));
  const out = {
    documentResponseText: await nav.text(),
    content: await page.content(),
    evaluate: await page.evaluate(readEchoPage),
    fieldValues: await page.$$eval('.field', (es) => es.map((e) => e.value)),
    accessibility: await page.accessibility.snapshot(),
    consoleMessages,
    exchanges: await Promise.all(exchanges),
  };
  await browser.disconnect();
  return out;
});
