package inject

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/cdpvault/cdpvault/cdpproxy"
)

// inject authorises every placeholder in text (name granted, known to the
// tenant, focused frame origin allowed) and, if all pass, types text with
// each placeholder replaced by its value: with one Input.insertText for an
// insertText sink, or with a keyDown(text)/keyUp pair per character for a
// dispatchKeyEvent sink, so the page's key and input handlers fire as for
// the client's own typing. Called with in.mu held.
func (in *interceptor) inject(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message, u *input, text []byte, ms []match) cdpproxy.Verdict {
	var presumed worldRef
	if !u.keyMode {
		presumed = in.presumedOrigin(c, m.SessionID)
	}
	v, again := in.injectOnce(ctx, c, m, u, text, ms, presumed)
	if again {
		// The presumption did not hold and nothing was written: the full
		// check, as for any write.
		v, _ = in.injectOnce(ctx, c, m, u, text, ms, worldRef{})
	}
	return v
}

// injectOnce makes one attempt at a write. With presumed set (see
// presumedOrigin) the check that finds the focused frame is skipped and
// writeFn's own check in the write's task decides; again reports that it
// found focus elsewhere, or the world gone, before anything was typed or
// recorded.
func (in *interceptor) injectOnce(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message, u *input, text []byte, ms []match, presumed worldRef) (v cdpproxy.Verdict, again bool) {
	g := in.authorize(ctx, c, m, ms, presumed)
	secrets, origin, loc := g.secrets, g.origin, g.loc
	defer destroyAll(secrets)
	if g.again {
		return cdpproxy.Verdict{}, true
	}
	if g.refusal != "" {
		return reply(cdpproxy.ErrorReply(m, g.refusal)), false
	}
	strict := in.strictField() // before this write counts
	defer in.o.Taints.beginWrite(ms[0].name, origin)()
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if u.keyMode {
		// The field check runs once before the first key.
		fb, _ := json.Marshal(fieldFn)
		res, err := in.callInWorld(cctx, c, loc.sid, loc.frameID, func(objectID string) []byte {
			ob, _ := json.Marshal(objectID)
			return fmt.Appendf(nil, `{"objectId":%s,"functionDeclaration":%s,"arguments":[{"value":%d},{"value":%t},{"value":%s},{"value":%t}],"returnByValue":true,"silent":true}`,
				ob, fb, utf16Len(text, ms, secrets), strict, postOrigins(ms, secrets), wideText(text, ms, secrets))
		})
		if err == nil {
			if v, refused := in.refuseWrite(ctx, c, m, ms, secrets, origin, res); refused {
				return v, false
			}
		}
	}
	// Every attempt that may have typed something taints, failed ones
	// included; a field check that stopped the write does not.
	stopped := false
	defer func() {
		if !stopped {
			in.taintAfterWrite(ctx, c, loc, origin, ms)
		}
	}()
	var err error
	if u.keyMode {
		var moved *focusResult
		moved, err = in.typeKeys(cctx, c, m.SessionID, loc, origin, text, ms, secrets)
		if err == nil && moved != nil {
			if moved.Inert && !moved.Remote && moved.Origin == origin {
				return in.refuseInert(ctx, c, m, ms, secrets, origin), false
			}
			return in.refuseMoved(ctx, c, m, ms, secrets, *moved), false
		}
	} else {
		var res focusResult
		res, err = in.writeAt(cctx, c, loc, origin, text, ms, secrets, strict)
		var cdpErr *cdpproxy.CDPError
		gone := errors.Is(err, errWorldGone) || errors.As(err, &cdpErr)
		if g.presumed && (gone || (err == nil && (res.Remote || res.Denied))) {
			// The world's document is gone (the browser refused the call)
			// or focus is not in the presumed document: nothing ran or
			// was written.
			stopped = true
			return cdpproxy.Verdict{}, true
		}
		stopped = gone // nothing ran
		if err == nil {
			if v, refused := in.refuseWrite(ctx, c, m, ms, secrets, origin, res); refused {
				stopped = true // nothing was written
				return v, false
			}
		}
		if err == nil && !res.Inserted {
			// The focused element takes no execCommand text: nothing was
			// typed, and nothing else is sent (an Input.insertText would
			// go wherever focus is, unchecked: an iframe in a closed
			// shadow root, or a frame focus moved to since).
			stopped = true
			return in.refuseInert(ctx, c, m, ms, secrets, origin), false
		}
	}
	result, audit, reason := ResultInjected, AuditInjected, ""
	if err != nil {
		result, audit, reason = ResultError, AuditRefused, "error: write failed"
		in.o.Logger.Warn("inject write", "error", err.Error())
	}
	in.recordEach(ctx, c, m, ms, secrets, origin, audit, result, reason)
	if err != nil {
		return reply(cdpproxy.ErrorReply(m, "cdpvault: typing the secret into the page failed")), false
	}
	if u.keyMode && (u.typ == "keyDown" || u.typ == "char") {
		in.swallow[m.SessionID] = u.key // its keyUp belongs to the typed value
	}
	return reply(cdpproxy.EmptyResult(m)), false
}

