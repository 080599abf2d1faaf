#!/usr/bin/env bash
# bench/compare.sh: Petrel, Mosquitto and NATS (MQTT) side by side on this
# machine, with the same load generator (petrel bench), interleaved
# A B C, B C A, C A B (rotated each round), each run against a freshly
# started broker on loopback.
# It writes medians and ratios between the compare.sh markers of
# BENCHMARKS.md (the rest of the file is kept).
#
#   bench/compare.sh                 3 rounds, 2 s per throughput run (~13 min)
#   ROUNDS=5 DURATION=3s bench/compare.sh
#   ONLY="fanin-q0-16 lat-1k" BROKERS="petrel mosquitto" OUT=/tmp/some.md bench/compare.sh
#                                    (a partial run: keep it out of BENCHMARKS.md)
#
# Installs mosquitto, nats-server, jq and openssl (Debian packages) when missing.
#
# Stores: the in-memory scenarios run Petrel with --ephemeral and Mosquitto
# with persistence false. The "disk" scenarios (durable-q1, durable-q2) run
# Petrel with a disk store (sync always, its default) and Mosquitto with
# persistence true, each in a fresh directory under the temp dir; NATS
# always uses JetStream's file store in a fresh temp dir (it has no QoS 2:
# durable-q2 skips it). Brokers run with the temp dir as working
# directory, so nothing (no data/) is written in the repository.
#
# Transports: the tls-* scenarios give each broker a TLS listener with a
# self-signed certificate made for the run by openssl (ECDSA P-256 or RSA
# 2048; the load generator trusts exactly that certificate, and makes a
# full handshake per connection), the ws-* scenarios a WebSocket listener
# (path /mqtt). Each on its own port: tcp 1883x, tls 1884x, ws 1885x.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-2s}
DRAIN=${DRAIN:-2s}
BROKERS=${BROKERS:-petrel mosquitto mosquitto-nd nats}
OUT=${OUT:-BENCHMARKS.md}
PETREL_PORT=18831 MOSQUITTO_PORT=18832 NATS_PORT=18833 NATS_CLIENT_PORT=14223 MOSQUITTO_ND_PORT=18834
TLS_PORT_BASE=18841 WS_PORT_BASE=18851 # + 0 petrel, 1 mosquitto, 2 nats, 3 mosquitto-nd

cd "$(dirname "$0")/.."
ROOT=$PWD

# name|petrel bench arguments|metrics (see report_rows)|mode: mem, disk,
# tls-ecdsa, tls-rsa or ws (in memory, over that transport)|brokers not
# run (optional)
SCENARIOS=(
	"fanin-q0-16|fanin --qos 0 --size 16 --clients 8|tput|mem"
	"fanin-q0-256|fanin --qos 0 --size 256 --clients 8|tput|mem"
	"fanin-q1|fanin --qos 1 --window 64 --clients 8|tput|mem"
	"fanin-q2|fanin --qos 2 --window 16 --clients 8|tput|mem"
	"fanout-q0|fanout --qos 0 --clients 50|tput|mem"
	"pairs-q0|pairs --qos 0 --clients 100|tput|mem"
	"fanin-q0-each|fanin --qos 0 --size 16 --clients 8 --write-each|tput|mem"
	"fanin-q1-each|fanin --qos 1 --window 64 --clients 8 --write-each|tput|mem"
	"pairs-q0-each|pairs --qos 0 --clients 100 --write-each|tput|mem"
	"durable-q1|durable --qos 1 --clients 10|tput|disk"
	"durable-q2|durable --qos 2 --clients 10|tput|disk|nats"
	"lat-1k|latency --rate 1000 --duration 10s|lat|mem"
	"lat-50k|latency --rate 50000|lat|mem"
	"fanin-q1-40k|fanin --qos 1 --window 64 --clients 8 --rate 40000|plat|mem"
	"retained-100k|retained --count 100000|ret|mem"
	"conns-10k|conns --clients 10000|conn|mem"
	"conns-19k|conns --clients 19000|conn|mem"
	"tls-conns-ecdsa|conns --clients 2000|conn|tls-ecdsa"
	"tls-conns-rsa|conns --clients 2000|conn|tls-rsa"
	"tls-fanin-q0|fanin --qos 0 --size 16 --clients 8|tput|tls-ecdsa"
	"ws-fanin-q0|fanin --qos 0 --size 16 --clients 8|tput|ws|mosquitto mosquitto-nd"
)

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
need_pkg openssl openssl
for b in $BROKERS; do
	case $b in
	mosquitto*) need_pkg mosquitto mosquitto || { log "mosquitto unavailable"; exit 1; } ;;
	nats)
		if ! need_pkg nats-server nats-server; then
			log "nats-server is not available from Debian here: comparing without NATS"
			BROKERS=${BROKERS/nats/}
		fi
		;;
	esac
