// Package ctxguard owns the confinement of cdpvault sessions that run in
// attach mode (config chrome.url: one existing Chrome shared by every
// session). It knows CDP and the interceptor contract of package cdpproxy;
// it knows nothing of geo pools beyond the proxy URL it is handed, and
// nothing of secrets.
//
// # Attach-mode sessions (Guard)
//
// Every session in attach mode gets a Guard (NewGuard, one per daemon
// session) and puts Guard.Interceptor() FIRST in the interceptor chain of
// each of the session's connections. The Guard confines the session to the
// browser contexts it created through Target.createBrowserContext and hides
// everything else in the shared browser from it. Every rule fails closed:
// when the Guard cannot tell where a command would act, the command is
// refused with a CDP error {"code":-32000,"message":"cdpvault: ..."}; when
// it cannot tell whose a message is, the message is not shown.
//
// A geo session's Guard (Options.ProxyServer set) gives each of its
// contexts the pool forwarder as proxyServer: in launch mode a geo
// session's browser is started with --proxy-server, in attach mode that is
// impossible. A session without a pool gets a Guard with Options.Direct:
// its createBrowserContext is forwarded unchanged (rule 4 below does not
// apply: no pool is involved, so agent proxy parameters are allowed).
//
// A geo session's Guard also carries the pool's time zone and language
// (Options.Timezone, Locale, AcceptLanguage): launch mode sets them with TZ
// and --lang, attach mode cannot. Whenever Chrome attaches one of the
// session's targets (page, iframe, worker) to a connection of the session
// (Target.attachedToTarget, auto-attach included, or a page socket's first
// command), the daemon sends on that target's CDP session
// Emulation.setTimezoneOverride, Emulation.setLocaleOverride and
// Network.setUserAgentOverride (the browser's own User-Agent, the pool's
// acceptLanguage: Accept-Language and navigator.language). Every client
// command on that CDP session waits until they are in place, so with
// waitForDebuggerOnStart the target runs no script before them; when they
// fail the client's commands there are refused (MsgNoEmulation) and a
// paused target stays paused. Methods a worker lacks are skipped (its
// renderer's time zone is the page's). An agent's own override command
// with an empty value (which clears the override in Chrome) gets the pool's
// value instead. Target.createTarget with a url other than about:blank is
// refused (MsgCreateTargetURL): Chrome sends that first request before any
// client can attach, and so are Target.attachToTarget and
// Target.setAutoAttach without flatten: true (MsgLegacyGeo): the daemon
// cannot send its overrides on a legacy session. The overrides live as long as the CDP session they
// were sent on: a target no connection of the session is attached to runs
// with the host's time zone and language.
//
// Agents must therefore create a context first
// (createBrowserContext -> createTarget{browserContextId} ->
// attachToTarget). Playwright's connectOverCDP users call
// browser.newContext() (browser.contexts()[0], the shared default context,
// has no pages for them and newPage there is refused); Puppeteer users
// call browser.createBrowserContext().
//
// The rules, checked in this order for every client command (flattened,
// page-socket or legacy nested Target.sendMessageToTarget commands alike):
//
//  1. The command object and its params must not repeat a member name
//     (Chrome and Go could read different values); otherwise refused.
//  2. Browser.close, Browser.crash and Browser.crashGpuProcess are refused:
//     the shared Chrome must outlive every agent.
//  3. Any command whose params carry browserContextId must name an allowed
//     context (one this session created through the Guard).
//  4. Target.createBrowserContext carrying proxyServer or proxyBypassList
//     (any value, even empty) is refused. Otherwise it is replaced by the
//     same command with proxyServer = Options.ProxyServer and
//     proxyBypassList = Options.BypassList (every other parameter, such as
//     disposeOnDetach, kept). The browserContextId of its successful
//     response becomes allowed for every connection of the session. A nested
//     (legacy) createBrowserContext cannot be rewritten and is refused. With
//     no ProxyServer configured it is refused.
//  5. Target.createTarget must carry an allowed browserContextId.
//  6. Target.attachToTarget, activateTarget, closeTarget and
//     autoAttachRelated must name a target in an allowed context. The
//     target's context is known from the targets this session saw created,
//     attached or announced; otherwise it is asked with Target.getTargetInfo;
//     on any doubt the command is refused.
//  7. Target.attachToBrowserTarget (a second browser session),
//     exposeDevToolsProtocol (a CDP channel from page script that bypasses
//     cdpvault) and openDevTools (a DevTools window whose front end loads
//     outside the session's context) are refused, and so is
//     setRemoteLocations (it makes the browser itself connect to any
//     host:port, directly).
//  8. Target.setAutoAttach, setDiscoverTargets, getTargets, getTargetInfo
//     (its answer is filtered, below),
//     getBrowserContexts, detachFromTarget and sendMessageToTarget (whose
//     nested command went through these rules on its own) pass on any
//     session: they reveal or detach but open nothing.
//     Any other Target method is refused.
//  9. On the browser socket's own session (no sessionId, target type
//     "browser") only these pass: the Target methods above, Browser.getVersion,
//     getWindowForTarget, getWindowBounds, setWindowBounds, getHistograms,
//     getHistogram, and the context-scoped Browser.setDownloadBehavior,
//     cancelDownload, grantPermissions, resetPermissions, setPermission and
//     Storage.* — those only with an allowed browserContextId —, plus
//     SystemInfo.* and Schema.*. Browser.setDownloadBehavior without
//     browserContextId (the default context) passes too: Playwright's
//     connectOverCDP needs it and it opens no connection.
//     Runtime.runIfWaitingForDebugger passes (a no-op there). Everything
//     else is refused. On every session, a non-Target command naming a
//     targetId (Browser.getWindowForTarget) needs an own target (and on the
//     browser session one at all), and Browser.getWindowBounds and
//     setWindowBounds need a windowId that getWindowForTarget returned for
//     an own target.
//  10. Any other command runs on a page, frame or worker: on a flattened
//     session (sessionId set, looked up with Conn.Target) or on a page-level
//     socket (/devtools/page/<id>, its own session). It passes only when that
//     target's browser context is allowed; a session the proxy does not know
//     is refused.
//
// # What the client sees
//
// Everything the browser sends is filtered so that a session never learns
// of another session's (or the default context's) targets:
//
//   - every event and response on a CDP session (flattened sessionId, or a
//     legacy Target.receivedMessageFromTarget) whose target is not in one of
//     the session's contexts is dropped; an unknown session counts as
//     foreign. On a page-level socket, nothing is shown until the page is
//     known to be the session's;
//   - Target.targetCreated, targetInfoChanged and attachedToTarget are shown
//     only for targets in the session's contexts (and the browser target);
//     targetDestroyed, targetCrashed and detachedFromTarget only for targets
//     or sessions known to be the session's (contexts it disposed included);
//   - the answers to Target.getTargets and Target.getBrowserContexts keep
//     only the session's targets and contexts (the rest of the message, id
//     and sessionId included, byte for byte); Target.getTargetInfo of a
//     foreign target is answered with an error; an answer that cannot be
//     read is replaced by an error.
//
// Browser-level auto-attach (Target.setAutoAttach, which Playwright and
// Puppeteer send with waitForDebuggerOnStart:true) makes Chrome attach the
// connection to every page of the browser. For a foreign page the Guard
// drops the attachedToTarget, and the daemon itself (Conn.Call from a
// goroutine with the Conn kept from Command) sends
// Runtime.runIfWaitingForDebugger to it if Chrome paused it for this
// client, then Target.detachFromTarget: another session's new pages are
// never left paused, and their events stop flowing to this connection.
// Refusing waitForDebuggerOnStart instead would break Playwright and
// Puppeteer.
//
// The Guard reads only identifiers (sessionId, targetId, type,
// browserContextId) of what it filters, never URLs or titles.
//
// Guard.Dispose disposes the session's contexts at session end, so no page
// of the session outlives it in the shared browser (where the next
// session's agent could find it), and none keeps pointing at a forwarder
// port that a later session's forwarder might reuse.
//
// HTTP discovery never reaches an interceptor. PUT /json/new opens a page
// in Chrome's default context: the daemon asks Guard.DiscoveryAllowed
// before serving a session's discovery request. /json and /json/list list
// every target of the browser: the daemon's discovery hook passes them
// through Guard.FilterDiscovery, which keeps only targets known to be in
// the session's contexts.
//
// # Launch mode (NewShared, NewLaunchGeo)
//
// NewShared only refuses Browser.close, Browser.crash and
// Browser.crashGpuProcess so that no agent can take a shared Chrome down
// (no longer used by the daemon for attach mode, which gives every session a
// Guard). NewLaunchGeo is for geo sessions in launch mode: it refuses a
// createBrowserContext that names its own proxy.
package ctxguard
