#!/usr/bin/env bash
# Checks the Prometheus and Alertmanager examples:
#
#  1. promtool check config deploy/prometheus/prometheus.yml (also checks the
#     rule files it names, which are relative to it).
#  2. promtool check rules on alerts.yml and rules.yml, lint errors fatal.
#  3. promtool test rules alerts_test.yml rules_test.yml.
#  4. Every alert in alerts.yml has a unit test, a section in
#     docs/runbook.md and a runbook_url pointing to that section.
#  5. amtool check-config deploy/alertmanager/alertmanager.yml.
#  6. amtool config routes test: where typical alerts are routed.
#
# Usage: deploy/prometheus/check.sh (from any directory).
# promtool is in the Debian package prometheus, amtool in
# prometheus-alertmanager. A missing tool skips its checks, unless CI=true.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"
cd "${repo}"

prom=deploy/prometheus
am=deploy/alertmanager/alertmanager.yml
runbook=docs/runbook.md
runbook_url=https://github.com/linkwatch/linkwatch_exporter/blob/main/docs/runbook.md

failures=0
fail() {
	echo "FAIL: $*" >&2
	failures=$((failures + 1))
}

# have TOOL PACKAGE: whether TOOL is installed; a missing tool is a failure
# in CI and a skip elsewhere.
have() {
	if command -v "$1" >/dev/null; then
		return 0
	fi
	if [ "${CI:-}" = "true" ]; then
		fail "$1 not found (Debian package $2)"
	else
		echo "SKIP: $1 not found (Debian package $2); its checks are skipped"
	fi
	return 1
}

# run DESCRIPTION COMMAND...: runs the command, counting a failure.
run() {
	local what="$1"
	shift
	echo ">> ${what}: $*"
	if ! "$@"; then
		fail "${what}"
	fi
}

if have promtool prometheus; then
	run "Prometheus configuration" promtool check config --lint-fatal "${prom}/prometheus.yml"
	run "rule files" promtool check rules --lint-fatal "${prom}/alerts.yml" "${prom}/rules.yml"
	run "rule unit tests" promtool test rules "${prom}/alerts_test.yml" "${prom}/rules_test.yml"
fi

echo ">> every alert has a unit test and a runbook section"
alerts="$(sed -n 's/^ *- alert: *\([A-Za-z0-9]*\) *$/\1/p' "${prom}/alerts.yml")"
if [ -z "${alerts}" ]; then
	fail "no alerts found in ${prom}/alerts.yml"
fi
for a in ${alerts}; do
	anchor="$(echo "${a}" | tr '[:upper:]' '[:lower:]')"
	grep -q "^ *alertname: *${a} *\$" "${prom}/alerts_test.yml" ||
		fail "${a}: no alert_rule_test in ${prom}/alerts_test.yml"
	grep -q "^## ${a}\$" "${runbook}" ||
		fail "${a}: no section \"## ${a}\" in ${runbook}"
	grep -q "runbook_url: '${runbook_url}#${anchor}'" "${prom}/alerts.yml" ||
		fail "${a}: no runbook_url ${runbook_url}#${anchor} in ${prom}/alerts.yml"
done
n_alerts="$(echo "${alerts}" | wc -w)"
n_urls="$(grep -c 'runbook_url:' "${prom}/alerts.yml" || true)"
if [ "${n_urls}" -ne "${n_alerts}" ]; then
	fail "${n_alerts} alerts but ${n_urls} runbook_url annotations in ${prom}/alerts.yml"
fi

if have amtool prometheus-alertmanager; then
	run "Alertmanager configuration" amtool check-config "${am}"

	# route EXPECTED_RECEIVERS LABEL=VALUE...: the alert is sent to exactly
	# these receivers (comma-separated, in routing order).
	route() {
		local want="$1"
		shift
		echo ">> route $* -> ${want}"
		if ! amtool config routes test --config.file="${am}" --verify.receivers="${want}" "$@" >/dev/null 2>&1; then
			fail "route $*: want ${want}, got $(amtool config routes test --config.file="${am}" "$@" 2>/dev/null)"
		fi
	}
	route linkwatch-failover-router1,page alertname=LinkwatchLinkDown severity=critical instance=router1:9957 device=eth0
	route linkwatch-failover-router2,page alertname=LinkwatchLinkDown severity=critical instance=router2:9957 device=eth0
	route page alertname=LinkwatchLinkDown severity=critical instance=router10:9957 device=eth0
	route page alertname=LinkwatchFailoverErrors severity=critical instance=router1:9957 policy=wan-primary
	route ticket alertname=LinkwatchLinkFlapping severity=warning instance=router1:9957 device=eth0
	route blackhole alertname=SomethingInformational severity=info instance=router1:9957
fi

if [ "${failures}" -ne 0 ]; then
	echo "${failures} check(s) failed" >&2
	exit 1
fi
echo "OK"
