package inject

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// nodeModules is where the e2e suite installs playwright-core and
// puppeteer-core (npm); these tests are skipped when they are absent.
var nodeModules = func() string {
	if p := os.Getenv("CDPVAULT_NODE_MODULES"); p != "" {
		return p
	}
	p, _ := filepath.Abs("../e2e/node_modules")
	return p
}()

// TestNodeClients drives Playwright fill() and pressSequentially() and
// Puppeteer type() unchanged through the interceptor (in the in-test proxy)
// against a real Chromium: the site receives exactly the stored value.
func TestNodeClients(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node")
	}
	for _, mode := range []string{"playwright-fill", "playwright-press", "puppeteer-type"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			lib := "playwright-core"
			if mode == "puppeteer-type" {
				lib = "puppeteer-core"
			}
			if _, err := os.Stat(filepath.Join(nodeModules, lib)); err != nil {
				t.Skipf("%s not installed in %s", lib, nodeModules)
			}
			s := newSite(t)
			vault := &fakeVault{secrets: map[string]fakeSecret{"pw": {value: trickyValue, origins: []string{s.origin("acme.test")}}}}
			audit := &memAudit{}
			wsURL := miniProxy(t, launchChromium(t), func() Options {
				return Options{Vault: vault, Granted: []string{"pw"}, Audit: audit, Logger: newTestLogger(testWriter{t})}
			})
			ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
			defer cancel()
			user := "bob <<x>> <<sec"
			cmd := exec.CommandContext(ctx, node, "testdata/clients.js", mode, wsURL, s.url("acme.test", "/login"), user)
			cmd.Env = append(os.Environ(), "NODE_PATH="+nodeModules)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", mode, err, out)
			}
			select {
			case got := <-s.subs:
				if want := "acme.test " + user + "\x00" + trickyValue; got != want {
					t.Fatalf("site received %q\nwant %q", got, want)
				}
			default:
				t.Fatal("no submission recorded")
			}
			injected := 0
			for _, r := range audit.all() {
				if r.Result == AuditInjected {
					injected++
				}
			}
			if injected != 1 {
				t.Fatalf("audit %+v", audit.all())
			}
		})
	}
}
