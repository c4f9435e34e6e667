// Command demosite is a tiny login site for trying cdpvault: one form, one
// account, and a /status page that says whether the last login worked. The
// password is read from a file (never argv) so it can be the same value the
// operator stores in cdpvault.
//
//	demosite -addr 127.0.0.1:8080 -password-file demo.pw
//
// It prints "demosite listening on http://ADDR" once it accepts connections.
package main

import (
	"bytes"
	"crypto/subtle"
	"flag"
	"fmt"
	"html"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
)

const loginForm = `<!doctype html>
<html><head><meta charset="utf-8"><title>Demo login</title></head>
<body>
<h1>Demo login</h1>
<form id="login-form" method="post" action="/login" accept-charset="utf-8">
  <label>Username <input id="username" name="username" autocomplete="username"></label>
  <label>Password <input id="password" name="password" type="password" autocomplete="current-password"></label>
  <button id="submit" type="submit">Log in</button>
</form>
</body></html>`

type site struct {
	user     string
	password []byte

	mu    sync.Mutex
	state string // "no login", "login ok" or "login failed"
}

func (s *site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case (r.URL.Path == "/" || r.URL.Path == "/login") && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, loginForm)
	case r.URL.Path == "/login" && r.Method == http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		userOK := subtle.ConstantTimeCompare([]byte(r.PostForm.Get("username")), []byte(s.user)) == 1
		passOK := subtle.ConstantTimeCompare([]byte(r.PostForm.Get("password")), s.password) == 1
		state := "login failed"
		if userOK && passOK {
			state = "login ok"
		}
		s.mu.Lock()
		s.state = state
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><head><meta charset="utf-8"><title>%s</title></head>`+
			`<body><p id="result">%s</p></body></html>`, html.EscapeString(state), html.EscapeString(state))
	case r.URL.Path == "/status":
		s.mu.Lock()
		state := s.state
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, state+"\n")
	default:
		http.NotFound(w, r)
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	user := flag.String("user", "demo", "the account's username")
	pwFile := flag.String("password-file", "", "file holding the account's password (a trailing newline is dropped)")
	flag.Parse()
	if *pwFile == "" {
		log.Fatal("demosite: -password-file is required")
	}
	pw, err := os.ReadFile(*pwFile)
	if err != nil {
		log.Fatalf("demosite: read password: %v", err)
	}
	pw = bytes.TrimSuffix(pw, []byte("\n"))
	if len(pw) == 0 {
		log.Fatal("demosite: the password file is empty")
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("demosite: %v", err)
	}
	fmt.Printf("demosite listening on http://%s\n", ln.Addr())
	srv := &http.Server{Handler: &site{user: *user, password: pw, state: "no login"}}
	log.Fatal(srv.Serve(ln))
}
