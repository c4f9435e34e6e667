// Package geo owns cdpvault's geo routing: for every browser session that
// names a geo pool it runs a local forward proxy on its own loopback port
// (a Forwarder, built on github.com/elazarl/goproxy) that sends all of the
// browser's traffic through one of the pool's upstream proxies (http://,
// https:// with verified certificates, or socks5:// with hostnames resolved
// by the upstream), adding the upstream's Proxy-Authorization itself.
//
// geo knows TCP, HTTP proxying and upstream health. It knows nothing of CDP
// and nothing of the secret store: the daemon hands it a Credentials
// function that resolves a password_secret name into a memguard buffer.
//
// Fail closed: a Forwarder has no direct path. Every dialer goproxy could
// fall back to (ConnectDial, Transport.Dial/DialContext/DialTLSContext,
// Transport.Proxy) is wired to an upstream of the session's pool or to an
// error, so when every upstream is down the browser gets the constant error
// "cdpvault: upstream unavailable" and the site receives nothing.
//
// Credentials: the Basic Proxy-Authorization value of each upstream is kept
// in one frozen memguard LockedBuffer, built lazily on first use and
// destroyed when the Router closes (or when a Reload retires the upstream
// and no session uses it any more). It is copied into ordinary memory only
// for the one CONNECT request being written (that copy is wiped) or the one
// plain-HTTP header being sent. No credential appears in a log line, an
// error, a metric label or an error body.
//
// Peers: any local process can reach a loopback port. In launch mode the
// daemon opens the forwarder with SessionOptions.RestrictPeers and, once
// the browser runs, calls Forwarder.AllowProcessTree(browser pid): only
// connections whose client socket is held by the browser or a descendant
// (found through a sock_diag lookup and /proc/<pid>/fd) are served; the others
// are closed unanswered and counted (see peer.go).
package geo
