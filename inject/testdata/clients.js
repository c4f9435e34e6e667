// Drives a real CDP client library through the interceptor's test proxy:
//   node clients.js <playwright-fill|playwright-press|puppeteer-type> <browser ws url> <login url> <user>
// It types the user name and the placeholder <<secret:pw>> into the login
// form and submits it; any error exits non-zero with the message on stderr.
const [, , mode, ws, url, user] = process.argv;

async function main() {
  if (mode.startsWith('playwright')) {
    const { chromium } = require('playwright-core');
    const browser = await chromium.connectOverCDP(ws);
    const context = browser.contexts()[0];
    const page = await context.newPage();
    await page.goto(url);
    if (mode === 'playwright-fill') {
      await page.fill('#user', user);
      await page.fill('#pass', '<<secret:pw>>');
    } else {
      await page.locator('#user').pressSequentially(user);
      await page.locator('#pass').pressSequentially('<<secret:pw>>');
    }
    await Promise.all([page.waitForURL('**/submit'), page.click('button')]);
    // A placeholder anywhere else is refused (goto sends it percent-encoded).
    let refused = '';
    try { await page.goto(url + '?q=<<secret:pw>>'); } catch (e) { refused = e.message; }
    if (!refused.includes('cdpvault: placeholder not allowed in Page.navigate')) throw new Error('goto not refused: ' + refused);
    await browser.close();
  } else {
    const puppeteer = require('puppeteer-core');
    const browser = await puppeteer.connect({ browserWSEndpoint: ws });
    const page = await browser.newPage();
    await page.goto(url);
    await page.type('#user', user);
    await page.type('#pass', '<<secret:pw>>');
    await Promise.all([page.waitForNavigation(), page.click('button')]);
    let refused = '';
    try { await page.goto(url + '?q=<<secret:pw>>'); } catch (e) { refused = e.message; }
    if (!refused.includes('cdpvault: placeholder not allowed in Page.navigate')) throw new Error('goto not refused: ' + refused);
    await browser.disconnect();
  }
}

main().then(() => process.exit(0), (e) => { console.error(String(e && e.stack || e)); process.exit(1); });
