#!/usr/bin/env bash
# verify-units.sh: checks every systemd unit shipped in configs/.
#
# 1. `systemd-analyze verify` on cdpvault.service (attach mode), cdpvault-chromium.service and
#    cdpvault.service with the launch-mode drop-in cdpvault-launch.conf. systemd-analyze exits 0 even
#    when it ignores a misspelt key or a bad value, so ANY output from it counts as a failure.
# 2. `systemd-analyze security --offline=true` exposure of each, printed and held under a ceiling
#    (the level measured when the units were written), so a weakened unit fails.
#
# verify checks that ExecStart binaries exist and are executable, so the units are copied into a
# temp dir with /usr/local/bin/cdpvault replaced by a real cdpvault binary: $CDPVAULT_BIN if set,
# else one built from the module root with `go build`. Only while the module has no main.go yet is
# /bin/true put in its place (said loudly below): the unit's syntax is then still fully checked.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

if ! command -v systemd-analyze >/dev/null; then
	echo "verify-units: systemd-analyze not found (apt-get install -y systemd)" >&2
	exit 2
fi
if [ ! -x /usr/bin/chromium ]; then
	echo "verify-units: /usr/bin/chromium (ExecStart of cdpvault-chromium.service) missing; run make chromium" >&2
	exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

bin=${CDPVAULT_BIN:-}
if [ -z "$bin" ]; then
	if [ -f "$root/main.go" ]; then
		mkdir -p "$tmp/bin"
		if ! (cd "$root" && go build -o "$tmp/bin/cdpvault" .); then
			echo "verify-units: go build of the cdpvault binary failed (set CDPVAULT_BIN to use a built one)" >&2
			exit 1
		fi
		bin=$tmp/bin/cdpvault
	else
		echo "verify-units: NOTE: $root/main.go does not exist yet; checking ExecStart against /bin/true"
		bin=/bin/true
	fi
fi
if [ ! -x "$bin" ]; then
	echo "verify-units: cdpvault binary $bin is not executable" >&2
	exit 2
fi

# stage DIR: copy the units into DIR with the real binary path in ExecStart.
stage() {
	mkdir -p "$1"
	sed "s#^ExecStart=/usr/local/bin/cdpvault #ExecStart=$bin #" "$here/cdpvault.service" >"$1/cdpvault.service"
	grep -q "^ExecStart=$bin " "$1/cdpvault.service" || { echo "verify-units: ExecStart not found in cdpvault.service" >&2; exit 1; }
	cp "$here/cdpvault-chromium.service" "$1/"
}
stage "$tmp/attach"
stage "$tmp/launch"
mkdir -p "$tmp/launch/cdpvault.service.d"
cp "$here/cdpvault-launch.conf" "$tmp/launch/cdpvault.service.d/launch.conf"

fail=0
verify() { # verify LABEL DIR UNIT...
	local label=$1 dir=$2 out
	shift 2
	if ! out=$(cd "$dir" && systemd-analyze verify --man=no "$@" 2>&1) || [ -n "$out" ]; then
		echo "verify-units: FAIL verify ($label):"
		echo "$out"
		fail=1
	else
		echo "verify-units: ok verify ($label): $*"
	fi
}
verify attach "$tmp/attach" ./cdpvault.service ./cdpvault-chromium.service
verify launch "$tmp/launch" ./cdpvault.service

# exposure LABEL DIR UNIT CEILING: CEILING is the exposure level x10 (systemd-analyze's --threshold).
exposure() {
	local label=$1 dir=$2 unit=$3 ceiling=$4 out level
	out=$(cd "$dir" && systemd-analyze security --offline=true --no-pager "./$unit" 2>&1) || true
	level=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	if [ -z "$level" ]; then
		echo "verify-units: FAIL security ($label): no exposure level in output:"
		echo "$out"
		fail=1
		return
	fi
	echo "exposure $unit ($label): $level"
	if ! (cd "$dir" && systemd-analyze security --offline=true --no-pager --threshold="$ceiling" "./$unit" >/dev/null 2>&1); then
		echo "verify-units: FAIL security ($label): $unit exposure $level is above the ceiling $((ceiling / 10)).$((ceiling % 10))"
		fail=1
	fi
}
exposure attach "$tmp/attach" cdpvault.service 12
exposure attach "$tmp/attach" cdpvault-chromium.service 23
exposure launch "$tmp/launch" cdpvault.service 23

if [ "$fail" -ne 0 ]; then
	exit 1
fi
echo "verify-units: all units pass"
