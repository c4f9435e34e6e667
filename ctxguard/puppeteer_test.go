package ctxguard

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cdpvault/cdpvault/cdpproxy"
)

// puppeteerScript connects with Puppeteer (which auto-attaches at browser
// level through tab targets, waitForDebuggerOnStart), lists what it sees,
// then works in a context of its own.
const puppeteerScript = `
const puppeteer = require(process.env.PUPPETEER_CORE);
(async () => {
  const [ws, site, foreign] = process.argv.slice(2);
  const browser = await puppeteer.connect({browserWSEndpoint: ws, defaultViewport: null});
  const seen = browser.targets().map(t => t.url() + ' ' + t.type());
  console.log('TARGETS ' + JSON.stringify(seen));
  console.log('PAGES ' + (await browser.pages()).length);
  const ctx = await browser.createBrowserContext();
  const page = await ctx.newPage();
  await page.goto(site + '/puppeteer');
  console.log('TEXT ' + await page.$eval('p', e => e.textContent));
  console.log('GEO ' + await page.evaluate('[Intl.DateTimeFormat().resolvedOptions().timeZone, navigator.language, Intl.DateTimeFormat().resolvedOptions().locale].join("|")'));
  const again = browser.targets().map(t => t.url());
  console.log('FOREIGN-SEEN ' + again.some(u => u.includes(foreign)));
  await ctx.close();
  await browser.disconnect();
})().catch(e => { console.log('ERROR ' + e.message); process.exit(1); });
`

// TestPuppeteerDirectSession runs the real Puppeteer client (the copy the
// e2e package installs) against a direct session's Guard while another
// client has a page open in the shared browser.
func TestPuppeteerDirectSession(t *testing.T) {
	t.Parallel()
	runPuppeteer(t, false)
}

// TestPuppeteerGeoSession: the same with a geo session's Guard; the page
// has the pool's time zone and language.
func TestPuppeteerGeoSession(t *testing.T) {
	t.Parallel()
	runPuppeteer(t, true)
}

func runPuppeteer(t *testing.T, geo bool) {
	pp, _ := filepath.Abs("../e2e/node_modules/puppeteer-core")
	node, err := exec.LookPath("node")
	if _, serr := os.Stat(filepath.Join(pp, "package.json")); err != nil || serr != nil {
		t.Skip("node or puppeteer-core (installed by the e2e package: cd e2e && npm ci) not available")
	}
	ch := startChrome(t)
	st := newSite(t)
	g := NewGuard(Options{Direct: true})
	if geo {
		g = NewGuard(Options{ProxyServer: "http://" + newRecProxy(t).addr, BypassList: "<-loopback>", Timezone: "Asia/Tokyo", Locale: "de-DE", AcceptLanguage: "de-DE,de"})
	}
	base := serveProxy(t, ch.base, func(*cdpproxy.Session) []cdpproxy.Interceptor {
		return []cdpproxy.Interceptor{g.Interceptor()}
	})
	// another tenant's page, in a context of its own, with a marker URL
	other := dial(t, browserWS(t, ch.base))
	obc := field[string](t, other.ok("Target.createBrowserContext", nil, ""), "browserContextId")
	other.ok("Target.createTarget", map[string]any{"url": st.url + "/other-tenant", "browserContextId": obc}, "")

	script := filepath.Join(t.TempDir(), "pp.cjs")
	if err := os.WriteFile(script, []byte(puppeteerScript), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, browserWS(t, base), st.url, "/other-tenant")
	cmd.Env = append(os.Environ(), "PUPPETEER_CORE="+pp)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("puppeteer: %v\n%s", err, out)
	}
	t.Logf("puppeteer:\n%s", out)
	if !strings.Contains(string(out), "TEXT hello") {
		t.Fatalf("own context page did not load:\n%s", out)
	}
	if got := strings.Contains(string(out), "GEO Asia/Tokyo|de-DE|de-DE\n"); got != geo {
		t.Fatalf("the page's time zone and language (geo %v):\n%s", geo, out)
	}
	if strings.Contains(string(out), "other-tenant") || !strings.Contains(string(out), "PAGES 0\n") || !strings.Contains(string(out), "FOREIGN-SEEN false") {
		t.Fatalf("Puppeteer sees pages outside the session's contexts:\n%s", out)
	}
	// the other client's page was not left paused by the session's
	// auto-attach: it still answers
	if v := other.ok("Target.getTargets", nil, ""); !strings.Contains(string(v), "/other-tenant") {
		t.Fatalf("the other page is gone: %s", v)
	}
}
