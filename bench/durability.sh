#!/usr/bin/env bash
# bench/durability.sh: the runs behind BENCHMARKS.md "Durability and memory"
# that need a real petrel serve process (the in-process figures come from
# the Go benchmarks in broker/measure_test.go). It prints a report to
# stdout; it does not edit BENCHMARKS.md.
#
#   bench/durability.sh                    start-up with 1M queued messages, then durable QoS 1 and 2 throughput
#   ONLY=durable ROUNDS=5 bench/durability.sh
#   ONLY=durable QOS=2 MODES="always mosquitto" bench/durability.sh
#   ONLY=startup bench/durability.sh
#
# startup: writes 20 persistent sessions × 50,000 QoS 1 messages of 100 B
#   into a data directory (go test -bench Restart1M with PETREL_MEASURE_DIR,
#   which also prints the in-process figures), then ROUNDS times starts
#   petrel serve on it and measures the wall time from exec to the
#   "petrel listening" log line, VmRSS 1 s and 5 s later and VmHWM (peak
#   RSS, reached while the store is restored).
# durable: petrel bench durable (CLIENTS pairs, QoS 1 then QoS 2,
#   persistent subscribers online) against petrel serve with a fresh disk
#   store in each sync mode (always, interval, none), petrel serve
#   --ephemeral (memory, no store) and Mosquitto with persistence on,
#   interleaved A B C D E per round and QoS. A delivered rate below the
#   acked rate, or a lost tail, means delivery does not keep pace (the
#   backlog was still draining when DRAIN ended). CLIENTS, SIZE, WINDOW,
#   DURATION, ROUNDS, QOS and MODES change the load and the set.
#
# Needs jq and, for the Mosquitto runs, mosquitto (Debian packages; it
# installs them when missing and it can). Loopback only; every broker is
# stopped by its PID; the temporary directory (data included) is removed.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3s}
DRAIN=${DRAIN:-2s}
CLIENTS=${CLIENTS:-4}
SIZE=${SIZE:-100}
WINDOW=${WINDOW:-64}
ONLY=${ONLY:-startup durable}
QOS=${QOS:-1 2}
MODES=${MODES:-always interval none memory mosquitto}
PETREL_PORT=${PETREL_PORT:-28471} MOSQUITTO_PORT=${MOSQUITTO_PORT:-28472}
# Not passed on: petrel serve reads PETREL_* variables as configuration
# overrides and refuses unknown ones.
export -n PETREL_PORT MOSQUITTO_PORT

cd "$(dirname "$0")/.."

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
need_pkg() { # command package
	command -v "$1" >/dev/null 2>&1 && return 0
	log "installing $2"
	if ! apt-get install -y "$2" >/dev/null 2>&1; then
		apt-get update >/dev/null 2>&1 || true
		apt-get install -y "$2" >/dev/null 2>&1 || return 1
	fi
}
need_pkg jq jq
if [[ " $ONLY " == *" durable "* && " $MODES " == *" mosquitto "* ]] && ! need_pkg mosquitto mosquitto; then
	log "mosquitto unavailable: Petrel only"
	MODES=${MODES/mosquitto/}
fi

for p in $PETREL_PORT $MOSQUITTO_PORT; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		log "port $p is in use by another process: set PETREL_PORT / MOSQUITTO_PORT"
		exit 1
	fi
done

TMP=$(mktemp -d)
BROKER_PID=
cleanup() {
	if [ -n "$BROKER_PID" ]; then
		kill "$BROKER_PID" 2>/dev/null || true
		wait "$BROKER_PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

log "building petrel"
go build -o "$TMP/petrel" ./cmd/petrel
PETREL=$TMP/petrel

stop_broker() {
	[ -n "$BROKER_PID" ] || return 0
	kill "$BROKER_PID" 2>/dev/null || true
	wait "$BROKER_PID" 2>/dev/null || true
	BROKER_PID=
}

wait_port() { # port
	for _ in $(seq 200); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	log "nothing listening on $1"
	return 1
}

status_kb() { # pid field
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

startup() {
	local data=$TMP/data-1m
	log "writing 1M queued messages to $data (go test -bench Restart1M)"
	PETREL_MEASURE_DIR=$data go test ./broker -run '^$' -bench 'Restart1M$' -benchtime 1x -timeout 10m | grep -E '^Benchmark|measure_test' >"$TMP/gotest.txt"
	echo "## start-up with 1M queued messages"
	echo
	echo "in-process (go test ./broker -run '^\$' -bench 'Restart1M\$' -benchtime 1x):"
	sed 's/^/    /' "$TMP/gotest.txt"
	echo
	echo "petrel serve --listen 127.0.0.1:$PETREL_PORT --data DIR --log-level info ($(du -sh "$data" | cut -f1) on disk):"
	local times=() rss=() rss5=() hwm=()
	for r in $(seq "$ROUNDS"); do
		local logf=$TMP/serve-$r.log t0 t1
		: >"$logf"
		t0=$(date +%s%N)
		"$PETREL" serve --listen "127.0.0.1:$PETREL_PORT" --data "$data" --log-level info 2>"$logf" &
		BROKER_PID=$!
		until grep -q 'petrel listening' "$logf"; do
			if ! kill -0 "$BROKER_PID" 2>/dev/null; then
				log "petrel serve exited:"
				cat "$logf" >&2
				return 1
			fi
			sleep 0.01
		done
		t1=$(date +%s%N)
		sleep 1
		local s r_kb r5_kb h_kb
		s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
		r_kb=$(status_kb "$BROKER_PID" VmRSS)
		sleep 4
		r5_kb=$(status_kb "$BROKER_PID" VmRSS)
		h_kb=$(status_kb "$BROKER_PID" VmHWM)
		echo "    run $r: listening after $s s; VmRSS 1 s later $((r_kb / 1024)) MiB, 5 s later $((r5_kb / 1024)) MiB, VmHWM $((h_kb / 1024)) MiB; $(grep -o 'store loaded.*' "$logf")"
		times+=("$s") rss+=("$((r_kb / 1024))") rss5+=("$((r5_kb / 1024))") hwm+=("$((h_kb / 1024))")
		stop_broker
	done
	echo
	local hwm_m rss_m
	hwm_m=$(printf '%s\n' "${hwm[@]}" | median) rss_m=$(printf '%s\n' "${rss[@]}" | median)
	echo "median: listening after $(printf '%s\n' "${times[@]}" | median) s, VmRSS $rss_m MiB (1 s) $(printf '%s\n' "${rss5[@]}" | median) MiB (5 s), VmHWM $hwm_m MiB (peak / RSS after $(awk -v a="$hwm_m" -v b="$rss_m" 'BEGIN { printf "%.2f", a / b }'))"
	echo
	rm -rf "$data"
}

start_durable() { # mode
	local data=$TMP/data-$1
	rm -rf "$data"
	case $1 in
	mosquitto)
		mkdir -p "$data"
		cat >"$TMP/mosquitto.conf" <<EOF
listener $MOSQUITTO_PORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $data/
max_queued_messages 1000000
max_inflight_messages 1024
log_dest none
EOF
		mosquitto -c "$TMP/mosquitto.conf" 2>>"$TMP/mosquitto.log" &
		BROKER_PID=$!
		wait_port "$MOSQUITTO_PORT"
		PORT=$MOSQUITTO_PORT
		;;
	memory)
		"$PETREL" serve --ephemeral --listen "127.0.0.1:$PETREL_PORT" --log-level error 2>>"$TMP/petrel.log" &
		BROKER_PID=$!
		wait_port "$PETREL_PORT"
		PORT=$PETREL_PORT
		;;
	*)
		cat >"$TMP/petrel-$1.yaml" <<EOF