done
# Debian starts the packaged services when systemd runs; they use the
# default ports, not ours, so they do not interfere.

TMP=$(mktemp -d)
RES=$TMP/results
mkdir -p "$RES"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
	rm -rf "$TMP"
}
trap cleanup EXIT

log "building petrel"
# The version of the tree built, taken now: the tree may change while the
# run goes on.
PETREL_VERSION=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
go build -o "$TMP/petrel" ./cmd/petrel
PETREL="$TMP/petrel"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# user root: started as root, Mosquitto would otherwise switch to the
# mosquitto user, which cannot read the run's key files or write its store
# in the temp dir (ignored when not started as root).
cat >"$TMP/mosquitto.conf" <<EOF
user root
listener $MOSQUITTO_PORT 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 1000000
max_inflight_messages 1024
log_dest none
EOF
# The same with Nagle's algorithm off (set_tcp_nodelay), as a second variant.
sed "s/^listener .*/listener $MOSQUITTO_ND_PORT 127.0.0.1/" "$TMP/mosquitto.conf" >"$TMP/mosquitto-nd.conf"
echo "set_tcp_nodelay true" >>"$TMP/mosquitto-nd.conf"
# Disk variants (durable-q1): persistence on, in a fresh directory per run.
# Mosquitto writes its in-memory state as a snapshot (on shutdown and every
# autosave_interval, default 1800 s); it does not fsync before PUBACK.
for m in mosquitto mosquitto-nd; do
	sed "s|^persistence false|persistence true\npersistence_location $TMP/store/$m/|" "$TMP/$m.conf" >"$TMP/$m-disk.conf"
done

cat >"$TMP/nats.conf" <<EOF
listen: 127.0.0.1:$NATS_CLIENT_PORT
server_name: petrel_compare
jetstream { store_dir: "$TMP/nats-js" }
mqtt { listen: 127.0.0.1:$NATS_PORT, max_ack_pending: 1024 }
EOF

# Certificates for the tls-* modes, valid for 127.0.0.1 and localhost.
for kind in ecdsa rsa; do
	case $kind in
	ecdsa) key=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
	rsa) key=(-newkey rsa:2048) ;;
	esac
	openssl req -x509 "${key[@]}" -nodes -days 2 -subj /CN=localhost \
		-addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
		-keyout "$TMP/$kind.key" -out "$TMP/$kind.pem" 2>/dev/null
done

# Each broker's configuration for the tls-* and ws modes: the in-memory
# one, with the transport's listener in place of the plain one.
for kind in ecdsa rsa; do
	cert=$TMP/$kind.pem key=$TMP/$kind.key
	cat >"$TMP/petrel-tls-$kind.yaml" <<EOF
store: {type: memory}
listeners: [{name: tls, type: tls, address: "127.0.0.1:$((TLS_PORT_BASE + 0))", tls: {cert_file: "$cert", key_file: "$key"}}]
EOF
	for m in mosquitto mosquitto-nd; do
		off=1
		[ $m = mosquitto-nd ] && off=3
		sed "s|^listener .*|listener $((TLS_PORT_BASE + off)) 127.0.0.1\ncertfile $cert\nkeyfile $key|" "$TMP/$m.conf" >"$TMP/$m-tls-$kind.conf"
	done
	sed "s|^mqtt {.*|mqtt { listen: 127.0.0.1:$((TLS_PORT_BASE + 2)), max_ack_pending: 1024, tls { cert_file: \"$cert\", key_file: \"$key\" } }|" \
		"$TMP/nats.conf" >"$TMP/nats-tls-$kind.conf"
