#!/usr/bin/env bash
# bench/scrape.sh: side-by-side scrape benchmark of linkwatch_exporter and
# node_exporter's netclass collector (sysfs and netlink modes).
#
# For each N it builds a network namespace lwt-bench-<pid> holding N veth
# pairs (2N+1 interfaces with lo), runs each exporter alone inside it, scrapes
# it from inside the namespace with curl and records per scrape: latency
# (median, p90), exporter CPU time, bytes, series, and the exporter's RSS.
# Exporters run one at a time, in rotation over the rounds; the summary quotes
# medians over rounds. Results go to bench-results/<timestamp>/: results.csv
# (one row per exporter, encoding and round), summary.md, and each
# exporter's log.
#
# Needs root (network namespaces), iproute2, curl and Go. Only 127.0.0.1
# inside the namespace is ever contacted; the namespace and the exporters this
# script started are removed on exit, also on failure.
#
# Usage: bench/scrape.sh [options]
#   -n "1 100 1000 4000"  veth pair counts, ascending (the namespace grows)
#   -s 30                 timed scrapes per loop
#   -w 3                  warm-up scrapes (after one cold scrape)
#   -r 3                  rounds (exporters rotate their order each round)
#   -e "identity gzip"    encodings: identity (no Accept-Encoding) and/or gzip
#   -x "lw ne_sysfs ne_netlink"  exporters
#   -i 3                  idle seconds measured before the scrapes (0: skip)
#   -o DIR                output directory (default bench-results/<timestamp>)
#   --smoke               -n 100 -s 5 -w 1 -r 1 -e "identity gzip" -i 0: a fast check
#                         that everything works; fails on any error
# Environment: BENCH_BIN (binaries, default bench-results/bin),
#   NODE_EXPORTER_VERSION (default v1.12.1), GO (default go).
set -euo pipefail

NS_LIST="1 100 1000 4000"
SCRAPES=30
WARMUP=3
ROUNDS=3
ENCODINGS="identity gzip"
EXPORTERS="lw ne_sysfs ne_netlink"
IDLE=3
OUT=""
SMOKE=0

while [ $# -gt 0 ]; do
	case "$1" in
	-n) NS_LIST="$2"; shift 2 ;;
	-s) SCRAPES="$2"; shift 2 ;;
	-w) WARMUP="$2"; shift 2 ;;
	-r) ROUNDS="$2"; shift 2 ;;
	-e) ENCODINGS="$2"; shift 2 ;;
	-x) EXPORTERS="$2"; shift 2 ;;
	-i) IDLE="$2"; shift 2 ;;
	-o) OUT="$2"; shift 2 ;;
	--smoke) SMOKE=1; NS_LIST=100; SCRAPES=5; WARMUP=1; ROUNDS=1; IDLE=0; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "unknown argument: $1" >&2; exit 2 ;;
	esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
GO=${GO:-go}
BIN=${BENCH_BIN:-$ROOT/bench-results/bin}
NE_VERSION=${NODE_EXPORTER_VERSION:-v1.12.1}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$ROOT/bench-results/$STAMP}
NS=lwt-bench-$$
LW_PORT=19957
NE_PORT=19100
TCK=$(getconf CLK_TCK)

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (network namespaces); run: sudo env \"PATH=\$PATH\" $0"
for t in ip curl "$GO" getconf; do command -v "$t" >/dev/null || die "missing tool: $t"; done

