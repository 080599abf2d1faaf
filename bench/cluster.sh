#!/usr/bin/env bash
# bench/cluster.sh: a three-node Petrel cluster on loopback, measured
# beside one node and beside a three-node NATS MQTT cluster, with the same
# load generator (petrel bench), and the write pause after a leader dies.
#
#   bench/cluster.sh                      3 rounds (~10 min)
#   ROUNDS=5 DURATION=3s bench/cluster.sh
#   PARTS=failover OUT=/tmp/some.md bench/cluster.sh   (a partial run: keep it out of BENCHMARKS.md)
#
# PARTS (default "throughput failover"):
#   throughput  per round, in a rotated order: petrel serve --ephemeral
#               alone; one node with the cluster nodes' configuration but
#               no cluster: section (disk store); the Petrel cluster with
#               publisher and subscriber on node 1 (local) and publisher on
#               node 1, subscriber on node 2 (cross); the NATS cluster the
#               same two ways. Scenarios: fanin QoS 0, fanin QoS 1 (8
#               publishers, one wildcard subscriber), unpaced and at 40k
#               msg/s, latency at 1k msg/s.
#   failover    per round: find the leader of KV_PETREL_OWNERS (the bucket
#               every CONNECT claims its session in) in petrel cluster
#               status, send it SIGKILL, and time from the signal to the
#               first accepted CONNECT on each survivor (bench/failover
#               polls every 20 ms, a new client id each); restart the node
#               and wait until it has caught up; then the same with SIGTERM.
#
# Every server listens on 127.0.0.1 (ports below the ephemeral range,
# free when picked), runs in a temp dir, and is stopped by the PID this
# script started it with. Installs nats-server and jq (Debian) when
# missing. Writes medians between the cluster.sh markers of $OUT (the rest
# of the file is kept; appended when the markers are missing).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-2s}
DRAIN=${DRAIN:-2s}
LAT_DURATION=${LAT_DURATION:-10s}
SETTLE=${SETTLE:-500ms}
PARTS=${PARTS:-throughput failover}
OUT=${OUT:-BENCHMARKS.md}
READY_WAIT=${READY_WAIT:-120} # seconds for a cluster (or a restarted node) to be ready

cd "$(dirname "$0")/.."
ROOT=$PWD

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

need_pkg() { # command package
	command -v "$1" >/dev/null 2>&1 && return 0
	log "installing $2"
	if ! apt-get install -y "$2" >/dev/null 2>&1; then
		apt-get update >/dev/null 2>&1 || true
		apt-get install -y "$2" >/dev/null 2>&1 || return 1
	fi
}
need_pkg jq jq || { log "jq unavailable"; exit 1; }
NATS=1
need_pkg nats-server nats-server || { log "nats-server unavailable: no NATS rows"; NATS=0; }

TMP=$(mktemp -d)
RES=$TMP/results
mkdir -p "$RES"
declare -A PID_OF # server name -> PID of the process this script started

# stop NAME...: SIGTERM to each server's PID, SIGKILL to those still
# running 10 s later.
stop() {
	local n p
	for n in "$@"; do
		p=${PID_OF[$n]:-}
		if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; fi
	done
	for n in "$@"; do
		p=${PID_OF[$n]:-}
		[ -n "$p" ] || continue
		for _ in $(seq 100); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
		unset "PID_OF[$n]"
	done
}
cleanup() {
	stop "${!PID_OF[@]}"
	rm -rf "$TMP"
}
trap cleanup EXIT

log "building petrel and bench/failover"
go build -o "$TMP/petrel" ./cmd/petrel
go build -o "$TMP/failover" ./bench/failover
PETREL=$TMP/petrel
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Ports: below the kernel's ephemeral range, so that no client connection
# of the benchmarks holds one; free (no listener) when picked.
USED=" "
free_port() {
	local lo p
	lo=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range)
	[ "$lo" -gt 12000 ] || lo=32768
	while :; do
		p=$((10000 + RANDOM % (lo - 11000)))
		[[ $USED == *" $p "* ]] && continue
		[ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ] || continue
		USED+="$p "
		echo "$p"
		return
	done
}

