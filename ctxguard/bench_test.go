package ctxguard

import (
	"context"
	"strings"
	"testing"

	"github.com/cdpvault/cdpvault/cdpproxy"
)

// BenchmarkCommand measures the Guard's per-command cost on a page session
// of an allowed context, side by side with the pass-through NewShared
// interceptor as the baseline, for a small command and a 1 MiB one.
func BenchmarkCommand(b *testing.B) {
	g := NewGuard(Options{ProxyServer: ourProxy, BypassList: "<-loopback>"})
	g.allow("CTX")
	c := newFake()
	c.targets["S"] = cdpproxy.TargetInfo{SessionID: "S", TargetID: "T", Type: "page", BrowserContext: "CTX"}
	small := cmd(1, "Page.navigate", `{"url":"https://acme.example.com/login?next=%2Fhome"}`, "S")
	big := cmd(2, "Runtime.evaluate", `{"expression":"`+strings.Repeat("x", 1<<20)+`"}`, "S")
	for _, tc := range []struct {
		name string
		m    *cdpproxy.Message
	}{{"small", small}, {"1MiB", big}} {
		for _, ic := range []struct {
			name string
			ic   cdpproxy.Interceptor
		}{{"baseline", NewShared(Options{})}, {"guard", g.Interceptor()}} {
			b.Run(tc.name+"/"+ic.name, func(b *testing.B) {
				b.SetBytes(int64(len(tc.m.Raw)))
				b.ReportAllocs()
				for b.Loop() {
					v, err := ic.ic.Command(context.Background(), c, tc.m)
					if err != nil || v.Kind != cdpproxy.Forward {
						b.Fatal(v.Kind, err)
					}
				}
			})
		}
	}
}

// BenchmarkEvent measures the Guard's per-message cost on what the browser
// sends: an event on an own page's session (the common case), a
// Target.getTargets answer listing 100 targets of which half are foreign
// (filtered and rebuilt), side by side with the pass-through NewShared
// interceptor.
func BenchmarkEvent(b *testing.B) {
	g := NewGuard(Options{Direct: true})
	g.allow("CTX")
	c := newFake()
	c.targets["S"] = cdpproxy.TargetInfo{SessionID: "S", TargetID: "T", Type: "page", BrowserContext: "CTX"}
	ev := onSession(event("Network.dataReceived", `{"requestId":"1.1","timestamp":1,"dataLength":`+strings.Repeat("1", 1000)+`,"encodedDataLength":0}`), "S")
	var infos []string
	for i := range 100 {
		bc := "CTX"
		if i%2 == 1 {
			bc = "OTHER"
		}
		infos = append(infos, `{"targetId":"T`+itoa(int64(i))+`","type":"page","title":"a page title","url":"https://acme.example.com/some/path","attached":false,"canAccessOpener":false,"browserContextId":"`+bc+`"}`)
	}
	list := resp(3, "", "Target.getTargets", `{"targetInfos":[`+strings.Join(infos, ",")+`]}`)
	for _, tc := range []struct {
		name string
		m    *cdpproxy.Message
		want cdpproxy.VerdictKind
	}{{"session-event", ev, cdpproxy.Forward}, {"getTargets-100", list, cdpproxy.Replace}} {
		for _, ic := range []struct {
			name string
			ic   cdpproxy.Interceptor
		}{{"baseline", NewShared(Options{})}, {"guard", g.Interceptor()}} {
			b.Run(tc.name+"/"+ic.name, func(b *testing.B) {
				b.SetBytes(int64(len(tc.m.Raw)))
				b.ReportAllocs()
				for b.Loop() {
					v, err := ic.ic.Event(context.Background(), c, tc.m)
					if err != nil || (v.Kind != tc.want && ic.name == "guard") {
						b.Fatal(v.Kind, err)
					}
				}
			})
		}
	}
}