# ---- clean-up: only our namespace and our PIDs ------------------------------
PIDS=()
cleanup() {
	local rc=$?
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	if ip netns list | grep -qx "$NS\( (id: [0-9]*)\)\{0,1\}"; then
		ip netns del "$NS" || true
	fi
	if [ $rc -ne 0 ]; then log "exited with status $rc; partial results in $OUT"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$OUT" "$BIN"

# ---- build ------------------------------------------------------------------
log "building linkwatch_exporter"
(cd "$ROOT" && "$GO" build -o "$BIN/linkwatch_exporter" .) || die "go build failed"
if ! "$GO" version -m "$BIN/node_exporter" 2>/dev/null |
	grep -q "mod[[:space:]]*github.com/prometheus/node_exporter[[:space:]]*$NE_VERSION[[:space:]]"; then
	log "building node_exporter $NE_VERSION into $BIN (cached for later runs)"
	(cd "$BIN" && GOBIN="$BIN" GOFLAGS= "$GO" install "github.com/prometheus/node_exporter@$NE_VERSION") ||
		die "go install node_exporter@$NE_VERSION failed"
fi

exporter_cmd() {
	case "$1" in
	lw) echo "$BIN/linkwatch_exporter --web.listen-address=127.0.0.1:$LW_PORT" ;;
	ne_sysfs) echo "$BIN/node_exporter --collector.disable-defaults --collector.netclass --web.listen-address=127.0.0.1:$NE_PORT" ;;
	ne_netlink) echo "$BIN/node_exporter --collector.disable-defaults --collector.netclass --collector.netclass.netlink --web.listen-address=127.0.0.1:$NE_PORT" ;;
	*) die "unknown exporter $1" ;;
	esac
}
exporter_port() { if [ "$1" = lw ]; then echo $LW_PORT; else echo $NE_PORT; fi; }
# The per-device series that proves every interface is exported.
exporter_updevice() { if [ "$1" = lw ]; then echo 'linkwatch_link_up{'; else echo 'node_network_up{'; fi; }

# ---- machine ----------------------------------------------------------------
{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "nproc: $(nproc)"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
	echo "kernel: $(uname -r)"
	echo "go: $("$GO" version)"
	echo "iproute2: $(ip -V)"
	echo "curl: $(curl -V | head -1)"
	echo "linkwatch_exporter: $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown)"
	echo "node_exporter: $NE_VERSION"
	echo "loadavg at start: $(cat /proc/loadavg)"
	echo "args: -n '$NS_LIST' -s $SCRAPES -w $WARMUP -r $ROUNDS -e '$ENCODINGS' -x '$EXPORTERS' -i $IDLE"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# ---- helpers ------------------------------------------------------------------
# cpu_ticks PID: utime+stime in clock ticks (the comm field may hold spaces).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# cpu_ns PID: CPU time of all live threads in ns, from schedstat.
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }
# host_cpu: busy and total jiffies of the whole host.
host_cpu() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
load1() { cut -d' ' -f1 /proc/loadavg; }

# stats FILE: median, p90 (nearest rank), min and max of a column of numbers.
stats() {
	sort -g "$1" | awk '{v[NR] = $1} END {
		if (NR == 0) { print "NaN NaN NaN NaN"; exit }
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		r = int(0.9 * NR); if (r < 0.9 * NR) r++
		printf "%.3f %.3f %.3f %.3f\n", m, v[r], v[1], v[NR] }'
}

# scrape ENC PORT: one scrape from inside the namespace; prints
# "time_total size_download http_code".
scrape() {
	local hdr=()
	[ "$1" = gzip ] && hdr=(-H 'Accept-Encoding: gzip')
	ip netns exec "$NS" curl -s -o /dev/null "${hdr[@]}" --max-time 120 \
		-w '%{time_total} %{size_download} %{http_code}\n' "http://127.0.0.1:$2/metrics"
}

# scrape_loop ENC PORT COUNT: COUNT scrapes from one process inside the
# namespace, one "time_total size_download http_code" line each.
scrape_loop() {
	local hdr=""
	[ "$1" = gzip ] && hdr="-H Accept-Encoding:gzip"
	# shellcheck disable=SC2016
	ip netns exec "$NS" bash -c 'for _ in $(seq "$3"); do
		curl -s -o /dev/null $4 --max-time 120 -w "%{time_total} %{size_download} %{http_code}\n" "http://127.0.0.1:$2/metrics"
	done' _ "$1" "$2" "$3" "$hdr"
}