SINGLE_PORT=$(free_port)
EPH_PORT=$(free_port)
SINGLE_ADMIN=$(free_port)
declare -a MQTT ADMIN ROUTE NMQTT NCLIENT NROUTE
for i in 1 2 3; do
	MQTT[i]=$(free_port) ADMIN[i]=$(free_port) ROUTE[i]=$(free_port)
	NMQTT[i]=$(free_port) NCLIENT[i]=$(free_port) NROUTE[i]=$(free_port)
done
PEERS="nats://127.0.0.1:${ROUTE[1]}, nats://127.0.0.1:${ROUTE[2]}, nats://127.0.0.1:${ROUTE[3]}"

# The cluster nodes' configuration; the single node's is the same without
# the cluster: section. The limits are compare.sh's.
node_conf() { # name mqtt admin [route]
	cat <<EOF
store: {data_dir: "$TMP/$1/data"}
listeners: [{name: plain, type: tcp, address: "127.0.0.1:$2"}]
admin: {address: "127.0.0.1:$3"}
limits: {queue_messages: 1000000, max_inflight: 1024}
EOF
	[ -z "${4:-}" ] || cat <<EOF
cluster:
  node: $1
  listen: 127.0.0.1:$4
  peers: [$PEERS]
EOF
}
node_conf single "$SINGLE_PORT" "$SINGLE_ADMIN" >"$TMP/single.yaml"
for i in 1 2 3; do node_conf "n$i" "${MQTT[i]}" "${ADMIN[i]}" "${ROUTE[i]}" >"$TMP/n$i.yaml"; done

# NATS: three servers, routes on loopback, JetStream clustered (its MQTT
# streams replicated on the three), MQTT as compare.sh configures it.
for i in 1 2 3; do
	cat >"$TMP/nats$i.conf" <<EOF
