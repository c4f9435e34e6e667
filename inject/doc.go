// Package inject owns secret injection: the cdpproxy command interceptor that
// replaces a `<<secret:NAME>>` placeholder typed by an agent with the secret's
// value, only in input commands (Input.insertText, Input.dispatchKeyEvent,
// Input.imeSetComposition), only for names granted to the session and only
// when the frame that owns the focused element has one of the secret's
// origins, checked against the live page right before each write.
//
// # Refusals
//
// Every other command that carries a placeholder, in any common escaping
// (JSON \u003c at any nesting depth, percent-encoding also doubled, HTML
// character references, JavaScript \x3c, any mix; see Contains), is answered
// with a CDP error whose message starts with "cdpvault:" and is never
// forwarded. The one exception is the `arguments` of Runtime.callFunctionOn
// (Playwright fill(), chromedp SetValue), which pass through untouched and are
// never substituted. Nested legacy messages (Target.sendMessageToTarget) are
// never a sink. Each attempt gets an audit record and a metric, never the
// value.
//
// # Split placeholders
//
// Clients that type one character per command (Playwright
// pressSequentially/type, Puppeteer type, chromedp SendKeys) spell a
// placeholder over many commands. Per CDP session, the commands that could
// still spell one are held and answered to the client at once; a key group
// (keyDown/rawKeyDown, char, keyUp, Shift) is held as a whole. When the text
// stops matching, the held commands are re-sent in their original order
// through Conn.Call, before the current command; any other command on the
// session, a non-text key (Enter, Backspace, a shortcut) or the idle limit
// (Options.IdleFlush, default 2s) also sends them on.
//
// # Where the value is written, and how
//
// The origin check runs in an isolated world of our own (Page.createIsolatedWorld
// with a random, never-announced name; its Runtime.executionContextCreated
// events are dropped and client commands naming its context ids are refused),
// so getters the page overrides in its main world are not seen. It walks
// document.activeElement through the frames it can enter, asks every
// in-process frame (Page.getFrameTree) when focus sits on a cross-origin
// frame, and the client's attached out-of-process iframe sessions
// (Target.attachedToTarget, learnt in Event) through document.hasFocus();
// if focus is in a frame nobody can verify, it refuses (fail closed). The
// result for the root frame is cross-checked with the proxy's TargetInfo.
//
// For an Input.insertText sink the value is then written in one renderer task
// that repeats the check and calls execCommand('insertText') in the focused
// frame (Runtime.callFunctionOn on our world's global, value as an argument),
// so focus cannot move between check and write; it fires beforeinput and input
// like Input.insertText. A focused element that takes no text (not an input,
// textarea or editable element) gets nothing, and nothing else is sent: it
// may stand for a frame the walk cannot see (an iframe in a closed shadow
// root is in neither activeElement nor window.frames), where an
// Input.insertText or key events would go. The write runs only on the world
// handle the check ran on (a handle names one document), while it is still
// the cached one, never in a new world. Since that task repeats the check, a write may skip the separate
// check when the page's main document has an origin the secret allows and
// the target has no attached out-of-process frames: the world of such a
// document is readied in the background when its default context is
// created (Runtime.executionContextCreated), and the write presumes focus is
// in it. When writeFn finds focus elsewhere, or the world gone, nothing was
// written or recorded and the full check runs. For an
// Input.dispatchKeyEvent sink (clients typing key by key) the value is typed as
// a keyDown(text, unmodifiedText, key)/keyUp pair per character, so keydown,
// keypress, input and keyup fire as for the client's own typing; the focus
// check is repeated before every character and typing stops if focus moved
// (key events go wherever focus is and carry the character, so at most the
// character in flight can reach the new frame); control characters go
// through Input.insertText so a value cannot tab away or submit half-typed.
// Input.imeSetComposition holding a placeholder is committed as text by the
// same checked single-task write (a separate check and composition let a
// focus-toggling page catch the value in another origin's frame); an element
// that takes no execCommand text is refused.
//
// When the Vault also implements Lister (the daemon's does), the secret's
// origins are checked against the focused frame before anything is
// decrypted. The write is refused when the focused field's validity or
// length depends on the value, when its form posts to an origin the secret
// does not allow, or, once the session has typed a value, when the field
// already holds text (fieldCheck).
//
// # Taint
//
// After a write, the typed-into document is tainted (Taints, one per daemon
// session, shared by its connections): while it is shown, every connection
// of the session is refused the commands that would run its own script,
// read objects script made, read the DOM or layout, change the DOM or
// style, hand the page content of its making, copy the selection (see
// gated) or edit text (refuseEdit); scripts for new documents are refused
// in that page until it closes (plantsScript). A prompt-injected agent
// could otherwise read the value back in forms no scrubber knows or send it
// elsewhere. The document is identified by its frame's loader and its
// top-level history entry, read right after the write (before the
// connection's next command); the check is live, so the taint sleeps while
// another document is shown and wakes if the browser brings the typed-into
// one back.
//
// The value is decrypted by the Vault into a memguard buffer, escaped straight
// from it into an outgoing params buffer sized once (never regrown), which is
// wiped when Conn.Call returns; the LockedBuffer is destroyed after the write.
// It never appears in a log, error, metric label or audit record.
package inject
