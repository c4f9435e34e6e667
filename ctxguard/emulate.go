package ctxguard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/cdpvault/cdpvault/cdpproxy"
)

// MsgNoEmulation refuses commands on a target whose geo time zone and
// language could not be applied (the target stays paused if Chrome paused
// it: it never runs with the host's).
const MsgNoEmulation = "cdpvault: the session's geo time zone and language could not be applied to this target"

// emulating reports whether the Guard applies a pool's time zone and
// language to the session's targets.
func (g *Guard) emulating() bool {
	return !g.o.Direct && (g.o.Timezone != "" || g.o.Locale != "")
}

func (g *Guard) acceptLanguage() string {
	if g.o.AcceptLanguage != "" {
		return g.o.AcceptLanguage
	}
	return g.o.Locale
}

// userAgent returns the browser's own User-Agent (Browser.getVersion), which
// Network.setUserAgentOverride needs alongside acceptLanguage. Cached once
// known.
func (g *Guard) userAgent(ctx context.Context, c cdpproxy.Conn, sid string) (string, error) {
	g.uaMu.Lock()
	defer g.uaMu.Unlock()
	if g.ua != "" {
		return g.ua, nil
	}
	var last error
	for _, s := range []string{"", sid} {
		res, err := c.Call(ctx, s, "Browser.getVersion", nil)
		if err != nil {
			last = err
			continue
		}
		var v struct {
			UserAgent string `json:"userAgent"`
		}
		if err := json.Unmarshal(res, &v); err != nil || v.UserAgent == "" {
			last = errors.New("Browser.getVersion: no userAgent")
			continue
		}
		g.ua = v.UserAgent
		return g.ua, nil
	}
	return "", fmt.Errorf("browser user agent: %w", last)
}

// emuState is the daemon's override of one attached CDP session: done is
// closed once applied (err nil) or failed.
type emuState struct {
	done chan struct{}
	err  error
}

// emuFor returns the state of sid, creating it (and reporting created) when
// absent.
func (ic *geoConn) emuFor(sid string) (st *emuState, created bool) {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if st = ic.emu[sid]; st != nil {
		return st, false
	}
	if len(ic.emu) >= maxTargets {
		clear(ic.emu)
	}
	st = &emuState{done: make(chan struct{})}
	ic.emu[sid] = st
	return st, true
}

// startEmulation applies the pool's time zone and language to a target
// attached on this connection (Event side: Event may not Call, so it runs
// on its own goroutine with the Conn kept from Command). Commands of the
// client on that session wait for it (see awaitEmulation), so
// Runtime.runIfWaitingForDebugger only lets the target run once the
// overrides are in place.
func (ic *geoConn) startEmulation(ctx context.Context, sid, typ string) {
	if !ic.g.emulating() || sid == "" {
		return
	}
	st, created := ic.emuFor(sid)
	if !created {
		return
	}
	ic.mu.Lock()
	c := ic.cmdConn
	ic.mu.Unlock()
	if c == nil {
		st.err = errors.New("no command connection")
		close(st.done)
		return
	}
	go func() {
		cctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		defer cancel()
		st.err = ic.g.applyEmulation(cctx, c, sid, typ)
		if st.err != nil {
			ic.g.log.Warn("context guard: geo time zone and language not applied", "session_type", typ, "err", st.err)
		}
		close(st.done)
	}()
}

// awaitEmulation makes a client command on sid wait until the overrides of
// sid are applied; false when they failed (the command is refused).
func (ic *geoConn) awaitEmulation(ctx context.Context, sid string) bool {
	ic.mu.Lock()
	st := ic.emu[sid]
	ic.mu.Unlock()
	if st == nil {
		return true
	}
	select {
	case <-st.done:
		return st.err == nil
	case <-ctx.Done():
		return false
	}
}

func (ic *geoConn) forgetEmulation(sid string) {
	ic.mu.Lock()
	delete(ic.emu, sid)
	ic.mu.Unlock()
}