listeners: [{type: tcp, address: "127.0.0.1:$PETREL_PORT"}]
log: {level: error}
limits: {queue_messages: 1000000, max_inflight: 1024}
store: {data_dir: "$data", sync: $1}
EOF
		"$PETREL" serve --config "$TMP/petrel-$1.yaml" 2>>"$TMP/petrel.log" &
		BROKER_PID=$!
		wait_port "$PETREL_PORT"
		PORT=$PETREL_PORT
		;;
	esac
}

durable() {
	local res=$TMP/durable q
	mkdir -p "$res"
	for r in $(seq "$ROUNDS"); do
		for q in $QOS; do
			for m in $MODES; do
				log "durable QoS $q $m round $r"
				start_durable "$m"
				"$PETREL" bench durable --qos "$q" --clients "$CLIENTS" --size "$SIZE" --window "$WINDOW" --port "$PORT" --pid "$BROKER_PID" \
					--duration "$DURATION" --drain "$DRAIN" --json >"$res/$m.q$q.$r.json" || log "durable QoS $q $m round $r failed"
				if ! kill -0 "$BROKER_PID" 2>/dev/null; then
					log "durable QoS $q $m round $r: the broker (pid $BROKER_PID) had exited: result dropped"
					rm -f "$res/$m.q$q.$r.json"
				fi
				stop_broker
				rm -rf "$TMP/data-$m"
			done
		done
	done
	for q in $QOS; do
		echo "## durable QoS $q: $CLIENTS publishers -> $CLIENTS persistent subscribers (online), $SIZE B, window $WINDOW, $DURATION, medians of $ROUNDS"
		echo
		echo "petrel bench durable --qos $q --clients $CLIENTS --size $SIZE --window $WINDOW --port PORT --pid PID --duration $DURATION --drain $DRAIN --json"
		echo
		echo "| broker | acked msg/s | delivered msg/s | lost (tail: undelivered when the drain ended) | latency p50 us | p99 us | duplicates | broker CPU s per M | per round acked msg/s |"
		echo "|---|---|---|---|---|---|---|---|---|"
		for m in $MODES; do
			local f=("$res/$m.q$q".*.json) name=$m
			case $m in
			mosquitto) name="mosquitto (persistence true)" ;;
			memory) name="petrel --ephemeral (no store)" ;;
			*) name="petrel sync $m" ;;
			esac
			col() { jq -r "$1" "${f[@]}" 2>/dev/null | median; }
			echo "| $name | $(col '(.acked / .duration_s) | floor') | $(col '.delivered_per_s | floor') | $(col '.lost') ($(col '.lost_tail')) | $(col '.latency.p50_us | floor') | $(col '.latency.p99_us | floor') | $(col '.duplicates') | $(col '.broker_cpu_s_per_million * 100 | floor / 100') | $(jq -r '(.acked / .duration_s) | floor' "${f[@]}" 2>/dev/null | tr '\n' ' ')|"
		done
		echo
	done
	local errs
	errs=$(jq -r '.errors[]? ' "$res"/*.json 2>/dev/null | head -5)
	[ -z "$errs" ] || { echo "errors:"; echo "$errs"; }
}

for what in $ONLY; do
	case $what in
	startup) startup ;;
	durable) durable ;;
	*) log "unknown part $what (want startup, durable)"; exit 2 ;;
	esac
done
