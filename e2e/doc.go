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
// Chromium is not installed.
package e2e