grow_namespace() { # grow_namespace FROM TO: add pairs FROM..TO-1 and wait for carrier
	local from=$1 to=$2 batch="$OUT/ns-batch.txt" want t0
	: >"$batch"
	for ((i = from; i < to; i++)); do
		echo "link add vA$i type veth peer name vB$i"
	done >>"$batch"
	for ((i = from; i < to; i++)); do
		echo "link set vA$i up"
		echo "link set vB$i up"
	done >>"$batch"
	t0=$(date +%s.%N)
	ip -n "$NS" -batch "$batch" || die "ip -batch failed"
	want=$((2 * to + 1))
	for _ in $(seq 600); do
		[ "$(ip -n "$NS" -o link show up | grep -c LOWER_UP)" -ge "$want" ] && break
		sleep 0.1
	done
	[ "$(ip -n "$NS" -o link show up | grep -c LOWER_UP)" -ge "$want" ] || die "namespace never had $want interfaces with carrier"
	log "namespace $NS: $to pairs ($want interfaces) up, +$((to - from)) pairs in $(echo "$(date +%s.%N) $t0" | awk '{printf "%.2f", $1 - $2}') s"
}

CSV="$OUT/results.csv"
echo "n_pairs,interfaces,exporter,encoding,round,scrapes,lat_median_ms,lat_p90_ms,lat_min_ms,lat_max_ms,cold_ms,cpu_ms_per_scrape,cpu_ms_per_scrape_ns,idle_cpu_ms_per_s,bytes,series,rss_mib,hwm_mib,host_busy_pct,load1_before,load1_after" >"$CSV"

# measure N ROUND EXPORTER: start the exporter in the namespace, scrape it,
# append one CSV row per encoding, stop it.
measure() {
	local n=$1 round=$2 ex=$3 ifs=$(($1 * 2 + 1)) port pid cmd tag
	port=$(exporter_port "$ex")
	cmd=$(exporter_cmd "$ex")
	tag="$ex-n$n-r$round"
	# shellcheck disable=SC2086
	ip netns exec "$NS" $cmd >"$OUT/$tag.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	# Ready when it serves every interface (our exporter dumps at start).
	# The first complete scrape is the cold one.
	local ok=0 body="$OUT/$tag.prom" cold=""
	for _ in $(seq 1200); do
		kill -0 "$pid" 2>/dev/null || die "$ex exited early, see $OUT/$tag.log"
		if cold=$(ip netns exec "$NS" curl -sf -o "$body" --max-time 120 -w '%{time_total}' "http://127.0.0.1:$port/metrics" 2>/dev/null) &&
			[ "$(grep -cF "$(exporter_updevice "$ex")" "$body")" -eq "$ifs" ]; then
			ok=1
			break
		fi
		sleep 0.1
	done
	[ $ok = 1 ] || die "$ex never exported $ifs interfaces (see $OUT/$tag.log and $body)"
	cold=$(echo "$cold" | awk '{printf "%.2f", $1 * 1000}')
	local series
	series=$(grep -cv '^#' "$body" || true)
	[ "$series" -gt "$ifs" ] || die "$ex: only $series series"
	[ "$round" = 1 ] || rm -f "$body"

	for _ in $(seq "$WARMUP"); do
		[ "$(scrape identity "$port" | cut -d' ' -f3)" = 200 ] || die "$ex: a warm-up scrape failed"
	done

	local idle="" c0 c1
	if [ "$IDLE" -gt 0 ]; then
		c0=$(cpu_ns "$pid")
		sleep "$IDLE"
		c1=$(cpu_ns "$pid")
		idle=$(echo "$c0 $c1 $IDLE" | awk '{printf "%.3f", ($2 - $1) / 1e6 / $3}')
	fi

	for enc in $ENCODINGS; do
		[ "$enc" = gzip ] && scrape gzip "$port" >/dev/null # warm the gzip path
		local lb t0 n0 h0 t1 n1 h1 la raw="$OUT/$tag-$enc.txt"
		lb=$(load1)
		h0=$(host_cpu)
		t0=$(cpu_ticks "$pid")
		n0=$(cpu_ns "$pid")
		scrape_loop "$enc" "$port" "$SCRAPES" >"$raw"
		t1=$(cpu_ticks "$pid")
		n1=$(cpu_ns "$pid")
		h1=$(host_cpu)
		la=$(load1)
		kill -0 "$pid" 2>/dev/null || die "$ex died during the scrapes, see $OUT/$tag.log"
		[ "$(wc -l <"$raw")" -eq "$SCRAPES" ] || die "$ex: $(wc -l <"$raw") of $SCRAPES scrapes answered"
		if awk '$3 != 200 {bad = 1} END {exit !bad}' "$raw"; then die "$ex: a scrape failed: $(awk '$3 != 200' "$raw" | head -1)"; fi
		local lat bytes cpu cpuns busy
		awk '{print $1 * 1000}' "$raw" >"$raw.ms"
		read -r -a lat <<<"$(stats "$raw.ms")"
		awk '{print $2}' "$raw" >"$raw.bytes"
		bytes=$(stats "$raw.bytes" | awk '{printf "%.0f", $1}')
		rm -f "$raw.ms" "$raw.bytes"
		cpu=$(echo "$t0 $t1 $TCK $SCRAPES" | awk '{printf "%.2f", ($2 - $1) * 1000 / $3 / $4}')
		cpuns=$(echo "$n0 $n1 $SCRAPES" | awk '{printf "%.2f", ($2 - $1) / 1e6 / $3}')
		busy=$(echo "$h0 $h1" | awk '{printf "%.0f", ($3 - $1) * 100 / ($4 - $2)}')
		echo "$n,$ifs,$ex,$enc,$round,$SCRAPES,${lat[0]},${lat[1]},${lat[2]},${lat[3]},$cold,$cpu,$cpuns,$idle,$bytes,$series,$(($(status_kib "$pid" VmRSS) / 1024)).$(($(status_kib "$pid" VmRSS) % 1024 * 10 / 1024)),$(($(status_kib "$pid" VmHWM) / 1024)).$(($(status_kib "$pid" VmHWM) % 1024 * 10 / 1024)),$busy,$lb,$la" >>"$CSV"
		log "N=$n $ex $enc round $round: median ${lat[0]} ms, p90 ${lat[1]} ms, CPU $cpu ms/scrape ($cpuns by schedstat), $bytes B, $series series, host busy $busy %, load $lb -> $la"
	done

	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	unset 'PIDS[-1]'
}