// writeAt types text (placeholders replaced) into the focused element in
// one renderer task that first re-checks that the focused frame's origin
// is still the verified one (writeFn), so focus cannot move between the
// check and the write.
func (in *interceptor) writeAt(ctx context.Context, c cdpproxy.Conn, loc focusLoc, origin string, text []byte, ms []match, secrets map[string]Secret, strict bool) (focusResult, error) {
	allowed := []string{origin}
	if origin == "" || origin == "null" {
		allowed = []string{"*"} // only reachable when every secret allows "*"
	}
	ab, _ := json.Marshal(allowed)
	fb, _ := json.Marshal(writeFn)
	return in.callWorld(ctx, c, loc.sid, loc.frameID, func(objectID string) []byte {
		ob, _ := json.Marshal(objectID)
		prefix := `{"objectId":` + string(ob) + `,"functionDeclaration":` + string(fb) + `,"arguments":[{"value":` + string(ab) + `},{"value":"`
		suffix := fmt.Sprintf(`"},{"value":%t},{"value":%s}],"returnByValue":true,"silent":true}`, strict, postOrigins(ms, secrets))
		return buildText(prefix, text, ms, secrets, suffix)
	}, loc.handle)
}

// wideText reports whether text with its placeholders replaced holds a
// non-ASCII byte.
func wideText(text []byte, ms []match, secrets map[string]Secret) bool {
	wide := func(b []byte) bool {
		for _, c := range b {
			if c >= 0x80 {
				return true
			}
		}
		return false
	}
	pos := 0
	for _, x := range ms {
		if wide(text[pos:x.start]) || secrets[x.name].Value != nil && wide(secrets[x.name].Value.Bytes()) {
			return true
		}
		pos = x.end
	}
	return wide(text[pos:])
}

// postOrigins is the JSON list of origins a form holding the values of ms
// may post to: those every secret allows; null when all allow "*".
func postOrigins(ms []match, secrets map[string]Secret) string {
	var common []string
	first := true
	for _, x := range ms {
		o := secrets[x.name].Origins
		if originAllowed(o, "*") && len(o) == 1 {
			continue
		}
		if first {
			common, first = append([]string(nil), o...), false
			continue
		}
		keep := common[:0]
		for _, c := range common {
			if originAllowed(o, c) {
				keep = append(keep, c)
			}
		}
		common = keep
	}
	if first {
		return "null"
	}
	b, _ := json.Marshal(append([]string{}, common...))
	return string(b)
}

// strictField reports whether the session has typed a value before: then
// a value goes only into an empty (or wholly selected) field, so that a
// value can never be typed into another. (Asking whether the typed-into
// document is still shown would cost a round trip per injection; the rule
// only refuses text typed key by key in front of a placeholder into the
// same field, which one insertText of the whole text does instead.) Read it
// before the write's own beginWrite.
func (in *interceptor) strictField() bool { return in.o.Taints.Len() > 0 }

