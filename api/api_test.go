package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/awnumar/memguard"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cdpvault/cdpvault/secretstore"
)

// fakeSessions records what the API asks of the session manager; the real
// one is exercised end to end in e2e/.
type fakeSessions struct {
	mu       sync.Mutex
	sessions map[string]string // id -> tenant
}

func (f *fakeSessions) Create(ctx context.Context, t *secretstore.Tenant, req SessionRequest, base string) (SessionView, error) {
	for _, n := range req.Secrets {
		if _, err := t.Secret(ctx, n); err != nil {
			return SessionView{}, &Error{http.StatusNotFound, "secret_not_found", "secret " + n + " not found"}
		}
	}
	if req.Geo != "" {
		return SessionView{}, &Error{http.StatusBadRequest, "unknown_geo_pool", "no such pool"}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id := "s_" + t.Name() + "_1"
	f.sessions[id] = t.Name()
	return SessionView{ID: id, CDPURL: base + "/session/tok", WSURL: "ws://x/session/tok/devtools/browser/b", ExpiresAt: time.Now()}, nil
}

func (f *fakeSessions) List(t *secretstore.Tenant, base string) []SessionView {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []SessionView
	for id, tn := range f.sessions {
		if tn == t.Name() {
			out = append(out, SessionView{ID: id})
		}
	}
	return out
}

func (f *fakeSessions) Delete(t *secretstore.Tenant, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sessions[id] != t.Name() {
		return &Error{http.StatusNotFound, "not_found", "not found"}
	}
	delete(f.sessions, id)
	return nil
}

type fixture struct {
	srv     *httptest.Server
	store   *secretstore.Store
	tokA    string
	tokB    string
	reg     *prometheus.Registry
	changed []string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	key, err := secretstore.LoadMasterKey(filepath.Join(dir, "master.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	st, err := secretstore.Open(context.Background(), secretstore.Options{Path: filepath.Join(dir, "s.db"), MasterKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	f := &fixture{store: st, reg: prometheus.NewRegistry()}
	for _, name := range []string{"alpha", "beta"} {
		if err := st.CreateTenant(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if f.tokA, _, err = st.CreateToken(ctx, "alpha", "test"); err != nil {
		t.Fatal(err)
	}
	if f.tokB, _, err = st.CreateToken(ctx, "beta", "test"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	h := New(Options{
		Store: st, Sessions: &fakeSessions{sessions: map[string]string{}},
		AllowOrigins: []string{"http://allowed.example"},
		Metrics:      NewMetrics(f.reg),
		SecretsChanged: func(tn string) {
			mu.Lock()
			f.changed = append(f.changed, tn)
			mu.Unlock()
		},
	})
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

type resp struct {
	status int
	body   []byte
	hdr    http.Header
}

func (f *fixture) do(t *testing.T, method, path, token, body string, hdr ...string) resp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{r.StatusCode, b, r.Header}
}

func wantError(t *testing.T, r resp, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Code != code || e.Error.Message == "" {
		t.Fatalf("error body %s, want code %q", r.body, code)
	}
	if strings.Contains(e.Error.Message, "\n") {
		t.Fatalf("message not one line: %q", e.Error.Message)
	}
}

const value = `p@ss"wo<rd>&é😀`

func TestSecretsLifecycle(t *testing.T) {
	f := newFixture(t)
	body := `{"name":"acme_password","value":"p@ss\"wo<rd>&\u00e9\ud83d\ude00","origins":["https://acme.example"]}`
	r := f.do(t, "POST", "/api/v1/secrets", f.tokA, body)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if bytes.Contains(r.body, []byte("wo<rd")) || bytes.Contains(r.body, []byte(`"value"`)) {
		t.Fatalf("metadata holds the value: %s", r.body)
	}
	var meta secretstore.Meta
	if err := json.Unmarshal(r.body, &meta); err != nil || meta.Name != "acme_password" || meta.Version != 1 || len(meta.Origins) != 1 {
		t.Fatalf("metadata %s (%v)", r.body, err)
	}
	// The stored value is exactly what the JSON string said.
	tn, err := f.store.Tenant(context.Background(), "alpha")
	if err != nil {
		t.Fatal(err)
	}
	buf, _, err := tn.Reveal(context.Background(), "acme_password")
	if err != nil {
		t.Fatal(err)
	}
	if string(buf.Bytes()) != value {
		t.Fatalf("stored value differs")
	}
	buf.Destroy()

	r = f.do(t, "POST", "/api/v1/secrets", f.tokA, body)
	if r.status != http.StatusOK || !bytes.Contains(r.body, []byte(`"version":2`)) {
		t.Fatalf("replace: %d %s", r.status, r.body)
	}
	r = f.do(t, "GET", "/api/v1/secrets", f.tokA, "")
	if r.status != 200 || !bytes.Contains(r.body, []byte(`"acme_password"`)) {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	r = f.do(t, "GET", "/api/v1/secrets/acme_password", f.tokA, "")
	if r.status != 200 {
		t.Fatalf("get: %d %s", r.status, r.body)
	}
	if len(f.changed) != 2 || f.changed[0] != "alpha" {
		t.Fatalf("SecretsChanged calls %v", f.changed)
	}
	// Cross-tenant: indistinguishable from absent.
	absent := f.do(t, "GET", "/api/v1/secrets/nope", f.tokB, "")
	cross := f.do(t, "GET", "/api/v1/secrets/acme_password", f.tokB, "")
	wantError(t, cross, 404, "not_found")
	if !bytes.Equal(absent.body, cross.body) {
		t.Fatalf("cross-tenant answer differs from absent: %s vs %s", cross.body, absent.body)
	}
	wantError(t, f.do(t, "DELETE", "/api/v1/secrets/acme_password", f.tokB, ""), 404, "not_found")
	r = f.do(t, "GET", "/api/v1/secrets", f.tokB, "")
	if r.status != 200 || bytes.Contains(r.body, []byte("acme_password")) {
		t.Fatalf("tenant B sees A's secret: %s", r.body)
	}
	r = f.do(t, "DELETE", "/api/v1/secrets/acme_password", f.tokA, "")
	if r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	wantError(t, f.do(t, "GET", "/api/v1/secrets/acme_password", f.tokA, ""), 404, "not_found")
}

func TestSecretsBadInput(t *testing.T) {
	f := newFixture(t)
	long := strings.Repeat("x", secretstore.MaxValueLen+1)
	cases := []struct {
		name, body string
		status     int
		code       string
	}{
		{"malformed", `{"name":`, 400, "invalid_json"},
		{"not object", `[1]`, 400, "invalid_json"},
		{"unknown field", `{"name":"a1","value":"abcdefgh1","x":1}`, 400, "invalid_json"},
		{"bad name", `{"name":"-bad","value":"abcdefgh1"}`, 400, "invalid_name"},
		{"empty value", `{"name":"a1","value":""}`, 400, "invalid_value"},
		{"short value", `{"name":"a1","value":"short"}`, 400, "invalid_value"},
		{"long value", `{"name":"a1","value":"` + long + `"}`, 400, "invalid_value"},
		{"value not string", `{"name":"a1","value":12345678}`, 400, "invalid_value"},
		{"missing value", `{"name":"a1"}`, 400, "invalid_value"},
		{"bad origin", `{"name":"a1","value":"abcdefgh1","origins":["javascript:alert(1)"]}`, 400, "invalid_origin"},
		{"too large", `{"name":"a1","value":"` + strings.Repeat("y", MaxBody) + `"}`, 413, "body_too_large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, "POST", "/api/v1/secrets", f.tokA, tc.body)
			wantError(t, r, tc.status, tc.code)
			if bytes.Contains(r.body, []byte("abcdefgh1")) {
				t.Fatalf("error echoes the value: %s", r.body)
			}
		})
	}
	r := f.do(t, "POST", "/api/v1/secrets", f.tokA, "")
	wantError(t, r, 400, "invalid_json")

}

func TestAuthAndGuards(t *testing.T) {
	f := newFixture(t)
	wantError(t, f.do(t, "GET", "/api/v1/secrets", "", ""), 401, "unauthorized")
	wantError(t, f.do(t, "GET", "/api/v1/secrets", "cdpv_bogus_token", ""), 401, "unauthorized")
	wantError(t, f.do(t, "GET", "/api/v1/secrets", f.tokA+"x", ""), 401, "unauthorized")
	r := f.do(t, "GET", "/api/v1/secrets", "", "", "Authorization", "Basic Zm9vOmJhcg==")
	wantError(t, r, 401, "unauthorized")
	// Cross-site browser requests and DNS rebinding.
	wantError(t, f.do(t, "GET", "/api/v1/secrets", f.tokA, "", "Origin", "https://evil.example"), 403, "origin_not_allowed")
	if r := f.do(t, "GET", "/api/v1/secrets", f.tokA, "", "Origin", "http://allowed.example"); r.status != 200 {
		t.Fatalf("allowed origin refused: %d", r.status)
	}
	wantError(t, f.do(t, "GET", "/api/v1/secrets", f.tokA, "", "Host", "rebind.evil.example"), 400, "bad_host")
	if r := f.do(t, "GET", "/healthz", "", "", "Host", "localhost:9222"); r.status != 200 {
		t.Fatalf("localhost refused: %d", r.status)
	}
	if r := f.do(t, "GET", "/healthz", "", "", "Host", "[::1]:9222"); r.status != 200 {
		t.Fatalf("::1 refused: %d", r.status)
	}
	wantError(t, f.do(t, "GET", "/api/v1/nothing", f.tokA, ""), 404, "not_found")
	// Revoked tokens stop working.
	toks, err := f.store.ListTokens(context.Background(), "alpha")
	if err != nil || len(toks) != 1 {
		t.Fatalf("tokens %v %v", toks, err)
	}
	if err := f.store.RevokeToken(context.Background(), "alpha", toks[0].ID); err != nil {
		t.Fatal(err)
	}
	wantError(t, f.do(t, "GET", "/api/v1/secrets", f.tokA, ""), 401, "unauthorized")
}

func TestSessionsAndAudit(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ta, _ := f.store.Tenant(ctx, "alpha")
	if _, _, err := ta.PutSecret(ctx, "pw1", []byte("abcdefgh1"), []string{"https://a.example"}, "password"); err != nil {
		t.Fatal(err)
	}
	r := f.do(t, "POST", "/api/v1/sessions", f.tokA, `{"secrets":["pw1"],"ttl_seconds":60}`)
	if r.status != 201 || !bytes.Contains(r.body, []byte(`"cdp_url"`)) || !bytes.Contains(r.body, []byte(`"ws_url"`)) {
		t.Fatalf("create session: %d %s", r.status, r.body)
	}
	wantError(t, f.do(t, "POST", "/api/v1/sessions", f.tokB, `{"secrets":["pw1"]}`), 404, "secret_not_found")
	wantError(t, f.do(t, "POST", "/api/v1/sessions", f.tokA, `{"secrets":["pw1"],"geo":"xx"}`), 400, "unknown_geo_pool")
	wantError(t, f.do(t, "POST", "/api/v1/sessions", f.tokA, `{"secrets":["pw1"],"bogus":1}`), 400, "invalid_json")
	wantError(t, f.do(t, "POST", "/api/v1/sessions", f.tokA, `{"ttl_seconds":-1}`), 400, "invalid_ttl")
	wantError(t, f.do(t, "POST", "/api/v1/sessions", f.tokA, `{"secrets":["../x"]}`), 400, "invalid_name")
	if r := f.do(t, "POST", "/api/v1/sessions", f.tokA, ""); r.status != 201 {
		t.Fatalf("empty body session: %d %s", r.status, r.body)
	}
	r = f.do(t, "GET", "/api/v1/sessions", f.tokB, "")
	if r.status != 200 || bytes.Contains(r.body, []byte("s_alpha")) {
		t.Fatalf("tenant B lists A's session: %s", r.body)
	}
	wantError(t, f.do(t, "DELETE", "/api/v1/sessions/s_alpha_1", f.tokB, ""), 404, "not_found")
	if r := f.do(t, "DELETE", "/api/v1/sessions/s_alpha_1", f.tokA, ""); r.status != 204 {
		t.Fatalf("delete session: %d %s", r.status, r.body)
	}
	wantError(t, f.do(t, "DELETE", "/api/v1/sessions/s_alpha_1", f.tokA, ""), 404, "not_found")

	if err := ta.AppendAudit(ctx, secretstore.AuditRecord{Time: time.Now(), Session: "s1", Secret: "pw1", Version: 1, Origin: "https://a.example", Sink: "Input.insertText", Result: "injected"}); err != nil {
		t.Fatal(err)
	}
	r = f.do(t, "GET", "/api/v1/audit?limit=10", f.tokA, "")
	if r.status != 200 || !bytes.Contains(r.body, []byte(`"injected"`)) {
		t.Fatalf("audit: %d %s", r.status, r.body)
	}
	if r := f.do(t, "GET", "/api/v1/audit", f.tokB, ""); bytes.Contains(r.body, []byte("pw1")) {
		t.Fatalf("tenant B sees A's audit: %s", r.body)
	}
	wantError(t, f.do(t, "GET", "/api/v1/audit?limit=0", f.tokA, ""), 400, "invalid_limit")
}

func TestProbesAndMetrics(t *testing.T) {
	f := newFixture(t)
	if r := f.do(t, "GET", "/healthz", "", ""); r.status != 200 {
		t.Fatalf("healthz %d", r.status)
	}
	if r := f.do(t, "GET", "/readyz", "", ""); r.status != 200 {
		t.Fatalf("readyz %d", r.status)
	}
	f.do(t, "GET", "/api/v1/secrets", "", "")
	if got := apiCount(t, f, "401"); got != 1 {
		t.Fatalf("401 not counted: %v", got)
	}
	if probs, err := testutil.GatherAndLint(f.reg); err != nil || len(probs) > 0 {
		t.Fatalf("promlint: %v %v", probs, err)
	}
}

// apiCount is cdpvault_api_requests_total{code} as gathered (-1 if absent).
func apiCount(t *testing.T, f *fixture, code string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "cdpvault_api_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" && l.GetValue() == code {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

func TestReadyzReportsFailure(t *testing.T) {
	h := New(Options{Ready: func(context.Context) error { return io.ErrUnexpectedEOF }})
	srv := httptest.NewServer(h)
	defer srv.Close()
	r, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	wantError(t, resp{r.StatusCode, b, r.Header}, 503, "not_ready")
}

func TestUnquoteJSONString(t *testing.T) {
	cases := map[string]string{
		`"plain"`:                 "plain",
		`"q\"b\\s\/"`:             `q"b\s/`,
		`"\u00e9\ud83d\ude00"`:    "é😀",
		`"\n\t\r\b\f"`:            "\n\t\r\b\f",
		`"raw é 😀 <&>"`:           "raw é 😀 <&>",
		`"\u003c\u003E\u0026"`:    "<>&",
		`"lone \ud800 surrogate"`: "lone \uFFFD surrogate",
	}
	for in, want := range cases {
		buf, err := unquoteJSONString(json.RawMessage(in))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got := string(buf.Bytes()); got != want {
			t.Errorf("%s: got %q want %q", in, got, want)
		}
		buf.Destroy()
	}
	for _, bad := range []string{`12`, `"unterminated`, `"bad \x"`, `"\u12"`} {
		if buf, err := unquoteJSONString(json.RawMessage(bad)); err == nil {
			buf.Destroy()
			t.Errorf("%s accepted", bad)
		}
	}
	_ = memguard.NewBuffer
}
