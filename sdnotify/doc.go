// Package sdnotify speaks systemd's service notification protocol (sd_notify(3)) without libsystemd.
//
// It owns nothing but the datagram messages a Type=notify service sends to $NOTIFY_SOCKET: READY=1,
// STOPPING=1, RELOADING=1 (with MONOTONIC_USEC), STATUS=..., WATCHDOG=1, and reading the watchdog
// interval from $WATCHDOG_USEC/$WATCHDOG_PID. When NOTIFY_SOCKET is unset (not running under systemd,
// or under a unit without Type=notify) every call is a silent no-op that returns nil, so callers never
// need to know whether they run under systemd.
//
// NOTIFY_SOCKET may name a filesystem socket ("/run/systemd/notify") or an abstract one ("@/org/...").
package sdnotify