done
cat >"$TMP/petrel-ws.yaml" <<EOF
store: {type: memory}
listeners: [{name: ws, type: ws, address: "127.0.0.1:$((WS_PORT_BASE + 0))"}]
EOF
# Mosquitto is not run in the ws rows: Debian's 2.0.11 (libwebsockets)
# cannot start with a WebSocket listener alone, and with a plain listener
# beside it binds the WebSocket port on every interface whatever address
# is given (eclipse-mosquitto/mosquitto #2578, #3045); benchmark servers
# listen on loopback only.
# NATS serves MQTT over WebSocket on its websocket port, path /mqtt.
{ cat "$TMP/nats.conf"; echo "websocket { listen: 127.0.0.1:$((WS_PORT_BASE + 2)), no_tls: true }"; } >"$TMP/nats-ws.conf"

port_of() { # broker mode
	local off
	case $1 in petrel) off=0 ;; mosquitto) off=1 ;; nats) off=2 ;; mosquitto-nd) off=3 ;; esac
	case $2 in
	tls-*) echo $((TLS_PORT_BASE + off)) ;;
	ws) echo $((WS_PORT_BASE + off)) ;;
	*) case $1 in petrel) echo $PETREL_PORT ;; mosquitto) echo $MOSQUITTO_PORT ;; mosquitto-nd) echo $MOSQUITTO_ND_PORT ;; nats) echo $NATS_PORT ;; esac ;;
	esac
}

# mode_flags MODE [DIR]: the load generator's transport flags for a mode
# (the CA file under DIR, default the run's temp dir).
mode_flags() {
	local dir=${2:-$TMP}
	case $1 in
	tls-*) echo "--transport tls --cafile $dir/${1#tls-}.pem" ;;
	ws) echo "--transport ws" ;;
	esac
}

BROKER_PID=
start_broker() { # name mode (see SCENARIOS)
	# A fresh store directory per run (disk scenarios), removed by stop_broker.
	rm -rf "$TMP/store"
	mkdir -p "$TMP/store/$1"
	# Brokers run in $TMP (a subshell that execs, so $! is the broker's PID):
	# a default relative path such as petrel's data/ can never land in the repo.
	case $1.$2 in
	petrel.mem)
		(cd "$TMP" && PETREL_LIMITS_QUEUE_MESSAGES=1000000 PETREL_LIMITS_MAX_INFLIGHT=1024 \
			exec "$PETREL" serve --ephemeral --listen "127.0.0.1:$PETREL_PORT" --log-level error 2>>"$TMP/petrel.log") &
		;;
	petrel.disk)
		(cd "$TMP" && PETREL_LIMITS_QUEUE_MESSAGES=1000000 PETREL_LIMITS_MAX_INFLIGHT=1024 PETREL_STORE_SYNC=always \
			exec "$PETREL" serve --data "$TMP/store/petrel" --listen "127.0.0.1:$PETREL_PORT" --log-level error 2>>"$TMP/petrel.log") &
		;;
	petrel.tls-* | petrel.ws)
		(cd "$TMP" && PETREL_LIMITS_QUEUE_MESSAGES=1000000 PETREL_LIMITS_MAX_INFLIGHT=1024 \
			exec "$PETREL" serve --config "$TMP/petrel-$2.yaml" --log-level error 2>>"$TMP/petrel.log") &
		;;
	mosquitto.mem | mosquitto-nd.mem) (cd "$TMP" && exec mosquitto -c "$TMP/$1.conf" 2>>"$TMP/mosquitto.log") & ;;
	mosquitto.disk | mosquitto-nd.disk) (cd "$TMP" && exec mosquitto -c "$TMP/$1-disk.conf" 2>>"$TMP/mosquitto.log") & ;;
	mosquitto.* | mosquitto-nd.*) (cd "$TMP" && exec mosquitto -c "$TMP/$1-$2.conf" 2>>"$TMP/mosquitto.log") & ;;
	nats.mem | nats.disk)
		rm -rf "$TMP/nats-js"
		(cd "$TMP" && exec nats-server -c "$TMP/nats.conf" 2>>"$TMP/nats.log") &
		;;
	nats.*)
		rm -rf "$TMP/nats-js"
		(cd "$TMP" && exec nats-server -c "$TMP/nats-$2.conf" 2>>"$TMP/nats.log") &
		;;
	esac
	BROKER_PID=$!
	PIDS+=("$BROKER_PID")
	local port
	port=$(port_of "$1" "$2")
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	log "$1 did not start listening on $port"
	return 1
}

