// Package daemon owns the cdpvault process: the command line (global flags,
// admin subcommands, serve), configuration with flag > env > file
// precedence, the wiring of the secret store, CDP proxy with its injection
// and scrub interceptors, geo pools and REST API, the session manager
// (one browser per session, TTLs), scrub indexes kept current per tenant,
// and the lifecycle: memlock check, readiness, SIGHUP reload, graceful
// SIGTERM stop with a forced second signal, systemd notifications.
//
// It is the only package that knows every other one; only main picks exit
// codes.
package daemon
