// Package e2e holds cdpvault's black-box end-to-end tests. They build the
// cdpvault binary, run it as an operator would (CLI set-up, `cdpvault serve`
// on loopback ports, a YAML config), and drive it only through the fixed
// external interface (docs in ../../shared/INTERFACE.md): the REST API, the
// session's cdp_url and ws_url, /metrics, signals and the daemon's log.
//
// The clients are real and unchanged except for their endpoint: Playwright
// and Puppeteer (npm packages pinned in package.json, run with node from
// js/*.mjs), chromedp's remote allocator and mafredri/cdp. The web site they
// drive is a local multi-origin test site (acme.test and evil.test mapped to
// one loopback server through Chromium's --host-resolver-rules) that records
// exactly the bytes it receives.
//
// Run: `make npm-deps && go test ./e2e/`. The tests fail (never skip) when
// the binary does not build, node or the npm packages are missing, or
// Chromium is not installed. The TestControl* tests run the same scripts
// against a Chromium driven directly, without cdpvault, to show that the site
// and the clients work and that every read-back channel of the scrub test
// really carries the value when nothing scrubs it.
//
// Environment knobs:
//
//	CDPVAULT_E2E_BINARY=/path/cdpvault  test a prebuilt binary instead of building one
//	CDPVAULT_E2E_HARNESS_ONLY=1         go on when the binary does not build (control tests run, daemon tests fail)
//	CDPVAULT_E2E_NODE_LOG_DIR=/dir      keep each client script's full stderr there (try DEBUG=pw:protocol)
package e2e