stop_broker() {
	kill "$BROKER_PID" 2>/dev/null || true
	wait "$BROKER_PID" 2>/dev/null || true
	local keep=() p
	for p in "${PIDS[@]}"; do [ "$p" = "$BROKER_PID" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
	rm -rf "$TMP/store" "$TMP/nats-js"
}

selected() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }

# time_flags SCENARIO-FLAGS...: compare.sh's --duration and --drain, each
# left out when the scenario sets its own (lat-1k runs 10 s), so that no
# command line names a flag twice.
time_flags() {
	local out=()
	[[ " $* " == *" --duration "* ]] || out+=(--duration "$DURATION")
	[[ " $* " == *" --drain "* ]] || out+=(--drain "$DRAIN")
	echo "${out[*]}"
}

# rotated ROUND: the brokers in this round's order. Each round starts one
# broker later (A B C D, B C D A, ...), so that no broker always runs
# right after another's run (the connection runs leave thousands of
# sockets in TIME_WAIT, which slow the next run's port search).
rotated() {
	local bs=($BROKERS) n i out=()
	n=${#bs[@]}
	for ((i = 0; i < n; i++)); do out+=("${bs[$(((i + $1 - 1) % n))]}"); done
	echo "${out[@]}"
}

START=$(date +%s)
for round in $(seq "$ROUNDS"); do
	for s in "${SCENARIOS[@]}"; do
		IFS='|' read -r name args _ store skip <<<"$s"
		selected "$name" || continue
		for b in $(rotated "$round"); do
			[[ " $skip " == *" $b "* ]] && continue
			start_broker "$b" "$store" || { stop_broker; continue; }
			out="$RES/$name.$b.$round.json"
			# shellcheck disable=SC2086 # args are words
			set -- $args
			# shellcheck disable=SC2046 # time_flags and mode_flags give words
			if ! "$PETREL" bench "$1" --port "$(port_of "$b" "$store")" --pid "$BROKER_PID" \
				$(time_flags "${@:2}") "${@:2}" $(mode_flags "$store") --json >"$out" 2>"$out.err"; then
				log "$name $b round $round failed: $(head -c 300 "$out.err")"
				rm -f "$out"
			elif [ "$(jq '.received == 0 and .connections == 0 and (.errors|length) > 0' "$out")" = true ]; then
				log "$name $b round $round failed: $(jq -c '.errors' "$out" | head -c 300)"
				mv "$out" "$out.failed"
			else
				log "$name $b round $round: $(jq -c '{d: .delivered_per_s|floor, lost, p99: .latency.p99_us, c: .conn_per_s|floor, rss: .broker_rss_per_conn|floor, err: (.errors|length)}' "$out")"
			fi
			stop_broker
		done
	done
done
ELAPSED=$(($(date +%s) - START))

# median FILES... JQ: the median of a jq expression over the runs (n/a when none).
median() {
	local expr=$1
	shift
	local f
	for f in "$@"; do if [ -f "$f" ]; then jq -r "$expr // empty" "$f"; fi; done |
		sort -g | awk '{a[NR]=$1} END { if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'
}

# fmt KIND VALUE: rate (312k), us, bytes, secs, int.
fmtv() {
	awk -v k="$1" -v v="$2" 'BEGIN {
		if (v == "n/a") { print "n/a"; exit }
		if (k == "rate") { if (v >= 1e6) printf "%.2fM", v/1e6; else if (v >= 1e3) printf "%.1fk", v/1e3; else printf "%.0f", v }
		else if (k == "us") printf "%.0f", v
		else if (k == "bytes") { if (v >= 1024) printf "%.1f KB", v/1024; else printf "%.0f B", v }
		else if (k == "secs") printf "%.3f", v
		else if (k == "cpu") printf "%.2f", v
		else printf "%.0f", v
	}'
}

# ratio A B: A/B to 2 decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2f", a/b }'; }

row() { # label kind jq-expr name
	local label=$1 kind=$2 expr=$3 name=$4 b vals=() cells=""
	for b in $BROKERS; do
		local m
		m=$(median "$expr" "$RES/$name.$b".*.json)
		vals+=("$m")
		cells+=" $(fmtv "$kind" "$m") |"
	done
	local ratios=""
	if [[ " $BROKERS " == *" petrel "* ]]; then
		local i=0
		for b in $BROKERS; do
			if [ "$b" != petrel ]; then
				if [ "$kind" = int ]; then ratios+=" |"; else ratios+=" $(ratio "${vals[0]}" "${vals[$i]}") |"; fi
			fi
			i=$((i + 1))
		done
	fi
	echo "| $name | $label |$cells$ratios"
}

