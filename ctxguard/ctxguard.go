package ctxguard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cdpvault/cdpvault/cdpproxy"
)

// Refusal messages (part of what agents see; tests pin them).
const (
	MsgProxyServer     = "cdpvault: proxyServer is chosen by cdpvault (a session's traffic goes through its geo pool or directly)"
	MsgCreateTarget    = "cdpvault: sessions in attach mode open pages only in their own browser context; call Target.createBrowserContext first"
	MsgBrowserClose    = "cdpvault: the browser is shared (attach mode); it cannot be closed or crashed from a session"
	MsgForeignCtx      = "cdpvault: sessions in attach mode may only use their own browser contexts (created with Target.createBrowserContext)"
	MsgForeignTarget   = "cdpvault: sessions in attach mode may only use targets in their own browser contexts"
	MsgRootDomain      = "cdpvault: on the browser session a session in attach mode may only use Target, Browser.getVersion, SystemInfo, Schema and context-scoped commands of its own browser contexts"
	MsgTargetMethod    = "cdpvault: this Target method is not available to sessions in attach mode"
	MsgNoProxy         = "cdpvault: the session's geo proxy is not available"
	MsgNested          = "cdpvault: Target.createBrowserContext cannot be sent through Target.sendMessageToTarget"
	MsgCreateTargetURL = "cdpvault: in a geo session Target.createTarget takes url about:blank (then Page.navigate), so the pool's time zone and language are in place before the page's first request"
	MsgLegacyGeo       = "cdpvault: in a geo session CDP sessions must be flattened (flatten: true), so the pool's time zone and language can be applied to them"
	MsgMalformed       = "cdpvault: command params must be a JSON object without repeated members"
	MsgWithheld        = "cdpvault: response withheld (not a well-formed CDP response)"
)

// lookupTimeout bounds the Target.getTargetInfo a check may need.
const lookupTimeout = 10 * time.Second

// maxTargets bounds the per-session cache of target contexts.
const maxTargets = 1 << 16

// Options configure a Guard.
type Options struct {
	// ProxyServer is the geo forwarder's URL, e.g. "http://127.0.0.1:41234"
	// (geo.Forwarder.ProxyURL()). Empty: every createBrowserContext is
	// refused (fail closed).
	ProxyServer string
	// BypassList is given as proxyBypassList; use geo.ProxyBypassList
	// ("<-loopback>") so loopback goes through the forwarder too.
	BypassList string
	// Direct marks a session without a geo pool: Target.createBrowserContext
	// is forwarded unchanged (agent proxy parameters included: no pool is
	// involved) and its context becomes allowed. ProxyServer and BypassList
	// are ignored. Every other rule is the same as for geo sessions.
	Direct bool
	// Logger receives refusals (method and rule, never a payload); nil
	// discards.
	Logger *slog.Logger
	// Timezone (IANA name) and Locale (BCP 47 tag) are the geo pool's
	// (ignored with Direct). When set, every target of the session's
	// contexts that a connection of the session attaches to (pages,
	// iframes, workers) gets Emulation.setTimezoneOverride,
	// Emulation.setLocaleOverride and Network.setUserAgentOverride with
	// AcceptLanguage (default: Locale) before the client's first command on
	// it runs (Runtime.runIfWaitingForDebugger included).
	Timezone       string
	Locale         string
	AcceptLanguage string
}

// Guard is one daemon session's confinement in attach mode: the browser
// contexts it created (a geo session's with the pool's proxy) and what it learned of the
// targets in them. It is shared by all of the session's connections and
// safe for concurrent use.
type Guard struct {
	o   Options
	log *slog.Logger

	mu      sync.Mutex
	allowed map[string]struct{} // browserContextId
	former  map[string]struct{} // disposed own contexts: their events stay visible
	targets map[string]string   // targetId -> browserContextId
	windows map[string]struct{} // windowIds of own targets (Browser.getWindowForTarget answers)

	emuFields
}

// NewGuard creates the Guard of one daemon session. It starts nothing.
func NewGuard(o Options) *Guard {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Guard{o: o, log: log, allowed: map[string]struct{}{}, former: map[string]struct{}{}, targets: map[string]string{}, windows: map[string]struct{}{}}
}

// Interceptor returns the interceptor for one connection of the session;
// the daemon's Factory calls it for every connection and puts it first.
func (g *Guard) Interceptor() cdpproxy.Interceptor {
	return &geoConn{g: g, creating: map[pendKey]struct{}{}, targetsIn: map[pendKey]string{}, sessions: map[string]bool{}, emu: map[string]*emuState{}}
}