server_name: nats$i
listen: 127.0.0.1:${NCLIENT[i]}
jetstream { store_dir: "$TMP/nats$i/js" }
cluster {
  name: petrel_bench
  listen: 127.0.0.1:${NROUTE[i]}
  routes: [nats://127.0.0.1:${NROUTE[1]}, nats://127.0.0.1:${NROUTE[2]}, nats://127.0.0.1:${NROUTE[3]}]
}
mqtt { listen: 127.0.0.1:${NMQTT[i]}, max_ack_pending: 1024 }
EOF
done

# start NAME COMMAND...: run a server in the temp dir (a subshell that
# execs, so $! is the server's PID), its stderr to NAME.log.
start() {
	local name=$1
	shift
	(cd "$TMP" && exec "$@" 2>>"$TMP/$name.log" >&2) &
	PID_OF[$name]=$!
}

listening() { # port [seconds]
	local i
	for ((i = 0; i < ${2:-10} * 20; i++)); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	return 1
}

start_petrel() { # n (1..3): one cluster node
	mkdir -p "$TMP/n$1"
	start "n$1" "$PETREL" serve --config "$TMP/n$1.yaml" --log-level info
}

# status I: node I's petrel cluster status (JSON), empty when it fails.
status() { "$PETREL" cluster status --url "http://127.0.0.1:${ADMIN[$1]}" --json --timeout 5s 2>/dev/null || true; }

# caught_up I: node I is ready, routes to all three nodes are up, and every
# asset has a leader and two current, online followers.
caught_up() {
	local st
	st=$(status "$1")
	[ -n "$st" ] || return 1
	jq -e '.ready and ([.nodes[] | select(.connected)] | length) == 3
		and (.assets | length) > 0
		and ([.assets[] | select(.leader != "" and ([.replicas[] | select(.current and (.offline | not))] | length) == 2)] | length) == (.assets | length)' >/dev/null 2>&1 <<<"$st"
}

wait_cluster() { # nodes to check...
	local i t0=$SECONDS
	for i in "$@"; do
		while ! caught_up "$i"; do
			if ((SECONDS - t0 > READY_WAIT)); then
				log "n$i not ready after $READY_WAIT s: $(status "$i" | jq -c '{ready, meta_leader, assets: [.assets[] | {name, leader}]}' 2>/dev/null)"
				return 1
			fi
			sleep 0.2
		done
	done
}

start_cluster() {
	rm -rf "$TMP/n1" "$TMP/n2" "$TMP/n3"
	local i t0=$SECONDS
	for i in 1 2 3; do start_petrel "$i"; done
	wait_cluster 1 2 3 || return 1
	log "petrel cluster ready in $((SECONDS - t0)) s"
}
stop_cluster() { stop n1 n2 n3; }

# mqtt_ok PORT: a CONNECT and a QoS 1 PUBLISH there succeed.
mqtt_ok() { timeout 10 "$PETREL" pub -h 127.0.0.1 -p "$1" -q 1 -t petrel-bench/ready -m x >/dev/null 2>&1; }

start_nats() {
	rm -rf "$TMP/nats1" "$TMP/nats2" "$TMP/nats3"
	local i t0=$SECONDS
	for i in 1 2 3; do start "nats$i" nats-server -c "$TMP/nats$i.conf"; done
	for i in 1 2 3; do
		until mqtt_ok "${NMQTT[i]}"; do
			if ((SECONDS - t0 > READY_WAIT)); then
				log "nats$i: no MQTT after $READY_WAIT s"
				return 1
			fi
			sleep 0.5
		done
	done
	log "nats cluster ready in $((SECONDS - t0)) s"
}
stop_nats() { stop nats1 nats2 nats3; }

# name|petrel bench arguments
SCENARIOS=(
	"fanin-q0|fanin --qos 0 --size 16 --clients 8 --duration $DURATION --drain $DRAIN"
	"fanin-q1|fanin --qos 1 --window 64 --clients 8 --duration $DURATION --drain $DRAIN"
	"fanin-q1-40k|fanin --qos 1 --window 64 --clients 8 --rate 40000 --duration $DURATION --drain $DRAIN"
	"lat-1k|latency --rate 1000 --duration $LAT_DURATION --drain $DRAIN"
)
# Columns of the table, in order.
SETUPS="ephemeral single petrel-local petrel-cross nats-local nats-cross"
[ "$NATS" = 1 ] || SETUPS="ephemeral single petrel-local petrel-cross"

# dropped ADMINPORT: the messages_dropped counter of a Petrel node.
dropped() { "$PETREL" ctl --url "http://127.0.0.1:$1" --json --timeout 5s stats 2>/dev/null | jq -r '.messages_dropped' 2>/dev/null || true; }

# bench SETUP ROUND PUBPORT SUBPORT PID [SUBADMIN]: every scenario against
# one setup; with SUBADMIN (a Petrel node's admin port), what the
# subscribers' node's broker dropped during each run is added to its
# report (sub_node_dropped).
bench() {
	local setup=$1 round=$2 pub=$3 sub=$4 pid=$5 admin=${6:-} s name args out d0 d1
	for s in "${SCENARIOS[@]}"; do
		IFS='|' read -r name args <<<"$s"
		out="$RES/$name.$setup.$round.json"
		d0=
		[ -z "$admin" ] || d0=$(dropped "$admin")
		# shellcheck disable=SC2086 # args are words
		if ! "$PETREL" bench $args --port "$pub" --sub-port "$sub" --settle "$SETTLE" --pid "$pid" --json >"$out" 2>"$out.err"; then
			log "$name $setup round $round failed: $(head -c 300 "$out.err")"
			rm -f "$out"
			continue
		fi
		if [ -n "$d0" ]; then
			d1=$(dropped "$admin")
			[ -z "$d1" ] || { jq --argjson d "$((d1 - d0))" '. + {sub_node_dropped: $d}' "$out" >"$out.tmp" && mv "$out.tmp" "$out"; }
		fi
		log "$name $setup round $round: $(jq -c '{d: .delivered_per_s|floor, lost, dropped: .sub_node_dropped, p50: .latency.p50_us, p99: .latency.p99_us, err: (.errors|length)}' "$out")"
	done
}

# rotated ROUND WORDS...: the words, starting one later each round.
rotated() {
	local r=$1 n i words=()
	shift
	n=$#
	local a=("$@")
	for ((i = 0; i < n; i++)); do words+=("${a[$(((i + r - 1) % n))]}"); done
	echo "${words[@]}"
}

LOADS=()
load_avg() { LOADS+=("$(cut -d' ' -f1 /proc/loadavg)"); }

START=$(date +%s)
if [[ " $PARTS " == *" throughput "* ]]; then
	groups=(ephemeral single petrel)
	[ "$NATS" = 1 ] && groups+=(nats)
	for round in $(seq "$ROUNDS"); do
		for g in $(rotated "$round" "${groups[@]}"); do
			load_avg
			case $g in
			ephemeral)
				start ephemeral env PETREL_LIMITS_QUEUE_MESSAGES=1000000 PETREL_LIMITS_MAX_INFLIGHT=1024 "$PETREL" serve --ephemeral --listen "127.0.0.1:$EPH_PORT" --log-level error
				listening "$EPH_PORT" && bench ephemeral "$round" "$EPH_PORT" "$EPH_PORT" "${PID_OF[ephemeral]}"
				stop ephemeral
				;;
			single)
				rm -rf "$TMP/single"
				mkdir -p "$TMP/single"
				start single "$PETREL" serve --config "$TMP/single.yaml" --log-level error
				listening "$SINGLE_PORT" && bench single "$round" "$SINGLE_PORT" "$SINGLE_PORT" "${PID_OF[single]}" "$SINGLE_ADMIN"
				stop single
				;;
			petrel)
				if start_cluster; then
					bench petrel-local "$round" "${MQTT[1]}" "${MQTT[1]}" "${PID_OF[n1]}" "${ADMIN[1]}"
					bench petrel-cross "$round" "${MQTT[1]}" "${MQTT[2]}" "${PID_OF[n1]}" "${ADMIN[2]}"
				fi
				stop_cluster
				;;
			nats)
				if start_nats; then
					bench nats-local "$round" "${NMQTT[1]}" "${NMQTT[1]}" "${PID_OF[nats1]}"
					bench nats-cross "$round" "${NMQTT[1]}" "${NMQTT[2]}" "${PID_OF[nats1]}"
				fi
				stop_nats
				;;
			esac
		done
	done
