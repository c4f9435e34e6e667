// Package cdpproxy is cdpvault's Chrome DevTools Protocol endpoint: it serves
// Chrome's HTTP discovery endpoints under a per-session URL prefix (every URL
// rewritten to come back through the daemon), proxies the DevTools WebSockets
// of a session to its browser (one upstream connection per client
// connection, messages kept strictly in order), guards both the way Chrome
// guards its own port (Origin and Host checks), tracks the flattened CDP
// sessions of each connection and runs every message through the ordered
// interceptor chain defined in interceptor.go.
//
// The WebSocket legs are written on github.com/gobwas/ws's low-level API so
// that the package owns every buffer that holds a message: a frame is read
// into a pooled buffer, run through the interceptors and written out in the
// same goroutine, and the buffer is wiped before it is reused or released.
// A message that no interceptor changes is forwarded as the same bytes.
// On Linux small socket reads and writes are raw system calls through
// syscall.RawConn (sysio_linux.go): the runtime poller still does the
// waiting, but an idle proxy no longer wakes the runtime's monitor thread
// on every message.
package cdpproxy
