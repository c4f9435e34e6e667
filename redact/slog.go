package redact

import (
	"context"
	"fmt"
	"log/slog"
)

// NewHandler wraps h so that every record's message and attribute values
// (strings, errors, anything formatted with fmt, inside groups, and the
// attributes bound with WithAttrs) are scrubbed with the index current at
// the time of each record. index may return nil (nothing to scrub). If
// scrubbing fails the value is replaced by "<<redacted>>": a log line never
// carries what could not be checked.
func NewHandler(h slog.Handler, index func() *Index) slog.Handler {
	return &handler{inner: h, index: index}
}

type handler struct {
	inner slog.Handler
	index func() *Index
	// bound is the chain of WithGroup/WithAttrs calls, oldest first,
	// applied at Handle time so that bound values are scrubbed with the
	// current index.
	bound []boundStep
}

type boundStep struct {
	group string // set for WithGroup
	attrs []slog.Attr
}

const redactedValue = "<<redacted>>"

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	return &handler{inner: h.inner, index: h.index, bound: append(h.bound[:len(h.bound):len(h.bound)], boundStep{attrs: as})}
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &handler{inner: h.inner, index: h.index, bound: append(h.bound[:len(h.bound):len(h.bound)], boundStep{group: name})}
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	ix := h.index()
	nr := slog.NewRecord(r.Time, r.Level, scrubStr(ix, r.Message), r.PC)
	var attrs []slog.Attr
	r.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, scrubAttr(ix, a))
		return true
	})
	// fold the bound steps from the innermost group outwards
	for i := len(h.bound) - 1; i >= 0; i-- {
		st := h.bound[i]
		if st.group != "" {
			if len(attrs) > 0 {
				args := make([]any, len(attrs))
				for j, a := range attrs {
					args[j] = a
				}
				attrs = []slog.Attr{slog.Group(st.group, args...)}
			}
			continue
		}
		pre := make([]slog.Attr, 0, len(st.attrs)+len(attrs))
		for _, a := range st.attrs {
			pre = append(pre, scrubAttr(ix, a))
		}
		attrs = append(pre, attrs...)
	}
	nr.AddAttrs(attrs...)
	return h.inner.Handle(ctx, nr)
}

func scrubStr(ix *Index, s string) string {
	if ix == nil {
		return s
	}
	out, _, err := ix.ScrubString(s)
	if err != nil {
		return redactedValue
	}
	return out
}

func scrubAttr(ix *Index, a slog.Attr) slog.Attr {
	a.Value = scrubValue(ix, a.Value)
	return a
}

func scrubValue(ix *Index, v slog.Value) slog.Value {
	v = v.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.StringValue(scrubStr(ix, v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, a := range g {
			out[i] = scrubAttr(ix, a)
		}
		return slog.GroupValue(out...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.StringValue(scrubStr(ix, x.Error()))
		case []byte:
			return slog.StringValue(scrubStr(ix, string(x)))
		default:
			s := fmt.Sprint(x)
			if out := scrubStr(ix, s); out != s {
				return slog.StringValue(out)
			}
			return v
		}
	default:
		// numbers, bools, times and durations: scrub their text form too
		// (a numeric secret such as a PIN of 8+ digits).
		s := v.String()
		if out := scrubStr(ix, s); out != s {
			return slog.StringValue(out)
		}
		return v
	}
}
