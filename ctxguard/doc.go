// Package ctxguard owns the confinement of cdpvault sessions that run in
// attach mode (config chrome.url: one existing Chrome shared by every
// session). It knows CDP and the interceptor contract of package cdpproxy;
// it knows nothing of geo pools beyond the proxy URL it is handed, and
// nothing of secrets.
//
// # Geo sessions (Guard)
//
// In launch mode a geo session's browser is started with --proxy-server; in
// attach mode that is impossible, so the daemon gives every geo session a
// Guard (NewGuard, one per daemon session) and puts Guard.Interceptor()
// FIRST in the interceptor chain of each of the session's connections. The
// Guard confines the session to the browser contexts it created through
// Target.createBrowserContext, each of which the Guard has given the pool
// forwarder as proxyServer. Every rule fails closed: when the Guard cannot
// tell where a command would send traffic, the command is refused with a
// CDP error {"code":-32000,"message":"cdpvault: ..."}.
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
//  8. Target.setAutoAttach, setDiscoverTargets, getTargets, getTargetInfo,
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
//     connectOverCDP needs it and it opens no connection. Everything else is
//     refused.
//  10. Any other command runs on a page, frame or worker: on a flattened
//     session (sessionId set, looked up with Conn.Target) or on a page-level
//     socket (/devtools/page/<id>, its own session). It passes only when that
//     target's browser context is allowed; a session the proxy does not know
//     is refused. The one exception is Runtime.runIfWaitingForDebugger, which
//     passes everywhere so that pages of other sessions that auto-attach
//     paused (waitForDebuggerOnStart) are not left hanging.
//
// Everything the browser sends back is forwarded unchanged; the Guard only
// reads responses to the createBrowserContext commands it rewrote and
// Target.* events (to learn which targets live in allowed contexts).
//
// Guard.Dispose disposes the session's contexts at session end, so no page
// of the session keeps pointing at a forwarder port that a later session's
// forwarder might reuse.
//
// HTTP discovery never reaches an interceptor, and PUT /json/new opens a
// page in Chrome's default context (which goes direct): the daemon asks
// Guard.DiscoveryAllowed before serving a geo session's discovery request.
//
// # Other attach-mode sessions (NewShared)
//
// NewShared only refuses Browser.close, Browser.crash and
// Browser.crashGpuProcess so that no agent can take the shared Chrome down.
package ctxguard