// refuseWrite answers a checked write (writeAt) that wrote nothing: the
// field check stopped it, or focus moved to a frame the check does not
// allow. ok is false when the write went ahead.
func (in *interceptor) refuseWrite(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message, ms []match, secrets map[string]Secret, origin string, res focusResult) (v cdpproxy.Verdict, ok bool) {
	switch {
	case res.Constrained || res.Filled || res.Elsewhere || res.Method:
		return in.refuseField(ctx, c, m, ms, secrets, origin, res), true
	case res.Remote || res.Denied:
		// Focus moved between the check and the write.
		return in.refuseMoved(ctx, c, m, ms, secrets, res), true
	case res.Inert:
		return in.refuseInert(ctx, c, m, ms, secrets, origin), true
	}
	return cdpproxy.Verdict{}, false
}

// refuseInert answers a write whose focused element takes no text (see
// focusResult.Inert): nothing was typed.
func (in *interceptor) refuseInert(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message, ms []match, secrets map[string]Secret, origin string) cdpproxy.Verdict {
	in.recordEach(ctx, c, m, ms, secrets, origin, AuditRefused, ResultRefusedSink, "refused: focused element takes no text")
	return reply(cdpproxy.ErrorReply(m, "cdpvault: secret "+ms[0].name+" not typed: the focused element takes no text (focus may be in a frame that cannot be verified)"))
}

// refuseField answers a write the field check stopped: nothing was typed.
func (in *interceptor) refuseField(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message, ms []match, secrets map[string]Secret, origin string, res focusResult) cdpproxy.Verdict {
	why, reason := "its validity or length depends on the value (pattern, minlength, min, max, step or a maxlength shorter than the value), or its form does not encode in UTF-8", "sink: constrained field"
	switch {
	case res.Method:
		why, reason = "its form submits with GET or as a dialog (the value would be in the next page's URL)", "sink: form submits with GET"
	case res.Elsewhere:
		why, reason = "its form posts to an origin the secret is not allowed on", "origin: form posts elsewhere"
	case res.Filled:
		why, reason = "it already holds text on a page that holds a typed secret (clear or select it all first)", "sink: field holds text"
	}
	result := ResultRefusedSink
	if res.Elsewhere {
		result = ResultRefusedOrigin
	}
	in.recordEach(ctx, c, m, ms, secrets, origin, AuditRefused, result, reason)
	return reply(cdpproxy.ErrorReply(m, "cdpvault: secret "+ms[0].name+" not typed into the focused field: "+why))
}

// refuseMoved answers a write that found focus elsewhere than the check did.
func (in *interceptor) refuseMoved(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message, ms []match, secrets map[string]Secret, res focusResult) cdpproxy.Verdict {
	msg := ""
	for _, x := range ms {
		if msg == "" {
			if res.Remote {
				msg = fmt.Sprintf("cdpvault: origin of the focused frame could not be verified for secret %s (%s)", x.name, errFocusUnverified.Error())
			} else {
				msg = fmt.Sprintf("cdpvault: origin %s is not allowed for secret %s", res.Origin, x.name)
			}
		}
		in.record(ctx, c, Record{Secret: x.name, Version: secrets[x.name].Version, Origin: res.Origin, Sink: m.Method,
			Result: AuditRefused, Reason: "origin: focus moved before the write"}, ResultRefusedOrigin)
	}
	return reply(cdpproxy.ErrorReply(m, msg))
}

// grant is what authorize found: the resolved secrets (to be destroyed by
// the caller), the focused frame's origin and where it is, or the refusal
// (a CDP error message). presumed: origin is presumedOrigin's, not yet
// checked against focus. again: a presumed origin is not allowed for a
// secret, so focus must be looked for before anything is refused.
type grant struct {
	secrets  map[string]Secret
	origin   string
	loc      focusLoc
	refusal  string
	presumed bool
	again    bool
}