report_rows() {
	local s name args kind
	for s in "${SCENARIOS[@]}"; do
		IFS='|' read -r name args kind _ <<<"$s"
		selected "$name" || continue
		case $kind in
		tput)
			row "delivered msg/s" rate '.delivered_per_s' "$name"
			row "lost: gaps (dropped)" int '.lost_gaps' "$name"
			row "lost: tail (undelivered at drain end)" int '.lost_tail' "$name"
			row "latency p99 us" us '.latency.p99_us' "$name"
			row "broker CPU s per M delivered" cpu '.broker_cpu_s_per_million' "$name"
			;;
		plat) # a paced throughput run: the latency at a load every broker sustains
			row "delivered msg/s" rate '.delivered_per_s' "$name"
			row "lost: gaps (dropped)" int '.lost_gaps' "$name"
			row "latency p50 us" us '.latency.p50_us' "$name"
			row "latency p99 us" us '.latency.p99_us' "$name"
			row "latency p99.9 us" us '.latency.p999_us' "$name"
			row "broker CPU s per M delivered" cpu '.broker_cpu_s_per_million' "$name"
			;;
		lat)
			row "latency p50 us" us '.latency.p50_us' "$name"
			row "latency p99 us" us '.latency.p99_us' "$name"
			row "latency p99.9 us" us '.latency.p999_us' "$name"
			row "broker CPU s per M delivered" cpu '.broker_cpu_s_per_million' "$name"
			;;
		ret)
			row "time to all s" secs '.time_to_all_s' "$name"
			row "delivered msg/s" rate '.delivered_per_s' "$name"
			;;
		conn)
			row "connections/s" rate '.conn_per_s' "$name"
			row "broker CPU us per connection" cpu 'if .connections > 0 then .broker_cpu_s / .connections * 1e6 else null end' "$name"
			row "broker RSS per connection" bytes '.broker_rss_per_conn' "$name"
			;;
		esac
	done
}

header() {
	local h="| scenario | metric |" sep="|---|---|" b
	for b in $BROKERS; do h+=" $b |"; sep+="---|"; done
	for b in $BROKERS; do [ "$b" = petrel ] || { h+=" petrel/$b |"; sep+="---|"; }; done
	echo "$h"
	echo "$sep"
}

