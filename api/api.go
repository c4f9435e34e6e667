// Package api owns cdpvault's REST API under /api/v1 and the /healthz and
// /readyz probes: authentication by bearer token (the token decides the
// tenant), the secrets and sessions resources, the audit log, the JSON error
// form of INTERFACE.md, and the Host/Origin guards that keep a web page in
// the browser next to the daemon from calling it (CSRF, DNS rebinding).
//
// It turns HTTP requests into calls on a tenant-scoped secretstore handle
// and on the daemon's session manager; it knows nothing of CDP.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/awnumar/memguard"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdpvault/cdpvault/jsonstr"
	"github.com/cdpvault/cdpvault/secretstore"
)

// MaxBody bounds every request body.
const MaxBody = 64 << 10

// SessionRequest is the body of POST /api/v1/sessions.
type SessionRequest struct {
	Secrets    []string `json:"secrets"`
	Geo        string   `json:"geo,omitempty"`
	TTLSeconds int64    `json:"ttl_seconds,omitempty"`
}

// SessionView is a session as the API shows it.
type SessionView struct {
	ID        string    `json:"id"`
	CDPURL    string    `json:"cdp_url"`
	WSURL     string    `json:"ws_url"`
	ExpiresAt time.Time `json:"expires_at"`
	Secrets   []string  `json:"secrets"`
	Geo       string    `json:"geo,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Error is an API error with an HTTP status and a snake_case code. Sessions
// implementations return it to choose the answer.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Sessions is the daemon's session manager as the API needs it. Every call
// is scoped by the authenticated tenant.
type Sessions interface {
	Create(ctx context.Context, t *secretstore.Tenant, req SessionRequest, baseURL string) (SessionView, error)
	List(t *secretstore.Tenant, baseURL string) []SessionView
	Delete(t *secretstore.Tenant, id string) error
}

// Options configure the API handler.
type Options struct {
	Store        *secretstore.Store
	Sessions     Sessions
	AllowOrigins []string
	Logger       *slog.Logger
	Metrics      *Metrics
	// Ready reports whether the daemon can serve (store open, browser
	// startable); nil means ready.
	Ready func(ctx context.Context) error
	// SecretsChanged is called after a secret of the tenant was written or
	// removed through the API (the daemon refreshes scrub indexes).
	SecretsChanged func(tenant string)
}

// Metrics are the API's Prometheus metrics.
type Metrics struct {
	requests *prometheus.CounterVec
}

// NewMetrics creates and registers cdpvault_api_requests_total{code}; reg
// may be nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cdpvault_api_requests_total",
		Help: "REST API requests by HTTP status code.",
	}, []string{"code"})}
	if reg != nil {
		reg.MustRegister(m.requests)
	}
	return m
}

type handler struct {
	o   Options
	mux *http.ServeMux
}

// New returns the handler for /api/v1/..., /healthz and /readyz.
func New(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	h := &handler{o: o, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /healthz", h.healthz)
	h.mux.HandleFunc("GET /readyz", h.readyz)
	h.mux.HandleFunc("POST /api/v1/secrets", h.auth(h.putSecret))
	h.mux.HandleFunc("GET /api/v1/secrets", h.auth(h.listSecrets))
	h.mux.HandleFunc("GET /api/v1/secrets/{name}", h.auth(h.getSecret))
	h.mux.HandleFunc("DELETE /api/v1/secrets/{name}", h.auth(h.deleteSecret))
	h.mux.HandleFunc("POST /api/v1/sessions", h.auth(h.createSession))
	h.mux.HandleFunc("GET /api/v1/sessions", h.auth(h.listSessions))
	h.mux.HandleFunc("DELETE /api/v1/sessions/{id}", h.auth(h.deleteSession))
	h.mux.HandleFunc("GET /api/v1/audit", h.auth(h.audit))
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &Error{http.StatusNotFound, "not_found", "no such endpoint"})
	})
	return h
}

// statusWriter records the status for the metric.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		h.o.Metrics.requests.WithLabelValues(strconv.Itoa(sw.status)).Inc()
	}()
	if err := CheckHostOrigin(r, h.o.AllowOrigins); err != nil {
		writeError(sw, err)
		return
	}
	sw.Header().Set("Cache-Control", "no-store")
	sw.Header().Set("X-Content-Type-Options", "nosniff")
	h.mux.ServeHTTP(sw, r)
}

// CheckHostOrigin applies the guards Chrome puts on its own port: a Host that
// is not an IP literal or localhost is refused (DNS rebinding), and a request
// carrying an Origin not listed in allow is refused (a web page calling
// through the browser).
func CheckHostOrigin(r *http.Request, allow []string) *Error {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if !strings.EqualFold(host, "localhost") && net.ParseIP(host) == nil {
		return &Error{http.StatusBadRequest, "bad_host", "Host header must be an IP address or localhost"}
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		for _, a := range allow {
			if strings.EqualFold(strings.TrimSuffix(a, "/"), origin) {
				return nil
			}
		}
		return &Error{http.StatusForbidden, "origin_not_allowed", "requests with an Origin header are refused unless allow_origins lists it"}
	}
	return nil
}

func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *handler) readyz(w http.ResponseWriter, r *http.Request) {
	if h.o.Ready != nil {
		if err := h.o.Ready(r.Context()); err != nil {
			writeError(w, &Error{http.StatusServiceUnavailable, "not_ready", err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

type tenantHandler func(w http.ResponseWriter, r *http.Request, t *secretstore.Tenant)

func (h *handler) auth(next tenantHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cdpvault"`)
			writeError(w, &Error{http.StatusUnauthorized, "unauthorized", "missing bearer token"})
			return
		}
		t, err := h.o.Store.Authenticate(r.Context(), strings.TrimSpace(tok))
		if err != nil {
			if !errors.Is(err, secretstore.ErrUnauthorized) {
				// The token may be fine: the store could not check it.
				h.o.Logger.Error("authenticate", "err", err)
				writeError(w, storeError(err))
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="cdpvault", error="invalid_token"`)
			writeError(w, &Error{http.StatusUnauthorized, "unauthorized", "invalid or revoked token"})
			return
		}
		next(w, r, t)
	}
}

// readBody reads a size-limited JSON body into a buffer the caller wipes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, *Error) {
	// The Content-Type is not checked: cross-site browser requests are
	// refused by their Origin header (CheckHostOrigin), and curl -d sends a
	// form type by default.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &Error{http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body exceeds %d bytes", MaxBody)}
		}
		return nil, &Error{http.StatusBadRequest, "bad_request", "could not read request body"}
	}
	return body, nil
}

// decodeStrict decodes body into v, refusing unknown fields and trailing data.
func decodeStrict(body []byte, v any) *Error {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		msg := "malformed JSON"
		if strings.HasPrefix(err.Error(), "json: unknown field") {
			msg = strings.TrimPrefix(err.Error(), "json: ")
		}
		return &Error{http.StatusBadRequest, "invalid_json", msg}
	}
	if dec.More() {
		return &Error{http.StatusBadRequest, "invalid_json", "trailing data after JSON body"}
	}
	return nil
}

type secretBody struct {
	Name    string          `json:"name"`
	Value   json.RawMessage `json:"value"`
	Origins []string        `json:"origins"`
	Kind    string          `json:"kind"`
}

func (h *handler) putSecret(w http.ResponseWriter, r *http.Request, t *secretstore.Tenant) {
	body, aerr := readBody(w, r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	defer wipe(body)
	req, members, aerr := decodeSecretBody(body)
	defer func() {
		for _, v := range members {
			wipe(v)
		}
	}()
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if !secretstore.ValidName(req.Name) {
		writeError(w, &Error{http.StatusBadRequest, "invalid_name", "name must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"})
		return
	}
	value, err := unquoteJSONString(req.Value)
	if err != nil {
		writeError(w, &Error{http.StatusBadRequest, "invalid_value", "value must be a JSON string"})
		return
	}
	defer value.Destroy()
	kind := secretstore.Kind(req.Kind)
	if kind == "" {
		kind = "password"
	}
	meta, created, err := t.PutSecret(r.Context(), req.Name, value.Bytes(), req.Origins, kind)
	if err != nil {
		writeError(w, storeError(err))
		return
	}
	if h.o.SecretsChanged != nil {
		h.o.SecretsChanged(t.Name())
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, meta)
}

func (h *handler) listSecrets(w http.ResponseWriter, r *http.Request, t *secretstore.Tenant) {
	ms, err := t.Secrets(r.Context())
	if err != nil {
		writeError(w, storeError(err))
		return
	}
	if ms == nil {
		ms = []secretstore.Meta{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"secrets": ms})
}

func (h *handler) getSecret(w http.ResponseWriter, r *http.Request, t *secretstore.Tenant) {
	m, err := t.Secret(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, storeError(err))
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (h *handler) deleteSecret(w http.ResponseWriter, r *http.Request, t *secretstore.Tenant) {
	if err := t.DeleteSecret(r.Context(), r.PathValue("name")); err != nil {
		writeError(w, storeError(err))
		return
	}
	if h.o.SecretsChanged != nil {
		h.o.SecretsChanged(t.Name())
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) createSession(w http.ResponseWriter, r *http.Request, t *secretstore.Tenant) {
	body, aerr := readBody(w, r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	var req SessionRequest
	if len(strings.TrimSpace(string(body))) > 0 {
		if aerr := decodeStrict(body, &req); aerr != nil {
			writeError(w, aerr)
			return
		}
	}
	if req.TTLSeconds < 0 {
		writeError(w, &Error{http.StatusBadRequest, "invalid_ttl", "ttl_seconds must be positive"})
		return
	}
	for _, n := range req.Secrets {
		if !secretstore.ValidName(n) {
			writeError(w, &Error{http.StatusBadRequest, "invalid_name", "secret names must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"})
			return
		}
	}
	v, err := h.o.Sessions.Create(r.Context(), t, req, baseURL(r))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

func (h *handler) listSessions(w http.ResponseWriter, r *http.Request, t *secretstore.Tenant) {
	list := h.o.Sessions.List(t, baseURL(r))
	if list == nil {
		list = []SessionView{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": list})
}

func (h *handler) deleteSession(w http.ResponseWriter, r *http.Request, t *secretstore.Tenant) {
	if err := h.o.Sessions.Delete(t, r.PathValue("id")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) audit(w http.ResponseWriter, r *http.Request, t *secretstore.Tenant) {
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, &Error{http.StatusBadRequest, "invalid_limit", "limit must be between 1 and 10000"})
			return
		}
		limit = n
	}
	recs, err := t.Audit(r.Context(), limit)
	if err != nil {
		writeError(w, storeError(err))
		return
	}
	if recs == nil {
		recs = []secretstore.AuditRecord{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"records": recs})
}

// baseURL is how the client reached us, for cdp_url and ws_url.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// storeError maps store errors to API errors. Store errors never carry a
// value, and cross-tenant lookups are plain not-found.
func storeError(err error) *Error {
	switch {
	case errors.Is(err, secretstore.ErrNotFound):
		return &Error{http.StatusNotFound, "not_found", "not found"}
	case errors.Is(err, secretstore.ErrExists):
		return &Error{http.StatusConflict, "exists", "already exists"}
	case errors.Is(err, secretstore.ErrInvalidName):
		return &Error{http.StatusBadRequest, "invalid_name", "name must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"}
	case errors.Is(err, secretstore.ErrInvalidKind):
		return &Error{http.StatusBadRequest, "invalid_kind", "kind must be password, text or totp"}
	case errors.Is(err, secretstore.ErrInvalidValue):
		// The store's reason (length, control characters, base32) never
		// holds the value.
		return &Error{http.StatusBadRequest, "invalid_value", oneLine(err.Error())}
	case errors.Is(err, secretstore.ErrInvalidOrigin):
		return &Error{http.StatusBadRequest, "invalid_origin", oneLine(err.Error())}
	case errors.Is(err, secretstore.ErrMemlock):
		return &Error{http.StatusServiceUnavailable, "memlock_exhausted", "no lockable memory left for secret values; retry later"}
	}
	return &Error{http.StatusInternalServerError, "internal", "internal error"}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func writeError(w http.ResponseWriter, err error) {
	var ae *Error
	if !errors.As(err, &ae) {
		ae = &Error{http.StatusInternalServerError, "internal", "internal error"}
	}
	type body struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	writeJSON(w, ae.Status, map[string]body{"error": {Code: ae.Code, Message: oneLine(ae.Message)}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func wipe(b []byte) {
	for i := range b {
		b[i] = 0
	}
}

// decodeSecretBody decodes a body that holds a secret value without turning
// it into a Go string: json.Unmarshal scans the body in place, every member
// lands in its own json.RawMessage (wiped by the caller), and only the
// non-secret members are decoded further. Unknown members are refused.
func decodeSecretBody(body []byte) (secretBody, map[string]json.RawMessage, *Error) {
	var req secretBody
	var members map[string]json.RawMessage
	if err := json.Unmarshal(body, &members); err != nil || members == nil {
		return req, members, &Error{http.StatusBadRequest, "invalid_json", "malformed JSON: expected an object"}
	}
	for k, v := range members {
		var err error
		switch k {
		case "name":
			err = json.Unmarshal(v, &req.Name)
		case "origins":
			err = json.Unmarshal(v, &req.Origins)
		case "kind":
			err = json.Unmarshal(v, &req.Kind)
		case "value":
			req.Value = v
		default:
			return req, members, &Error{http.StatusBadRequest, "invalid_json", fmt.Sprintf("unknown field %q", k)}
		}
		if err != nil {
			return req, members, &Error{http.StatusBadRequest, "invalid_json", fmt.Sprintf("field %q has the wrong type", k)}
		}
	}
	if req.Value == nil {
		return req, members, &Error{http.StatusBadRequest, "invalid_value", "value is required"}
	}
	return req, members, nil
}

// unquoteJSONString decodes a JSON string literal into a locked buffer.
func unquoteJSONString(raw json.RawMessage) (*memguard.LockedBuffer, error) {
	s := bytes.TrimSpace(raw)
	// The decoded value is never longer than the literal, so it is decoded
	// in place into locked memory and never reallocated.
	buf := memguard.NewBuffer(len(s) + 1)
	out, err := jsonstr.Unquote(buf.Bytes()[:0], s)
	if err != nil {
		buf.Destroy()
		return nil, err
	}
	res := memguard.NewBufferFromBytes(out) // copies and wipes out
	buf.Destroy()
	return res, nil
}
