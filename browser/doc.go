// Package browser starts, watches and stops the Chromium processes cdpvault sessions drive, and
// attaches to an existing Chrome in attach mode. It knows processes, profile directories and Chrome's
// DevToolsActivePort file; it does not speak CDP beyond reading /json/version.
//
// Guarantee: no orphaned browser process, ever. Each launched browser gets its own process group
// (Setpgid) and a parent-death signal (Pdeathsig=SIGKILL, armed from one dedicated, locked OS thread
// that never exits, so the signal fires only when the daemon itself dies). Close, a launch context
// cancelled during start-up and a crashed browser all end in SIGKILL to the whole group while the
// group leader is still an unreaped zombie (so its process-group id cannot have been reused), then
// the leader is reaped and Close waits until no live process of the group is left before it
// removes the profile directory. Profile directories left by a daemon that was itself SIGKILLed are
// removed by RemoveStaleProfiles at the next start.
//
// Children of a browser killed by the parent-death signal notice the closed IPC channel and exit on
// their own within a fraction of a second (tested); under systemd, the unit's cgroup (KillMode=mixed)
// is the final backstop.
package browser