fi

# leader_of ASSET: the node leading it, as a live node sees it.
leader_of() {
	local i l
	for i in 1 2 3; do
		[ -n "${PID_OF[n$i]:-}" ] || continue
		l=$(status "$i" | jq -r --arg a "$1" '.assets[] | select(.name == $a) | .leader' 2>/dev/null || true)
		if [ -n "$l" ]; then
			echo "$l"
			return 0
		fi
	done
	return 0
}

if [[ " $PARTS " == *" failover "* ]]; then
	if start_cluster; then
		for round in $(seq "$ROUNDS"); do
			for sig in KILL TERM; do
				load_avg
				leader=$(leader_of KV_PETREL_OWNERS)
				meta=$(status 1 | jq -r '.meta_leader' 2>/dev/null || true)
				case $leader in n1 | n2 | n3) ;; *)
					log "failover $sig round $round: no leader of KV_PETREL_OWNERS"
					continue
					;;
				esac
				k=${leader#n}
				addrs=""
				for i in 1 2 3; do [ "$i" = "$k" ] || addrs+="${addrs:+,}127.0.0.1:${MQTT[i]}"; done
				out="$RES/failover.$sig.$round.json"
				if "$TMP/failover" -pid "${PID_OF[$leader]}" -signal "$sig" -addrs "$addrs" -timeout 60s >"$out" 2>"$out.err"; then
					jq --arg l "$leader" --arg m "$meta" '. + {leader: $l, meta_leader: $m}' "$out" >"$out.tmp" && mv "$out.tmp" "$out"
					log "failover $sig round $round: leader $leader (meta $meta): $(jq -c '[.survivors[] | {addr, pause_s, attempts, refused, errors}]' "$out")"
				else
					log "failover $sig round $round failed: $(head -c 300 "$out.err")"
					rm -f "$out"
				fi
				wait "${PID_OF[$leader]}" 2>/dev/null || true
				unset "PID_OF[$leader]"
				t0=$SECONDS
				start_petrel "$k"
				if wait_cluster 1 2 3 && mqtt_ok "${MQTT[k]}"; then
					echo "$((SECONDS - t0))" >"$RES/rejoin.$sig.$round"
					log "$leader restarted and caught up in $((SECONDS - t0)) s"
				else
					log "$leader did not catch up: stopping the failover part"
					break 2
				fi
			done
		done
	fi
	stop_cluster
fi
ELAPSED=$(($(date +%s) - START))

# median FILES... JQ: the median of a jq expression over the runs (n/a when none).
median() {
	local expr=$1
	shift
	local f
	for f in "$@"; do if [ -f "$f" ]; then jq -r "$expr // empty" "$f"; fi; done |
		sort -g | awk '{a[NR]=$1} END { if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'
}
# values FILES... JQ: every run's value, comma-separated, in round order.
values() {
	local expr=$1
	shift
	local f
	for f in "$@"; do if [ -f "$f" ]; then jq -r "$expr // empty" "$f"; fi; done | paste -sd, | sed 's/,/, /g'
}
fmtv() { # rate|us|int|s VALUE
	awk -v k="$1" -v v="$2" 'BEGIN {
		if (v == "n/a" || v == "") { print "n/a"; exit }
		if (k == "rate") { if (v >= 1e6) printf "%.2fM", v/1e6; else if (v >= 1e3) printf "%.1fk", v/1e3; else printf "%.0f", v }
		else if (k == "s") printf "%.2f", v
		else printf "%.0f", v
	}'
}

