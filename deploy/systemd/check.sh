#!/usr/bin/env bash
# shellcheck disable=SC2016 # $ARGS and $MAINPID below are systemd's, not the shell's.
# Checks the systemd units in this directory:
#
#  1. `systemd-analyze verify` on each unit, exactly as written: the units are
#     installed into a scratch root (with the host's own units for targets
#     such as sysinit.target, /usr/bin/kill for ExecReload= and a freshly
#     built linkwatch_exporter at /usr/bin) and verified with --root, so
#     nothing outside the scratch directory is touched. verify exits 0 on
#     mere warnings (an unknown key, an unparsable value), so any output
#     counts as a failure.
#  2. The hardening settings every service must carry (and the capability
#     settings of each variant) are present, and PrivateNetwork= is absent.
#  3. The flags in each ExecStart= are accepted by the binary.
#  4. `systemd-analyze security --offline` stays at or below $THRESHOLD
#     (exposure x10); the scores are printed.
#
# Usage: deploy/systemd/check.sh
# Environment: LINKWATCH_EXPORTER=path uses that binary instead of building
# one. Without systemd-analyze the check is skipped, unless CI=true.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"

SERVICES=(linkwatch_exporter.service linkwatch_exporter-failover.service linkwatch_exporter-socket.service)
SOCKETS=(linkwatch_exporter.socket)
# Highest accepted exposure level, times ten (systemd-analyze --threshold).
THRESHOLD=20

# Settings every service must have, one "Key=value" a line, matched whole.
COMMON=(
	"DynamicUser=yes"
	"NoNewPrivileges=yes"
	"ProtectSystem=strict"
	"ProtectHome=yes"
	"PrivateTmp=yes"
	"PrivateDevices=yes"
	"ProtectKernelTunables=yes"
	"ProtectKernelModules=yes"
	"ProtectKernelLogs=yes"
	"ProtectControlGroups=yes"
	"ProtectClock=yes"
	"ProtectHostname=yes"
	"RestrictAddressFamilies=AF_NETLINK AF_UNIX AF_INET AF_INET6"
	"RestrictNamespaces=yes"
	"LockPersonality=yes"
	"MemoryDenyWriteExecute=yes"
	"RestrictRealtime=yes"
	"RestrictSUIDSGID=yes"
	"SystemCallArchitectures=native"
	"SystemCallFilter=@system-service"
	"EnvironmentFile=-/etc/default/linkwatch_exporter"
	"Restart=on-failure"
)
UNPRIVILEGED=("CapabilityBoundingSet=" "AmbientCapabilities=")
FAILOVER=(
	"CapabilityBoundingSet=CAP_NET_ADMIN"
	"AmbientCapabilities=CAP_NET_ADMIN"
	"ExecStart=/usr/bin/linkwatch_exporter --config.file=/etc/linkwatch_exporter/linkwatch.yml \$ARGS"
	"ExecReload=/bin/kill -HUP \$MAINPID"
	"ConfigurationDirectory=linkwatch_exporter"
)

failures=0
fail() {
	echo "FAIL: $*" >&2
	failures=$((failures + 1))
}

if ! command -v systemd-analyze >/dev/null; then
	if [ "${CI:-}" = "true" ]; then
		echo "FAIL: systemd-analyze not found (Debian package systemd)" >&2
		exit 1
	fi
	echo "SKIP: systemd-analyze not found (Debian package systemd)"
	exit 0
fi

root="$(mktemp -d)"
trap 'rm -rf "${root}"' EXIT
mkdir -p "${root}/etc/systemd/system" "${root}/usr/bin" "${root}/usr/lib/systemd"
ln -s usr/bin "${root}/bin"
# The host's units provide the targets our units are ordered against.
cp -r /usr/lib/systemd/system "${root}/usr/lib/systemd/"
cp "$(type -P kill)" "${root}/usr/bin/kill"
bin="${root}/usr/bin/linkwatch_exporter"
if [ -n "${LINKWATCH_EXPORTER:-}" ]; then
	cp "${LINKWATCH_EXPORTER}" "${bin}"
else
	(cd "${repo}" && go build -buildvcs=false -o "${bin}" .)
fi
for u in "${SERVICES[@]}" "${SOCKETS[@]}"; do
	cp "${here}/${u}" "${root}/etc/systemd/system/"
done

echo ">> systemd-analyze verify"
for u in "${SERVICES[@]}" "${SOCKETS[@]}"; do
	if ! out="$(systemd-analyze verify --root="${root}" --man=no "${root}/etc/systemd/system/${u}" 2>&1)"; then
		fail "${u}: systemd-analyze verify failed:"$'\n'"${out}"
	elif [ -n "${out}" ]; then
		fail "${u}: systemd-analyze verify warned:"$'\n'"${out}"
	else
		echo "ok   ${u}"
	fi
done

echo ">> required settings"
before=${failures}
require() {
	local unit="$1"
	shift
	local line
	for line in "$@"; do
		grep -qxF -- "${line}" "${here}/${unit}" || fail "${unit}: missing line '${line}'"
	done
}
for u in "${SERVICES[@]}"; do
	require "${u}" "${COMMON[@]}"
	if grep -q '^PrivateNetwork=' "${here}/${u}"; then
		fail "${u}: PrivateNetwork= hides the host's links"
	fi
	case "${u}" in
	*-failover.service) require "${u}" "${FAILOVER[@]}" ;;
	*) require "${u}" "${UNPRIVILEGED[@]}"
		if grep -q 'CAP_NET_ADMIN' "${here}/${u}"; then
			fail "${u}: a monitoring-only unit must not grant CAP_NET_ADMIN"
		fi ;;
	esac
done
require linkwatch_exporter.service 'ExecStart=/usr/bin/linkwatch_exporter $ARGS'
require linkwatch_exporter-socket.service 'ExecStart=/usr/bin/linkwatch_exporter --web.systemd-socket $ARGS' \
	'Requires=linkwatch_exporter.socket'
require linkwatch_exporter.socket 'ListenStream=9957' 'Service=linkwatch_exporter-socket.service'
grep -qE '^ARGS=' "${here}/linkwatch_exporter.default" || fail "linkwatch_exporter.default: no ARGS="
if [ "${failures}" = "${before}" ]; then echo "ok"; fi

echo ">> ExecStart flags"
for u in "${SERVICES[@]}"; do
	# The words after the binary, without $ARGS; --version makes the binary
	# exit after parsing them, so an unknown flag fails here.
	read -r -a words <<<"$(sed -n 's/^ExecStart=[^ ]*//p' "${here}/${u}" | sed 's/\$ARGS//')"
	if out="$("${bin}" "${words[@]}" --version 2>&1)"; then
		echo "ok   ${u}: ${words[*]:-(no flags)}"
	else
		fail "${u}: flags rejected:"$'\n'"${out}"
	fi
done

echo ">> systemd-analyze security (exposure, lower is better; threshold $((THRESHOLD / 10)).$((THRESHOLD % 10)))"
for u in "${SERVICES[@]}"; do
	if out="$(systemd-analyze security --offline=true --threshold="${THRESHOLD}" --root="${root}" \
		"${root}/etc/systemd/system/${u}" 2>&1)"; then
		echo "ok   $(grep 'Overall exposure level' <<<"${out}" | sed 's/^→ //')"
	else
		fail "${u}: exposure over threshold:"$'\n'"$(grep -E '✗|Overall' <<<"${out}")"
	fi
done

if [ "${failures}" != 0 ]; then
	echo "systemd unit check failed: ${failures} problem(s)" >&2
	exit 1
fi
echo "systemd units ok"
