// Log in to the demo site through cdpvault with Playwright. The script types
// the placeholder <<secret:demo_password>>; cdpvault puts the real password
// into the page, and neither this script nor its output ever holds it.
//
//   CDP_URL=<cdp_url of a cdpvault session> SITE_URL=http://127.0.0.1:8080 node examples/playwright-login.mjs
//
// The only cdpvault-specific line is the endpoint given to connectOverCDP.
import { chromium } from 'playwright-core';

const { CDP_URL, SITE_URL } = process.env;
if (!CDP_URL || !SITE_URL) {
  console.error('set CDP_URL (a cdpvault session\'s cdp_url) and SITE_URL');
  process.exit(2);
}

const browser = await chromium.connectOverCDP(CDP_URL);
try {
  const context = browser.contexts()[0] ?? (await browser.newContext());
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  await page.goto(SITE_URL);
  await page.fill('#username', process.env.USERNAME || 'demo');
  await page.fill('#password', '<<secret:demo_password>>');
  // Submit with the Enter key: once cdpvault has typed a secret into the page,
  // it refuses the client's own script there (page.click() runs some) until
  // the page navigates. Keys and page.mouse clicks still work.
  await Promise.all([page.waitForURL('**/login'), page.keyboard.press('Enter')]);
  const outcome = (await page.textContent('#result')).trim();
  console.log(outcome);
  process.exitCode = outcome === 'login ok' ? 0 : 1;
} finally {
  await browser.close();
}