// authorize resolves and checks every distinct name in ms; it stops at the
// first refusal and returns the CDP error message for it. Every attempt is
// recorded (audit and metric). With presumed set (and a vault that lists
// origins before decrypting), the focused frame is presumed to have that
// origin when the secret allows it.
func (in *interceptor) authorize(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message, ms []match, presumed worldRef) grant {
	g := grant{secrets: map[string]Secret{}}
	var originErr error
	originDone := false
	// focus determines the focused frame's origin once, presuming when the
	// secret's origins allow the presumed one.
	focus := func(origins []string) {
		if originDone {
			return
		}
		originDone = true
		if presumed.origin != "" && originAllowed(origins, presumed.origin) {
			g.origin, g.loc, g.presumed = presumed.origin, focusLoc{sid: m.SessionID, handle: presumed.handle}, true
			return
		}
		g.origin, g.loc, originErr = in.focusedOrigin(ctx, c, m.SessionID)
	}
	refuse := func(msg string) grant {
		g.refusal = msg
		return g
	}
	for _, x := range ms {
		name := x.name
		if _, ok := g.secrets[name]; ok {
			continue
		}
		rec := Record{Secret: name, Sink: m.Method, Result: AuditRefused}
		if !in.granted[name] {
			rec.Reason = "unlisted: not granted to the session"
			in.record(ctx, c, rec, ResultRefusedUnlisted)
			return refuse(fmt.Sprintf("cdpvault: secret %s not granted to this session", name))
		}
		if in.o.Vault == nil {
			rec.Reason = "unknown: no vault"
			in.record(ctx, c, rec, ResultRefusedUnknown)
			return refuse(fmt.Sprintf("cdpvault: secret %s not granted to this session", name))
		}
		if l, ok := in.o.Vault.(Lister); ok {
			// Check the origin before decrypting anything.
			origins, version, err := l.Origins(ctx, name)
			if err == nil {
				focus(origins)
				if g.presumed && !originAllowed(origins, g.origin) {
					g.again = true
					return g
				}
				rec.Version, rec.Origin = version, g.origin
				if refusal := in.refuseOrigin(ctx, c, rec, name, origins, g.origin, originErr); refusal != "" {
					return refuse(refusal)
				}
			}
			// An error here is reported by Resolve below, the same way.
		}
		sec, err := in.o.Vault.Resolve(ctx, name)
		if err != nil {
			if errors.Is(err, ErrUnknownSecret) {
				rec.Reason = "unknown: tenant has no such secret"
				in.record(ctx, c, rec, ResultRefusedUnknown)
				return refuse(fmt.Sprintf("cdpvault: secret %s not granted to this session", name))
			}
			rec.Reason = "error: resolve failed"
			in.o.Logger.Warn("resolve secret", "secret", name, "error", err.Error())
			in.record(ctx, c, rec, ResultError)
			return refuse(fmt.Sprintf("cdpvault: secret %s could not be resolved", name))
		}
		g.secrets[name] = sec
		rec.Version = sec.Version
		if sec.Value == nil || !sec.Value.IsAlive() {
			rec.Reason = "error: empty value"
			in.record(ctx, c, rec, ResultError)
			return refuse(fmt.Sprintf("cdpvault: secret %s could not be resolved", name))
		}
		focus(sec.Origins) // when the listing failed
		if g.presumed && !originAllowed(sec.Origins, g.origin) {
			g.again = true
			return g
		}
		rec.Origin = g.origin
		if refusal := in.refuseOrigin(ctx, c, rec, name, sec.Origins, g.origin, originErr); refusal != "" {
			return refuse(refusal)
		}
	}
	return g
}

// refuseOrigin records and returns the refusal when the focused frame's
// origin (or the error determining it) does not allow secret name; "" when
// it does.
func (in *interceptor) refuseOrigin(ctx context.Context, c cdpproxy.Conn, rec Record, name string, origins []string, origin string, originErr error) string {
	if originErr != nil {
		rec.Reason = "origin: " + originErr.Error()
		in.record(ctx, c, rec, ResultRefusedOrigin)
		return fmt.Sprintf("cdpvault: origin of the focused frame could not be verified for secret %s (%s)", name, originErr.Error())
	}
	if !originAllowed(origins, origin) {
		rec.Reason = "origin: not one of the secret's origins"
		in.record(ctx, c, rec, ResultRefusedOrigin)
		shown := origin
		if shown == "" {
			shown = "(opaque)"
		}
		return fmt.Sprintf("cdpvault: origin %s is not allowed for secret %s", shown, name)
	}
	return ""
}