// ensurePageSocket applies the overrides on a page-level socket's own
// session before its first forwarded command (Command may Call).
func (ic *geoConn) ensurePageSocket(ctx context.Context, c cdpproxy.Conn, typ string) bool {
	if !ic.g.emulating() {
		return true
	}
	st, created := ic.emuFor("")
	if created {
		cctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		st.err = ic.g.applyEmulation(cctx, c, "", typ)
		cancel()
		if st.err != nil {
			ic.g.log.Warn("context guard: geo time zone and language not applied", "session_type", typ, "err", st.err)
		}
		close(st.done)
	}
	return ic.awaitEmulation(ctx, "")
}

// cdpError is the error of a Call answered by Chrome with a CDP error.
func cdpErrorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// tolerable reports whether a failed override is not a leak: the method
// does not exist on this kind of target (workers have no Emulation
// domain), or an override is already in effect on the target (another
// connection of the same session, or the agent, set one).
func tolerable(err error, typ string) bool {
	s := cdpErrorText(err)
	if strings.Contains(s, "already in effect") {
		return true
	}
	if typ != "page" && typ != "iframe" && (strings.Contains(s, "wasn't found") || strings.Contains(s, "-32601")) {
		return true
	}
	return false
}

// applyEmulation sends the overrides on CDP session sid.
func (g *Guard) applyEmulation(ctx context.Context, c cdpproxy.Conn, sid, typ string) error {
	if tz := g.o.Timezone; tz != "" {
		if _, err := c.Call(ctx, sid, "Emulation.setTimezoneOverride", map[string]string{"timezoneId": tz}); err != nil && !tolerable(err, typ) {
			return fmt.Errorf("Emulation.setTimezoneOverride: %w", err)
		}
	}
	if loc := g.o.Locale; loc != "" {
		if _, err := c.Call(ctx, sid, "Emulation.setLocaleOverride", map[string]string{"locale": loc}); err != nil && !tolerable(err, typ) {
			return fmt.Errorf("Emulation.setLocaleOverride: %w", err)
		}
		ua, err := g.userAgent(ctx, c, sid)
		if err != nil {
			return err
		}
		if _, err := c.Call(ctx, sid, "Network.setUserAgentOverride", map[string]string{"userAgent": ua, "acceptLanguage": g.acceptLanguage()}); err != nil && !tolerable(err, typ) {
			return fmt.Errorf("Network.setUserAgentOverride: %w", err)
		}
	}
	return nil
}

// keepGeo rewrites an agent's override command that would put the host's
// time zone or language back (an empty or absent value clears an override
// in Chrome): the pool's value is put in instead. ok false: the command
// cannot be read (refused).
func (ic *geoConn) keepGeo(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message) (out []byte, ok bool) {
	if !ic.g.emulating() || m.Nested {
		return nil, true
	}
	set := map[string]string{}
	switch m.Method {
	case "Emulation.setTimezoneOverride":
		if ic.g.o.Timezone != "" {
			set["timezoneId"] = ic.g.o.Timezone
		}
	case "Emulation.setLocaleOverride":
		if ic.g.o.Locale != "" {
			set["locale"] = ic.g.o.Locale
		}
	case "Network.setUserAgentOverride", "Emulation.setUserAgentOverride":
		if ic.g.o.Locale != "" {
			set["acceptLanguage"] = ic.g.acceptLanguage()
			set["userAgent"] = ""
		}
	default:
		return nil, true
	}
	if len(set) == 0 {
		return nil, true
	}
	msg, err := object(m.Raw)
	if err != nil {
		return nil, false
	}
	params, err := object(msg["params"])
	if err != nil {
		return nil, false
	}
	changed := false
	for k, v := range set {
		cur := ""
		if raw, ok := params[k]; ok {
			if json.Unmarshal(raw, &cur) != nil {
				return nil, false
			}
		}
		if cur != "" {
			continue // the agent's own choice (not the host's)
		}
		if k == "userAgent" {
			if v, err = ic.g.userAgent(ctx, c, m.SessionID); err != nil {
				return nil, false
			}
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, false
		}
		params[k] = b
		changed = true
	}
	if !changed {
		return nil, true
	}
	var errs [2]error
	msg["params"], errs[0] = json.Marshal(params)
	out, errs[1] = json.Marshal(msg)
	if errs[0] != nil || errs[1] != nil {
		return nil, false
	}
	return out, true
}

// emuFields are the Guard fields for emulation (kept here for locality).
type emuFields struct {
	uaMu sync.Mutex
	ua   string
}
