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

// playwrightScript connects with Playwright's connectOverCDP, tries a page
// in the default (shared) context, then opens its own context and page.
const playwrightScript = `
const { chromium } = require(process.env.PLAYWRIGHT_CORE);
(async () => {
  const [cdpUrl, site] = process.argv.slice(2);
  const browser = await chromium.connectOverCDP(cdpUrl);
  console.log('DEFAULT-PAGES ' + browser.contexts()[0].pages().length);
  try {
    await browser.contexts()[0].newPage();
    console.log('DEFAULT-PAGE-OPENED');
  } catch (e) { console.log('DEFAULT-REFUSED ' + e.message.split('\n')[0]); }
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await page.goto(site + '/playwright');
  console.log('TEXT ' + await page.textContent('p'));
  console.log('GEO ' + await page.evaluate('[Intl.DateTimeFormat().resolvedOptions().timeZone, navigator.language, Intl.DateTimeFormat().resolvedOptions().locale].join("|")'));
  await ctx.close();
  await browser.close();
})().catch(e => { console.log('ERROR ' + e.message); process.exit(1); });
`

// TestPlaywrightGeoSession runs the real Playwright client (the copy the
// e2e package installs) against the Guard.
func TestPlaywrightGeoSession(t *testing.T) {
	t.Parallel()
	runPlaywright(t, false)
}

// TestPlaywrightDirectSession: a session without a geo pool in attach mode
// works with Playwright in a context of its own and does not see the
// shared default context's page Chrome started with.
func TestPlaywrightDirectSession(t *testing.T) {
	t.Parallel()
	runPlaywright(t, true)
}

func runPlaywright(t *testing.T, direct bool) {
	pw, _ := filepath.Abs("../e2e/node_modules/playwright-core")
	node, err := exec.LookPath("node")
	if _, serr := os.Stat(filepath.Join(pw, "package.json")); err != nil || serr != nil {
		t.Skip("node or playwright-core (installed by the e2e package: cd e2e && npm ci) not available")
	}
	ch := startChrome(t)
	st := newSite(t)
	pool := newRecProxy(t)
	g := NewGuard(Options{ProxyServer: "http://" + pool.addr, BypassList: "<-loopback>", Direct: direct, Timezone: "Asia/Tokyo", Locale: "de-DE", AcceptLanguage: "de-DE,de"})
	sharedPage(t, ch.base, "") // control: Chrome has a page the session must not see
	base := serveProxy(t, ch.base, func(*cdpproxy.Session) []cdpproxy.Interceptor {
		return []cdpproxy.Interceptor{g.Interceptor()}
	})
	script := filepath.Join(t.TempDir(), "pw.cjs")
	if err := os.WriteFile(script, []byte(playwrightScript), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, base, st.url)
	cmd.Env = append(os.Environ(), "PLAYWRIGHT_CORE="+pw)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("playwright: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "DEFAULT-REFUSED ") || !strings.Contains(string(out), MsgCreateTarget) {
		t.Fatalf("a page in the default context was not refused:\n%s", out)
	}
	if !strings.Contains(string(out), "TEXT hello") {
		t.Fatalf("own context page did not load:\n%s", out)
	}
	if !strings.Contains(string(out), "DEFAULT-PAGES 0\n") {
		t.Fatalf("Playwright sees pages of the shared default context:\n%s", out)
	}
	if geo := strings.Contains(string(out), "GEO Asia/Tokyo|de-DE|de-DE\n"); geo == direct {
		t.Fatalf("the page's time zone and language (direct %v):\n%s", direct, out)
	}
	if direct {
		if hs := st.got("/playwright"); len(hs) != 1 || hs[0].viaProxy {
			t.Fatalf("/playwright in a direct session: site saw %v", hs)
		}
		return
	}
	if hs := st.got("/playwright"); len(hs) != 1 || !hs[0].viaProxy || !pool.saw(st.url+"/playwright") {
		t.Fatalf("/playwright: site saw %v", hs)
	}
	for _, h := range st.all() {
		if !h.viaProxy {
			t.Errorf("direct request to the site: %s", h.path)
		}
	}
}