// originAllowed: exact match with one of the secret's origins, or "*" when
// stored as such. An opaque or unknown origin ("" or "null") matches only "*".
func originAllowed(origins []string, origin string) bool {
	for _, o := range origins {
		if o == "*" {
			return true
		}
		if origin != "" && origin != "null" && o == origin {
			return true
		}
	}
	return false
}

// buildText returns prefix + JSON-escaped(text with placeholders replaced)
// + suffix in a buffer allocated once at its exact size (never regrown, so
// no stray copy of a value is left behind). The caller wipes it.
func buildText(prefix string, text []byte, ms []match, secrets map[string]Secret, suffix string) []byte {
	n := len(prefix) + len(suffix)
	pos := 0
	for _, x := range ms {
		n += escapedLen(text[pos:x.start]) + escapedLen(secrets[x.name].Value.Bytes())
		pos = x.end
	}
	n += escapedLen(text[pos:])
	buf := make([]byte, 0, n)
	buf = append(buf, prefix...)
	pos = 0
	for _, x := range ms {
		buf = appendEscaped(buf, text[pos:x.start])
		buf = appendEscaped(buf, secrets[x.name].Value.Bytes())
		pos = x.end
	}
	buf = appendEscaped(buf, text[pos:])
	buf = append(buf, suffix...)
	return buf
}

// utf16Len is the length in UTF-16 code units of text with placeholders
// replaced (CDP positions count UTF-16 units).
func utf16Len(text []byte, ms []match, secrets map[string]Secret) int {
	count := func(b []byte) int {
		n := 0
		for len(b) > 0 {
			r, size := utf8.DecodeRune(b)
			if r >= 0x10000 {
				n += 2
			} else {
				n++
			}
			b = b[size:]
		}
		return n
	}
	n, pos := 0, 0
	for _, x := range ms {
		n += count(text[pos:x.start]) + count(secrets[x.name].Value.Bytes())
		pos = x.end
	}
	return n + count(text[pos:])
}