row() { # name label kind jq
	local name=$1 label=$2 kind=$3 expr=$4 s cells=""
	for s in $SETUPS; do cells+=" $(fmtv "$kind" "$(median "$expr" "$RES/$name.$s".*.json)") |"; done
	echo "| $name | $label |$cells"
}

{
	echo "<!-- cluster.sh:begin (generated by bench/cluster.sh; edits here are overwritten) -->"
	echo "Generated $(date -u +%Y-%m-%dT%H:%MZ) in ${ELAPSED} s, $ROUNDS rounds (medians). Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r); load average (1 min) at the start of each group of runs: $(printf '%s\n' "${LOADS[@]}" | sort -g | awk '{a[NR]=$1} END {if (NR) printf "%s to %s, median %s", a[1], a[NR], a[int((NR+1)/2)]; else printf "n/a"}')."
	echo "petrel $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown) ($(go version | awk '{print $3}'))$([ "$NATS" = 1 ] && echo ", nats-server $(nats-server --version 2>/dev/null | awk '{print $2}') (Debian $(dpkg-query -W -f='${Version}' nats-server 2>/dev/null))")."
	if [[ " $PARTS " == *" throughput "* ]]; then
		echo
		h="| scenario | metric |" sep="|---|---|"
		for s in $SETUPS; do h+=" $s |"; sep+="---|"; done
		echo "$h"
		echo "$sep"
		for name in fanin-q0 fanin-q1 fanin-q1-40k; do
			row $name "delivered msg/s" rate '.delivered_per_s'
			row $name "lost" int '.lost'
			row $name "of which dropped by the subscribers' broker" int '.sub_node_dropped'
			row $name "latency p50 us" us '.latency.p50_us'
			row $name "latency p99 us" us '.latency.p99_us'
		done
		row lat-1k "latency p50 us" us '.latency.p50_us'
		row lat-1k "latency p99 us" us '.latency.p99_us'
		row lat-1k "latency p99.9 us" us '.latency.p999_us'
		row lat-1k "lost" int '.lost'
		echo
		echo "Commands (PUB and SUB the publishers' and the subscribers' MQTT ports: the same for ephemeral, single and *-local, node 1 and node 2 for *-cross):"
		echo
		echo '```'
		for s in "${SCENARIOS[@]}"; do
			IFS='|' read -r _ args <<<"$s"
			echo "petrel bench $args --port PUB --sub-port SUB --settle $SETTLE --pid PID --json"
		done
		echo '```'
		echo
		echo "Errors reported by the runs (first few):"
		echo
		f=$(for x in "$RES"/*.json; do
			[ -f "$x" ] || continue
			case $x in */failover.*) continue ;; esac
			jq -r --arg f "$(basename "$x" .json)" 'select((.errors|length) > 0) | "- \($f): \(.errors[0])"' "$x"
		done | head -20)
		if [ -n "$f" ]; then echo "$f"; else echo "- none"; fi
	fi
	if [[ " $PARTS " == *" failover "* ]]; then
		echo
		echo "Write pause after the leader of KV_PETREL_OWNERS (the bucket every CONNECT claims its session in) stops. Pause: the longest a client that starts trying at any moment after the signal, and retries at once when refused, waits for an accepted CONNECT (bench/failover sends one every 20 ms to each survivor, a new client id each, and keeps on until the node is gone and 5 s more). Two survivors per round; every figure in round order:"
		echo
		echo "| signal | pause, median s | min s | max s | per round (survivor / survivor) s | first accepted CONNECT after the signal, per round s | node gone after, per round s | leader was also meta leader | CONNACKs 0x88 per round | restart to caught up, median s |"
		echo "|---|---|---|---|---|---|---|---|---|---|"
		for sig in KILL TERM; do
			fs=("$RES"/failover."$sig".*.json)
			[ -f "${fs[0]}" ] || { echo "| SIG$sig | n/a | | | | | | | | |"; continue; }
			all=$(for f in "${fs[@]}"; do jq -r '.survivors[].pause_s' "$f"; done | sort -g)
			med=$(echo "$all" | awk '{a[NR]=$1} END { if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }')
			per() { for f in "${fs[@]}"; do jq -r "$1" "$f"; done | paste -sd, | sed 's/,/, /g'; }
			two='[.survivors[] | (X * 100 | round / 100 | tostring)] | join(" / ")'
			rejoin=$(for f in "$RES"/rejoin."$sig".*; do [ -f "$f" ] && cat "$f"; done | sort -g | awk '{a[NR]=$1} END { if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }')
			echo "| SIG$sig | $(fmtv s "$med") | $(fmtv s "$(echo "$all" | head -1)") | $(fmtv s "$(echo "$all" | tail -1)") | $(per "${two/X/.pause_s}") | $(per "${two/X/.first_ok_s}") | $(per '.exit_s * 100 | round / 100') | $(per 'if .leader == .meta_leader then "yes" else "no" end') | $(per '[.survivors[].refused["0x88"] // 0] | add') | $rejoin |"
		done
		echo
		echo "Command, per round (PID the leader's, ADDRS the two survivors' MQTT addresses; bench/cluster.sh restarts the node afterwards and waits until \`petrel cluster status\` shows every asset with a leader and two current followers):"
		echo
		echo '```'
		echo "go run ./bench/failover -pid PID -signal KILL|TERM -addrs ADDRS -timeout 60s"
		echo '```'
	fi
	echo "<!-- cluster.sh:end -->"
} >"$TMP/section.md"

if [ -f "$OUT" ] && grep -q '<!-- cluster.sh:begin' "$OUT"; then
	awk -v sec="$TMP/section.md" '
		/<!-- cluster.sh:begin/ { while ((getline l < sec) > 0) print l; skip = 1; next }
		/<!-- cluster.sh:end -->/ { skip = 0; next }
		!skip { print }' "$OUT" >"$TMP/out.md"
	cp "$TMP/out.md" "$OUT"
else
	{ [ -f "$OUT" ] && cat "$OUT" && echo; cat "$TMP/section.md"; } >"$TMP/out.md"
	cp "$TMP/out.md" "$OUT"
fi
log "wrote $OUT (${ELAPSED} s)"