# failures: one line per run that reported errors: the first error and
# how many there were in all.
failures() {
	local f
	for f in "$RES"/*.json; do
		[ -f "$f" ] || continue
		jq -r --arg f "$(basename "$f" .json)" 'select((.errors|length) > 0)
			| ((.errors[-1] | capture("^\\.\\.\\. (?<n>[0-9]+) errors in all$") | .n) // (.errors|length|tostring)) as $n
			| "- \($f): \(.errors[0])" + (if $n == "1" then "" else " (\($n) errors in all)" end)' "$f"
	done | head -40
	for f in "$RES"/*.failed; do
		[ -f "$f" ] && echo "- $(basename "$f" .json.failed): run failed: $(jq -r '.errors[0]' "$f" | head -c 200)"
	done | head -20
	for f in "$RES"/*.err; do
		[ -s "$f" ] && [ ! -f "${f%.err}" ] && [ ! -f "${f%.err}.failed" ] && echo "- $(basename "$f" .json.err): run failed: $(head -c 200 "$f" | tr '\n' ' ')"
	done | sort | head -40
	true
}

versions() {
	echo "- petrel $PETREL_VERSION ($(go version | awk '{print $3}'))"
	for b in $BROKERS; do
		case $b in
		mosquitto) echo "- $(mosquitto -h 2>/dev/null | head -1) (Debian $(dpkg-query -W -f='${Version}' mosquitto 2>/dev/null))" ;;
		nats) echo "- nats-server $(nats-server --version 2>/dev/null | awk '{print $2}') (Debian $(dpkg-query -W -f='${Version}' nats-server 2>/dev/null)), MQTT on JetStream" ;;
		esac
	done
}

commands() {
	local s name args mode flags
	echo '```'
	for s in "${SCENARIOS[@]}"; do
		IFS="|" read -r name args _ mode _ <<<"$s"
		selected "$name" || continue
		# shellcheck disable=SC2086 # args are words
		set -- $args
		flags=$(mode_flags "$mode" TMPDIR)
		echo "petrel bench $1 --port PORT --pid BROKER_PID $(time_flags "${@:2}") ${*:2}${flags:+ $flags} --json"
	done
	echo '```'
}

{
	echo "<!-- compare.sh:begin (generated by bench/compare.sh; edits here are overwritten) -->"
	echo "## Side by side: medians of $ROUNDS interleaved rounds"
	echo
	echo "Generated $(date -u +%Y-%m-%dT%H:%MZ) in ${ELAPSED} s. Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r), open-file limit $(ulimit -n)."
	echo "The machine is shared with other work and noisy: compare ratios within one run, not absolute figures across runs."
	echo
	echo "Versions:"
	echo
	versions
	echo
	echo "Broker settings (equivalent; no persistence in the in-memory scenarios, a store on disk in a fresh temp dir for \`durable-q1\` and \`durable-q2\`):"
	echo
	echo "- petrel: \`PETREL_LIMITS_QUEUE_MESSAGES=1000000 PETREL_LIMITS_MAX_INFLIGHT=1024 petrel serve --ephemeral --listen 127.0.0.1:$PETREL_PORT --log-level error\`;"
	echo "  durable-q1, durable-q2: \`--data TMPDIR/store/petrel\` instead of \`--ephemeral\`, with \`PETREL_STORE_SYNC=always\` (the default: fsync before PUBACK/PUBREC, and before PUBREL for QoS 2 deliveries)"
	echo "- mosquitto: \`$(grep -v '^$' "$TMP/mosquitto.conf" | tr '\n' ';' | sed 's/;$//; s/;/; /g')\` (default Nagle);"
	echo "  durable-q1, durable-q2: \`persistence true; persistence_location TMPDIR/store/mosquitto/\` (snapshots on shutdown and every autosave_interval, default 1800 s; no fsync before PUBACK)"
	echo "- mosquitto-nd: the same plus \`set_tcp_nodelay true\`"
	echo "- tls-* rows: each broker's listener is TLS (Petrel \`type: tls\`, Mosquitto \`certfile\`/\`keyfile\`, NATS \`mqtt { tls { ... } }\`) with a self-signed ECDSA P-256 or RSA 2048 certificate made for the run; every connection makes a full handshake, so \`tls-conns-*\` counts handshakes (with CONNECT and CONNACK) per second"
	echo "- ws-* rows: each broker's listener is WebSocket, path /mqtt (Petrel \`type: ws\`, NATS \`websocket { no_tls: true }\`). Mosquitto is not run: Debian's 2.0.11 cannot start a WebSocket listener alone and binds it on every interface whatever address is given (mosquitto #2578, #3045), and these runs listen on loopback only"
	[[ " $BROKERS " == *" nats "* ]] && echo "- nats: \`$(tr '\n' ' ' <"$TMP/nats.conf" | sed "s|$TMP|TMPDIR|g")\` (QoS 1 goes through JetStream, file store in a fresh temp dir, every scenario; no QoS 2, so not run for durable-q2)"
	echo
	echo "Each run starts the broker afresh, runs one command, and stops the broker by PID. Ratios are petrel/peer"
	echo "(above 1 is better for Petrel in msg/s and connections/s, worse in latency, loss, CPU and memory)."
	echo
	header
	report_rows
	echo
	echo "Commands (PORT and BROKER_PID per broker):"
	echo
	commands
	echo
	echo "Errors and warnings reported by the runs (first few):"
	echo
	f=$(failures)
	if [ -n "$f" ]; then echo "$f"; else echo "- none"; fi
	echo "<!-- compare.sh:end -->"
} >"$TMP/section.md"

if [ -f "$OUT" ] && grep -q '<!-- compare.sh:begin' "$OUT"; then
	awk -v sec="$TMP/section.md" '
		/<!-- compare.sh:begin/ { while ((getline l < sec) > 0) print l; skip = 1; next }
		/<!-- compare.sh:end -->/ { skip = 0; next }
		!skip { print }' "$OUT" >"$TMP/out.md"
	cp "$TMP/out.md" "$OUT"
else
	{ [ -f "$OUT" ] && cat "$OUT" && echo; cat "$TMP/section.md"; } >"$TMP/out.md"
	cp "$TMP/out.md" "$OUT"
fi
log "wrote $OUT (${ELAPSED} s)"