// typeKeys types text (placeholders replaced) one character at a time with
// a fresh focus check before each character (key events go wherever focus
// is when they arrive, and their key field carries the character, so a
// focus change stops the typing after at most the character in flight), and
// Input.dispatchKeyEvent keyDown (text, unmodifiedText, key) and keyUp, the
// events Chrome turns into keydown, keypress, beforeinput, input and keyup.
// Control characters (tab, newline, ...) go through Input.insertText so a
// value can neither move focus nor submit a form half-typed.
func (in *interceptor) typeKeys(ctx context.Context, c cdpproxy.Conn, sid string, loc focusLoc, origin string, text []byte, ms []match, secrets map[string]Secret) (*focusResult, error) {
	var scratch [160]byte
	var moved *focusResult
	first := true
	typeRunes := func(b []byte) error {
		for len(b) > 0 && moved == nil {
			if !first { // the first character follows the authorising check
				r, err := in.evalFocus(ctx, c, loc.sid, loc.frameID)
				if err != nil {
					return err
				}
				sub := loc.sid != sid || loc.frameID != ""
				if r.Remote || r.Inert || r.Origin != origin || (sub && !r.Focus) {
					moved = &r
					return nil
				}
			}
			first = false
			_, size := utf8.DecodeRune(b)
			ch := b[:size]
			b = b[size:]
			var err error
			if ch[0] < 0x20 || ch[0] == 0x7f {
				p := appendEscaped(append(scratch[:0], `{"text":"`...), ch)
				p = append(p, `"}`...)
				_, err = c.Call(ctx, sid, methodInsertText, json.RawMessage(p))
				wipe(scratch[:])
			} else {
				p := append(scratch[:0], `{"type":"keyDown","text":"`...)
				p = appendEscaped(p, ch)
				p = append(p, `","unmodifiedText":"`...)
				p = appendEscaped(p, ch)
				p = append(p, `","key":"`...)
				p = appendEscaped(p, ch)
				p = append(p, `"}`...)
				_, err = c.Call(ctx, sid, methodKeyEvent, json.RawMessage(p))
				wipe(scratch[:])
				if err == nil {
					p = append(scratch[:0], `{"type":"keyUp","key":"`...)
					p = appendEscaped(p, ch)
					p = append(p, `"}`...)
					_, err = c.Call(ctx, sid, methodKeyEvent, json.RawMessage(p))
					wipe(scratch[:])
				}
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	pos := 0
	for _, x := range ms {
		if err := typeRunes(text[pos:x.start]); err != nil {
			return nil, err
		}
		if err := typeRunes(secrets[x.name].Value.Bytes()); err != nil {
			return nil, err
		}
		pos = x.end
	}
	err := typeRunes(text[pos:])
	return moved, err
}

// ime handles Input.imeSetComposition: a composition holding placeholders is
// committed as text (placeholders replaced, after the same authorisation)
// by the same single renderer task as insertText, which re-checks the
// focused frame's origin before writing: a separate check and
// imeSetComposition would leave a window in which page script moves focus
// to another origin's frame (found by a focus-toggling page). An element
// that does not take execCommand text is refused rather than given the value
// unchecked. Text without placeholders passes unchanged. Called with in.mu
// held.
func (in *interceptor) ime(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message, u *input) cdpproxy.Verdict {
	ms, _ := scan(u.text, 0)
	if len(ms) == 0 {
		return forward
	}
	g := in.authorize(ctx, c, m, ms, worldRef{})
	secrets, origin, loc := g.secrets, g.origin, g.loc
	defer destroyAll(secrets)
	if g.refusal != "" {
		return reply(cdpproxy.ErrorReply(m, g.refusal))
	}
	strict := in.strictField() // before this write counts
	defer in.o.Taints.beginWrite(ms[0].name, origin)()
	stopped := false
	defer func() {
		if !stopped {
			in.taintAfterWrite(ctx, c, loc, origin, ms)
		}
	}()
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	res, err := in.writeAt(cctx, c, loc, origin, u.text, ms, secrets, strict)
	if err == nil {
		if v, refused := in.refuseWrite(ctx, c, m, ms, secrets, origin, res); refused {
			stopped = true // nothing was written
			return v
		}
		if !res.Inserted {
			err = errNotEditable
		}
	}
	result, audit, reason := ResultInjected, AuditInjected, ""
	if err != nil {
		result, audit, reason = ResultError, AuditRefused, "error: write failed"
		if err == errNotEditable {
			result, reason = ResultRefusedSink, "refused: focused element takes no text"
		}
	}
	in.recordEach(ctx, c, m, ms, secrets, origin, audit, result, reason)
	if err == errNotEditable {
		return reply(cdpproxy.ErrorReply(m, "cdpvault: the focused element does not take a secret through IME composition"))
	}
	if err != nil {
		return reply(cdpproxy.ErrorReply(m, "cdpvault: typing the secret into the page failed"))
	}
	return reply(cdpproxy.EmptyResult(m))
}

// destroyAll wipes the values an attempt resolved.
func destroyAll(secrets map[string]Secret) {
	for _, s := range secrets {
		if s.Value != nil {
			s.Value.Destroy()
		}
	}
}

// recordEach audits one write attempt once per secret named in it.
func (in *interceptor) recordEach(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message, ms []match, secrets map[string]Secret, origin, audit, result, reason string) {
	seen := map[string]bool{}
	for _, x := range ms {
		if !seen[x.name] {
			seen[x.name] = true
			in.record(ctx, c, Record{Secret: x.name, Version: secrets[x.name].Version, Origin: origin, Sink: m.Method,
				Result: audit, Reason: reason}, result)
		}
	}
}

// errNotEditable: the focused element took no execCommand text.
var errNotEditable = errors.New("focused element takes no text")
