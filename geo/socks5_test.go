package geo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestSOCKSRequestEncoding(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		target string
		want   []byte
	}{
		{"acme.test:443", append(append([]byte{5, 1, 0, 3, 9}, "acme.test"...), 1, 0xbb)},
		{"127.0.0.1:80", []byte{5, 1, 0, 1, 127, 0, 0, 1, 0, 80}},
		{"[::ffff:10.0.0.1]:80", []byte{5, 1, 0, 1, 10, 0, 0, 1, 0, 80}},
		{"[2001:db8::1]:8080", []byte{5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x1f, 0x90}},
	} {
		got, err := socksRequest(c.target)
		if err != nil || !bytes.Equal(got, c.want) {
			t.Errorf("socksRequest(%q) = %v, %v; want %v", c.target, got, err, c.want)
		}
	}
	for _, bad := range []string{"acme.test", "acme.test:0", "acme.test:65536", ":80", strings.Repeat("a", 256) + ":80"} {
		if _, err := socksRequest(bad); err == nil {
			t.Errorf("socksRequest(%q) accepted", bad)
		}
	}
}

// socksReq is socksRequest(target), which must succeed.
func socksReq(t *testing.T, target string) []byte {
	t.Helper()
	req, err := socksRequest(target)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// TestSOCKSHandshakeAgainstServer runs the client against the test SOCKS5
// server (RFC 1928/1929, username/password required): the tunnel carries
// HTTP to the site, the hostname reaches the server unresolved, a wrong
// password and a missing one are told apart, and the caller's password
// bytes are left as they were (the client wipes only its own copies).
func TestSOCKSHandshakeAgainstServer(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	sk := newSOCKS5(t, "alice", "s3cret<&>")
	addr := strings.TrimPrefix(sk.URL(), "socks5://")

	pw := []byte("s3cret<&>")
	c := dialTCP(t, addr)
	if err := socksHandshake(c, "alice", pw, socksReq(t, "acme.test:"+s.port())); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if string(pw) != "s3cret<&>" {
		t.Fatalf("the caller's password was modified: %q", pw)
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: acme.test\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(c)
	if !bytes.Contains(body, []byte("hello from site")) {
		t.Fatalf("through the tunnel: %q", body)
	}
	if got := sk.Requests(); len(got) != 1 || got[0] != "fqdn:acme.test:"+s.port() {
		t.Fatalf("server saw %v, want the unresolved hostname", got)
	}

	if err := socksHandshake(dialTCP(t, addr), "alice", []byte("wrong"), socksReq(t, "acme.test:"+s.port())); !errors.Is(err, errSOCKSAuth) {
		t.Fatalf("wrong password: %v, want errSOCKSAuth", err)
	}
	if err := socksHandshake(dialTCP(t, addr), "", nil, socksReq(t, "acme.test:"+s.port())); !errors.Is(err, errSOCKSMethod) {
		t.Fatalf("no credentials to a server requiring them: %v, want errSOCKSMethod", err)
	}
	var rep socksReplyError
	if err := socksHandshake(dialTCP(t, addr), "alice", pw, socksReq(t, deadAddr(t))); !errors.As(err, &rep) || rep != 4 {
		t.Fatalf("unreachable target: %v, want reply 4", err)
	}
}

// cannedSOCKS answers every connection with reply after reading the
// greeting (3 bytes) and the request (reqLen bytes), then closes; a fault
// injector.
func cannedSOCKS(t *testing.T, reply []byte, reqLen int) string {
	t.Helper()
	return serveTCP(t, func(c net.Conn) {
		defer c.Close()
		if _, err := io.ReadFull(c, make([]byte, 3)); err != nil {
			return
		}
		_, _ = c.Write(reply[:2])
		if _, err := io.ReadFull(c, make([]byte, reqLen)); err != nil {
			return
		}
		_, _ = c.Write(reply[2:]) // then close: a truncated reply ends in EOF
	}).Addr().String()
}

// TestSOCKSHandshakeMalformedReplies: bad replies are errors, never a hang
// or a panic; a bound address of any type is read in full.
func TestSOCKSHandshakeMalformedReplies(t *testing.T) {
	t.Parallel()
	const reqLen = 10 // CONNECT 127.0.0.1:80: 4-byte header, 4-byte address, 2-byte port
	for _, c := range []struct {
		name  string
		reply []byte
		ok    bool
	}{
		{"ipv4 bound", []byte{5, 0, 5, 0, 0, 1, 1, 2, 3, 4, 0, 80}, true},
		{"domain bound", append(append([]byte{5, 0, 5, 0, 0, 3, 4}, "host"...), 0, 80), true},
		{"ipv6 bound", append(append([]byte{5, 0, 5, 0, 0, 4}, make([]byte, 16)...), 0, 80), true},
		{"wrong version", []byte{4, 0, 5, 0, 0, 1, 1, 2, 3, 4, 0, 80}, false},
		{"no method", []byte{5, 0xff}, false},
		{"wrong reply version", []byte{5, 0, 4, 0, 0, 1, 1, 2, 3, 4, 0, 80}, false},
		{"bad atyp", []byte{5, 0, 5, 0, 0, 9}, false},
		{"truncated", []byte{5, 0, 5, 0, 0, 1, 1}, false},
	} {
		addr := cannedSOCKS(t, c.reply, reqLen)
		conn := dialTCP(t, addr)
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		err := socksHandshake(conn, "", nil, socksReq(t, "127.0.0.1:80"))
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v, want ok %v", c.name, err, c.ok)
		}
		if c.ok {
			// the stream is positioned after the reply: nothing left over
			if n, _ := conn.Read(make([]byte, 1)); n != 0 {
				t.Errorf("%s: bytes of the reply left unread", c.name)
			}
		}
	}
}

// TestSOCKSUpstreamFailureKinds: through a Router, a refused password
// marks the upstream down for auth and drops the cached credential; an
// unreachable target leaves the upstream up.
func TestSOCKSUpstreamFailureKinds(t *testing.T) {
	t.Parallel()
	good := newSOCKS5(t, user(0), pw(0))
	pools, secrets := poolOf(good.URL())
	e := newEnv(t, pools, secrets, nil)
	u := e.upstreamAt(t, "de", 0)
	ctx := context.Background()
	_, err := u.dialSOCKS(ctx, deadAddr(t))
	var ae *attemptError
	if !errors.As(err, &ae) || ae.kind != failTarget {
		t.Fatalf("unreachable target: %v, want a target failure", err)
	}
	if strings.Contains(err.Error(), pw(0)) {
		t.Fatal("error holds the password")
	}
	// a target the CONNECT request cannot carry is no failure of the upstream
	_, err = u.dialSOCKS(ctx, strings.Repeat("a", 256)+":80")
	if !errors.As(err, &ae) || ae.kind != failTarget {
		t.Fatalf("host name of 256 bytes: %v, want a target failure", err)
	}

	bad := newSOCKS5(t, user(0), "another")
	pools, secrets = poolOf(bad.URL())
	e2 := newEnv(t, pools, secrets, nil)
	u = e2.upstreamAt(t, "de", 0)
	_, err = u.dialSOCKS(ctx, "acme.test:80")
	if !errors.As(err, &ae) || ae.kind != failAuth {
		t.Fatalf("refused password: %v, want an auth failure", err)
	}
	if strings.Contains(err.Error(), pw(0)) || strings.Contains(e2.logs.String(), pw(0)) {
		t.Fatal("error or log holds the password")
	}
	u.cmu.RLock()
	cached := u.cred != nil
	u.cmu.RUnlock()
	if cached {
		t.Fatal("the refused credential is still cached")
	}
	if bad.badAuth.Load() != 1 {
		t.Fatalf("server saw %d bad authentications", bad.badAuth.Load())
	}
}
