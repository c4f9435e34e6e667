// Package inject owns secret injection: the cdpproxy command interceptor that
// replaces a `<<secret:NAME>>` placeholder typed by an agent with the secret's
// value, only in input commands (Input.insertText, Input.dispatchKeyEvent,
// Input.imeSetComposition), only for names granted to the session and only
// when the frame that owns the focused element has one of the secret's
// origins, checked against the live page right before each write.
//
// It also refuses every other command that carries a placeholder in any
// common escaping (JSON \u003c, percent-encoding, HTML entities), answers the
// client with a `cdpvault:` CDP error, and records an audit record and a
// metric for every attempt. It never logs, returns or labels a value: the
// value exists in plaintext only inside the memguard buffer the Vault hands
// over and in the outgoing frame buffer, which is wiped after the write.
//
// Split placeholders (one command per typed character, as Playwright
// pressSequentially/type, Puppeteer type and chromedp SendKeys send them) are
// held per CDP session, answered to the client at once, and either replaced
// by the value when the placeholder completes or re-sent in order when the
// text stops spelling a placeholder, at the latest after Options.IdleFlush.
package inject