# ---- run ---------------------------------------------------------------------
ip netns add "$NS"
ip -n "$NS" link set lo up
read -r -a exporters <<<"$EXPORTERS"
have=0
for n in $NS_LIST; do
	[ "$n" -ge "$have" ] || die "-n must be ascending"
	grow_namespace "$have" "$n"
	have=$n
	sleep 1
	for ((r = 1; r <= ROUNDS; r++)); do
		for ((k = 0; k < ${#exporters[@]}; k++)); do
			measure "$n" "$r" "${exporters[$(((k + r - 1) % ${#exporters[@]}))]}"
		done
	done
done

# ---- summary -----------------------------------------------------------------
# med FILTER COLUMN: median over the rounds of the rows matching n,exporter,encoding.
med() {
	awk -F, -v n="$1" -v ex="$2" -v enc="$3" -v col="$4" 'NR > 1 && $1 == n && $3 == ex && $4 == enc {print $col}' "$CSV" |
		grep -v '^$' | sort -g | awk '{v[NR] = $1} END {if (NR == 0) {print "-"; exit}
			m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			if (m == int(m)) printf "%d\n", m; else printf "%.2f\n", m }'
}
ratio() { echo "$1 $2" | awk '{if ($1 == "-" || $2 == "-" || $2 == 0) print "-"; else if ($1 == 0) print "0"; else printf "%.3f (1/%.1f)", $1 / $2, $2 / $1}'; }
col() { head -1 "$CSV" | tr , '\n' | grep -nx "$1" | cut -d: -f1; }

{
	echo "# Scrape benchmark $STAMP"
	echo
	echo '```'
	cat "$OUT/machine.txt"
	echo "loadavg at end: $(cat /proc/loadavg)"
	echo '```'
	echo
	echo "Medians over $ROUNDS round(s) of $SCRAPES scrapes each (after 1 cold and $WARMUP warm-up scrapes)."
	echo "CPU is the exporter's utime+stime per scrape over the whole loop (/proc/PID/stat, ${TCK} Hz ticks);"
	echo "\"CPU (ns)\" is the same from the threads' schedstat (ns resolution). Host busy is the whole"
	echo "machine during the loop (100 % = both cores). gzip bytes are compressed bytes."
	for enc in $ENCODINGS; do
		echo
		echo "## Encoding: $enc"
		echo
		echo "| N pairs (interfaces) | exporter | median ms | p90 ms | CPU ms/scrape | CPU (ns) ms/scrape | bytes | series | RSS MiB | HWM MiB | cold ms | idle CPU ms/s | host busy % | load1 |"
		echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
		for n in $NS_LIST; do
			for ex in $EXPORTERS; do
				printf '| %s (%s) | %s' "$n" $((2 * n + 1)) "$ex"
				for c in lat_median_ms lat_p90_ms cpu_ms_per_scrape cpu_ms_per_scrape_ns bytes series rss_mib hwm_mib cold_ms idle_cpu_ms_per_s host_busy_pct load1_before; do
					printf ' | %s' "$(med "$n" "$ex" "$enc" "$(col $c)")"
				done
				echo ' |'
			done
		done
		if echo " $EXPORTERS " | grep -q ' lw '; then
			echo
			echo "Ratios ours/peer (lower is better for us; \"1/x\" = x times cheaper):"
			echo
			echo "| N pairs | vs | latency median | latency p90 | CPU per scrape | CPU (ns) per scrape | RSS |"
			echo "|---|---|---|---|---|---|---|"
			for n in $NS_LIST; do
				for peer in $EXPORTERS; do
					[ "$peer" = lw ] && continue
					printf '| %s | %s' "$n" "$peer"
					for c in lat_median_ms lat_p90_ms cpu_ms_per_scrape cpu_ms_per_scrape_ns rss_mib; do
						printf ' | %s' "$(ratio "$(med "$n" lw "$enc" "$(col $c)")" "$(med "$n" "$peer" "$enc" "$(col $c)")")"
					done
					echo ' |'
				done
			done
		fi
		echo
		echo "Scaling (median latency ms / CPU (ns) ms per scrape) against N:"
		echo
		printf '| exporter |'
		for n in $NS_LIST; do printf ' N=%s |' "$n"; done
		echo
		printf '|---|'
		for _ in $NS_LIST; do printf -- '---|'; done
		echo
		for ex in $EXPORTERS; do
			printf '| %s |' "$ex"
			for n in $NS_LIST; do
				printf ' %s / %s |' "$(med "$n" "$ex" "$enc" "$(col lat_median_ms)")" "$(med "$n" "$ex" "$enc" "$(col cpu_ms_per_scrape_ns)")"
			done
			echo
		done
	done
} >"$OUT/summary.md"

if command -v gnuplot >/dev/null && [ "$(echo "$NS_LIST" | wc -w)" -gt 1 ]; then
	for ex in $EXPORTERS; do
		awk -F, -v ex="$ex" 'NR > 1 && $3 == ex && $4 == "identity" {print $2, $7, $13}' "$CSV" >"$OUT/plot-$ex.dat"
	done
	{
		echo "set terminal png size 900,600; set output '$OUT/scaling.png'"
		echo "set logscale xy; set xlabel 'interfaces'; set ylabel 'ms per scrape'; set key left top"
		printf 'plot '
		for ex in $EXPORTERS; do printf "'%s' using 1:2 title '%s latency' with linespoints, '%s' using 1:3 title '%s CPU' with points, " \
			"$OUT/plot-$ex.dat" "$ex" "$OUT/plot-$ex.dat" "$ex"; done | sed 's/, $//'
		echo
	} | gnuplot && log "plot: $OUT/scaling.png"
fi

log "done: $OUT/summary.md"
cat "$OUT/summary.md"