// Contexts returns the browser contexts the session created, sorted.
func (g *Guard) Contexts() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, 0, len(g.allowed))
	for id := range g.allowed {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// Allowed reports whether browserContextID is one of the session's.
func (g *Guard) Allowed(browserContextID string) bool {
	if browserContextID == "" {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.allowed[browserContextID]
	return ok
}

func (g *Guard) allow(id string) {
	g.mu.Lock()
	g.allowed[id] = struct{}{}
	g.mu.Unlock()
}

func (g *Guard) forget(id string) {
	g.mu.Lock()
	if _, ok := g.allowed[id]; ok {
		delete(g.allowed, id)
		if len(g.former) < maxTargets {
			g.former[id] = struct{}{}
		}
	}
	g.mu.Unlock()
}

func (g *Guard) learnWindow(id string) {
	if id == "" {
		return
	}
	g.mu.Lock()
	if len(g.windows) >= maxTargets {
		clear(g.windows) // ask Browser.getWindowForTarget again
	}
	g.windows[id] = struct{}{}
	g.mu.Unlock()
}

// ownWindow reports whether windowID (its JSON text) holds one of the
// session's targets.
func (g *Guard) ownWindow(id string) bool {
	if id == "" {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.windows[id]
	return ok
}

// windowID returns the JSON text of params.windowId ("" when absent or
// repeated).
func windowID(params []byte) string {
	if len(params) == 0 {
		return ""
	}
	v, err := member(params, "windowId")
	if err != nil {
		return ""
	}
	return string(v)
}

// ours reports whether browserContextID is or was one of the session's:
// what happens in it may be shown to the session (events about a disposed
// context's pages), though nothing may use it once disposed.
func (g *Guard) ours(browserContextID string) bool {
	if browserContextID == "" {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.allowed[browserContextID]
	if !ok {
		_, ok = g.former[browserContextID]
	}
	return ok
}

func (g *Guard) learnTarget(targetID, browserContextID string) {
	if targetID == "" || browserContextID == "" {
		return
	}
	g.mu.Lock()
	if len(g.targets) >= maxTargets {
		clear(g.targets) // a cache: lookups fall back to Target.getTargetInfo
	}
	g.targets[targetID] = browserContextID
	g.mu.Unlock()
}

func (g *Guard) targetContext(targetID string) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	id, ok := g.targets[targetID]
	return id, ok
}

func (g *Guard) dropTarget(targetID string) {
	g.mu.Lock()
	delete(g.targets, targetID)
	g.mu.Unlock()
}

type pendKey struct {
	sid string
	id  int64
}

// geoConn is the Guard's interceptor on one connection.
type geoConn struct {
	g *Guard

	mu        sync.Mutex
	creating  map[pendKey]struct{} // rewritten createBrowserContext awaiting its response
	targetsIn map[pendKey]string   // createTarget awaiting its response -> its context
	cmdConn   cdpproxy.Conn        // the Conn of Command, for calls made on behalf of Event
	emu       map[string]*emuState // geo overrides per attached CDP session ("" = a page socket's own)

	// sessions maps the CDP sessions attached on this connection to whether
	// their target is in one of the session's contexts (Event goroutine only).
	sessions map[string]bool
}

func (ic *geoConn) refuse(c cdpproxy.Conn, m *cdpproxy.Message, msg string) (cdpproxy.Verdict, error) {
	sid := ""
	if s := c.Session(); s != nil {
		sid = s.ID
	}
	ic.g.log.Info("cdp command refused by geo context guard", "session", sid, "method", m.Method, "reason", msg)
	return cdpproxy.Verdict{Kind: cdpproxy.Reply, Data: cdpproxy.ErrorReply(m, msg)}, nil
}

var forward = cdpproxy.Verdict{}

// Target methods that only reveal or detach (rule 8).
var passTarget = map[string]bool{
	"Target.setAutoAttach": true, "Target.setDiscoverTargets": true, "Target.getTargets": true,
	"Target.getTargetInfo": true, "Target.getBrowserContexts": true, "Target.detachFromTarget": true,
	"Target.sendMessageToTarget": true,
}

// Target methods acting on a targetId (rule 6).
var targetScoped = map[string]bool{
	"Target.attachToTarget": true, "Target.activateTarget": true, "Target.closeTarget": true,
	"Target.autoAttachRelated": true,
}

// Browser methods allowed on the browser session (rule 9).
var rootBrowser = map[string]bool{
	"Browser.getVersion": true, "Browser.getWindowForTarget": true,
	"Browser.getHistograms": true, "Browser.getHistogram": true,
}

// Browser methods allowed on the browser session with an allowed
// browserContextId (rule 9).
var rootContextScoped = map[string]bool{
	"Browser.setDownloadBehavior": true, "Browser.cancelDownload": true, "Browser.grantPermissions": true,
	"Browser.resetPermissions": true, "Browser.setPermission": true,
}

func isBrowserKill(method string) bool {
	switch method {
	case "Browser.close", "Browser.crash", "Browser.crashGpuProcess":
		return true
	}
	return false
}

// Command implements cdpproxy.Interceptor.
func (ic *geoConn) Command(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message) (cdpproxy.Verdict, error) {
	ic.mu.Lock()
	if ic.cmdConn == nil {
		ic.cmdConn = c
	}
	ic.mu.Unlock()
	if m.SessionID != "" && !m.Nested && !ic.awaitEmulation(ctx, m.SessionID) {
		return ic.refuse(c, m, MsgNoEmulation)
	}
	v, err := ic.command(ctx, c, m)
	if err != nil || v.Kind != cdpproxy.Forward || v.Data != nil {
		return v, err
	}
	out, ok := ic.keepGeo(ctx, c, m)
	if !ok {
		return ic.refuse(c, m, MsgMalformed)
	}
	if out != nil {
		return cdpproxy.Verdict{Kind: cdpproxy.Replace, Data: out}, nil
	}
	return v, nil
}

func (ic *geoConn) command(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message) (cdpproxy.Verdict, error) {
	f, err := commandFields(m.Raw)
	if err != nil {
		return ic.refuse(c, m, MsgMalformed)
	}
	if isBrowserKill(m.Method) {
		return ic.refuse(c, m, MsgBrowserClose)
	}
	hasBC, bc := f.hasBC, f.bc
	if hasBC && !ic.g.Allowed(bc) {
		if m.Method == "Target.createTarget" {
			return ic.refuse(c, m, MsgCreateTarget)
		}
		return ic.refuse(c, m, MsgForeignCtx)
	}

	if f.targetID != "" && !strings.HasPrefix(m.Method, "Target.") {
		// e.g. Browser.getWindowForTarget, on any session: own targets only
		if ok, why := ic.targetAllowed(ctx, c, f.targetID); !ok {
			return ic.refuse(c, m, why)
		}
	}
	if (m.Method == "Browser.getWindowBounds" || m.Method == "Browser.setWindowBounds") && !ic.g.ownWindow(windowID(f.params)) {
		// a window is the session's when Browser.getWindowForTarget of one
		// of its targets named it
		return ic.refuse(c, m, MsgForeignTarget)
	}

	if ic.g.emulating() && (m.Method == "Target.attachToTarget" || m.Method == "Target.setAutoAttach") {
		// the daemon's overrides need a flattened session to be sent on
		if v, err := member(f.params, "flatten"); err != nil || string(v) != "true" {
			return ic.refuse(c, m, MsgLegacyGeo)
		}
	}

	switch {
	case m.Method == "Target.createBrowserContext":
		return ic.createContext(c, m, f)
	case m.Method == "Target.createTarget":
		if !hasBC { // an allowed one was checked above
			return ic.refuse(c, m, MsgCreateTarget)
		}
		if ic.g.emulating() {
			// Chrome sends the first request of a page created on a URL
			// before any client can attach and apply the pool's language
			u, err := member(f.params, "url")
			if err != nil || (u != nil && jsonString(u) != "" && jsonString(u) != "about:blank") {
				return ic.refuse(c, m, MsgCreateTargetURL)
			}
		}
		if m.HasID && !m.Nested {
			ic.mu.Lock()
			ic.targetsIn[pendKey{m.SessionID, m.ID}] = bc
			ic.mu.Unlock()
		}
		return forward, nil
	case m.Method == "Target.disposeBrowserContext":
		if !hasBC {
			return ic.refuse(c, m, MsgForeignCtx)
		}
		ic.g.forget(bc) // from now on nothing may use it, whatever Chrome answers
		return forward, nil
	case targetScoped[m.Method]:
		ok, why := ic.targetAllowed(ctx, c, f.targetID)
		if !ok {
			return ic.refuse(c, m, why)
		}
		return forward, nil
	case m.Method == "Target.attachToBrowserTarget", m.Method == "Target.exposeDevToolsProtocol",
		m.Method == "Target.openDevTools", m.Method == "Target.setRemoteLocations":
		return ic.refuse(c, m, MsgTargetMethod)
	case passTarget[m.Method]:
		return forward, nil
	case strings.HasPrefix(m.Method, "Target."):
		return ic.refuse(c, m, MsgTargetMethod)
	}

	if m.SessionID == "" {
		root, ok := c.Target("")
		if !ok {
			return ic.refuse(c, m, MsgForeignTarget)
		}
		if root.Type == "browser" {
			return ic.rootCommand(ctx, c, m, f)
		}
		// page-level socket: the page itself must be in an allowed context
		if ok, why := ic.targetAllowed(ctx, c, root.TargetID); !ok {
			return ic.refuse(c, m, why)
		}
		if !ic.ensurePageSocket(ctx, c, root.Type) {
			return ic.refuse(c, m, MsgNoEmulation)
		}
		return forward, nil
	}
	ti, ok := c.Target(m.SessionID)
	if !ok {
		return ic.refuse(c, m, MsgForeignTarget)
	}
	if ti.Type == "browser" {
		return ic.rootCommand(ctx, c, m, f)
	}
	if ti.BrowserContext != "" {
		ic.g.learnTarget(ti.TargetID, ti.BrowserContext)
		if !ic.g.Allowed(ti.BrowserContext) {
			return ic.refuse(c, m, MsgForeignTarget)
		}
		return forward, nil
	}
	if ok, why := ic.targetAllowed(ctx, c, ti.TargetID); !ok {
		return ic.refuse(c, m, why)
	}
	return forward, nil
}

// rootCommand applies rule 9 (the browser session's own commands).
func (ic *geoConn) rootCommand(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message, f fields) (cdpproxy.Verdict, error) {
	hasBC := f.hasBC
	switch {
	case m.Method == "Runtime.runIfWaitingForDebugger":
		// a no-op on the browser session; some clients send it everywhere
		return forward, nil
	case m.Method == "Browser.getWindowForTarget" && f.targetID == "":
		return ic.refuse(c, m, MsgForeignTarget) // the browser target's own: not the session's
	case m.Method == "Browser.getWindowBounds", m.Method == "Browser.setWindowBounds":
		return forward, nil // windowId checked in Command
	case rootBrowser[m.Method]:
		return forward, nil
	case m.Method == "Browser.setDownloadBehavior" && !hasBC:
		// Playwright's connectOverCDP sets it for the default context; it
		// opens no connection, and the default context's pages cannot be
		// driven by this session.
		return forward, nil
	case rootContextScoped[m.Method], strings.HasPrefix(m.Method, "Storage."):
		if hasBC { // allowed: checked by rule 3
			return forward, nil
		}
		return ic.refuse(c, m, MsgForeignCtx)
	case strings.HasPrefix(m.Method, "SystemInfo."), strings.HasPrefix(m.Method, "Schema."):
		return forward, nil
	}
	return ic.refuse(c, m, MsgRootDomain)
}

// targetAllowed tells whether targetID lives in an allowed context, and if
// not, why.
func (ic *geoConn) targetAllowed(ctx context.Context, c cdpproxy.Conn, targetID string) (bool, string) {
	if targetID == "" {
		return false, MsgForeignTarget
	}
	if bc, ok := ic.g.targetContext(targetID); ok {
		return ic.g.Allowed(bc), MsgForeignTarget
	}
	cctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	res, err := c.Call(cctx, "", "Target.getTargetInfo", map[string]string{"targetId": targetID})
	if err != nil {
		ic.g.log.Debug("geo context guard: target lookup failed", "err", err)
		return false, MsgForeignTarget
	}
	var r struct {
		TargetInfo struct {
			TargetID         string `json:"targetId"`
			BrowserContextID string `json:"browserContextId"`
		} `json:"targetInfo"`
	}
	if json.Unmarshal(res, &r) != nil || r.TargetInfo.TargetID != targetID || r.TargetInfo.BrowserContextID == "" {
		return false, MsgForeignTarget
	}
	ic.g.learnTarget(targetID, r.TargetInfo.BrowserContextID)
	return ic.g.Allowed(r.TargetInfo.BrowserContextID), MsgForeignTarget
}

// createContext applies rule 4.
func (ic *geoConn) createContext(c cdpproxy.Conn, m *cdpproxy.Message, f fields) (cdpproxy.Verdict, error) {
	if ic.g.o.Direct {
		if m.Nested {
			return ic.refuse(c, m, MsgNested)
		}
		if !m.HasID { // Chrome answers nothing without an id: nothing to learn
			return ic.refuse(c, m, MsgMalformed)
		}
		ic.mu.Lock()
		ic.creating[pendKey{m.SessionID, m.ID}] = struct{}{}
		ic.mu.Unlock()
		return forward, nil
	}
	if f.hasProxy || f.hasBypass {
		return ic.refuse(c, m, MsgProxyServer)
	}
	if m.Nested {
		return ic.refuse(c, m, MsgNested)
	}
	if ic.g.o.ProxyServer == "" || !m.HasID {
		return ic.refuse(c, m, MsgNoProxy)
	}
	// the rare command rewritten: decoded in full (strictly) and rebuilt
	msg, err := object(m.Raw)
	if err != nil {
		return ic.refuse(c, m, MsgMalformed)
	}
	params, err := object(msg["params"])
	if err != nil {
		return ic.refuse(c, m, MsgMalformed)
	}
	if params["proxyServer"], err = json.Marshal(ic.g.o.ProxyServer); err != nil {
		return cdpproxy.Verdict{}, fmt.Errorf("encode proxyServer: %w", err)
	}
	if ic.g.o.BypassList != "" {
		if params["proxyBypassList"], err = json.Marshal(ic.g.o.BypassList); err != nil {
			return cdpproxy.Verdict{}, fmt.Errorf("encode proxyBypassList: %w", err)
		}
	}
	if msg["params"], err = json.Marshal(params); err != nil {
		return cdpproxy.Verdict{}, fmt.Errorf("encode params: %w", err)
	}
	out, err := json.Marshal(msg)
	if err != nil {
		return cdpproxy.Verdict{}, fmt.Errorf("encode command: %w", err)
	}
	ic.mu.Lock()
	ic.creating[pendKey{m.SessionID, m.ID}] = struct{}{}
	ic.mu.Unlock()
	return cdpproxy.Verdict{Kind: cdpproxy.Replace, Data: out}, nil
}

// Close implements cdpproxy.Interceptor. The session's contexts stay
// allowed for its other and later connections.
func (ic *geoConn) Close() {
	ic.mu.Lock()
	clear(ic.creating)
	clear(ic.targetsIn)
	clear(ic.emu)
	ic.cmdConn = nil
	ic.mu.Unlock()
}

// NewShared returns the interceptor for a connection of a non-geo session in
// attach mode: it refuses Browser.close, Browser.crash and
// Browser.crashGpuProcess (also when nested) and forwards everything else.
func NewShared(o Options) cdpproxy.Interceptor {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &sharedConn{log: log}
}

// NewLaunchGeo returns the interceptor for a connection of a session in
// launch mode (a geo session's browser was started with the pool's
// forwarder as --proxy-server; any other goes direct): every context
// inherits that unless the agent names a proxy, which could read the
// traffic (a login POST with a typed secret), so Target.createBrowserContext carrying proxyServer or
// proxyBypassList (in any spelling Chrome's parser accepts, or with repeated
// members) is refused. Everything else is forwarded.
func NewLaunchGeo(o Options) cdpproxy.Interceptor {
	ic := NewShared(o).(*sharedConn)
	ic.launchGeo = true
	return ic
}

type sharedConn struct {
	log       *slog.Logger
	launchGeo bool // refuse proxy overrides only (launch mode); else refuse browser kills (attach mode)
}

func (s *sharedConn) Command(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message) (cdpproxy.Verdict, error) {
	if s.launchGeo {
		if m.Method != "Target.createBrowserContext" {
			return forward, nil
		}
		f, err := commandFields(m.Raw)
		if err != nil {
			return cdpproxy.Verdict{Kind: cdpproxy.Reply, Data: cdpproxy.ErrorReply(m, MsgMalformed)}, nil
		}
		if f.hasProxy || f.hasBypass {
			s.log.Info("cdp command refused: proxy override in a geo session", "method", m.Method)
			return cdpproxy.Verdict{Kind: cdpproxy.Reply, Data: cdpproxy.ErrorReply(m, MsgProxyServer)}, nil
		}
		return forward, nil
	}
	if isBrowserKill(m.Method) {
		sid := ""
		if ss := c.Session(); ss != nil {
			sid = ss.ID
		}
		s.log.Info("cdp command refused: shared browser", "session", sid, "method", m.Method)
		return cdpproxy.Verdict{Kind: cdpproxy.Reply, Data: cdpproxy.ErrorReply(m, MsgBrowserClose)}, nil
	}
	return forward, nil
}

func (s *sharedConn) Event(context.Context, cdpproxy.Conn, *cdpproxy.Message) (cdpproxy.Verdict, error) {
	return forward, nil
}

func (s *sharedConn) Close() {}
