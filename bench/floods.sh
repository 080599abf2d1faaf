#!/usr/bin/env bash
# bench/floods.sh: issue 18's acceptance check on the floods. For each
# flood it starts `petrel serve` (a config of its own, in-memory store,
# loopback ports, no admin listener), measures a bystander pair with
# `petrel bench latency --rate 1000 --qos 1 --duration 5s --json` unloaded,
# starts the flood (bench/flood, or bench/tlsflood for the TLS handshake
# flood), measures the bystander again 2 s into it, waits for the flood to
# end, reads the broker's peak RSS (VmHWM) and stops the broker. It prints
# one table: flood | RSS peak | p50 ratio | p99 ratio (during / unloaded,
# medians over the rounds), and the raw numbers of each run.
#
#   bench/floods.sh                       3 rounds, every flood, unpinned
#   PIN=1 bench/floods.sh                 the flood on CPU 0, broker and
#                                         bystander on CPU 1 (taskset)
#   ROUNDS=1 ONLY="bcrypt dribble" bench/floods.sh
#   CONN_RATE=1000 bench/floods.sh        listeners[].connection_rate set
#   CHECK_CPU=0.5 bench/floods.sh         auth.password_checks.cpu set
#   REFUSAL_DELAY=0s bench/floods.sh      auth.password_checks.refusal_delay
#                                         set (unset: the default)
#   PETREL=/path/to/petrel bench/floods.sh  another broker binary (an older
#                                         build, to compare)
#   ARGON2ID_HASH='$argon2id$...' ONLY=argon2id bench/floods.sh
#                                         another users-file hash for the
#                                         argon2id row (default: petrel
#                                         passwd --argon2id's, p=1; p=4 was
#                                         its default before)
#
# Every flood is bounded in count and time (FLOOD_SECONDS, default 10 s;
# the TLS flood: 50 honest clients 200 ms apart) and stops by itself; the
# script kills only the processes it started, by PID. All traffic is on
# 127.0.0.1 (the password and TLS floods also bind 127.0.1.x sources).
#
# The broker's bounds in these runs: limits.memory_budget 256 MiB,
# queue_bytes 64 MiB (default), password_checks.memory 256 MiB (default),
# max_connect_size 64 KiB (default), connect_timeout 10 s (default).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
PIN=${PIN:-0}
FLOOD_SECONDS=${FLOOD_SECONDS:-10}
CONN_RATE=${CONN_RATE:-0}
CHECK_CPU=${CHECK_CPU:-0}
REFUSAL_DELAY=${REFUSAL_DELAY:-}
PETREL=${PETREL:-}
PORT=${PORT:-$((20000 + RANDOM % 20000))}
FLOODS=(bcrypt bcrypt-nowait bcrypt-spread argon2id retained aliases stalled preconnect-held preconnect-reconnect dribble tls)
ONLY=${ONLY:-${FLOODS[*]}}

cd "$(dirname "$0")/.."
log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

for c in jq openssl; do
	command -v "$c" >/dev/null || { log "$c is required"; exit 1; }
done
if [ "$PIN" = 1 ] && ! command -v taskset >/dev/null; then
	log "PIN=1 needs taskset"
	exit 1
fi

TMP=$(mktemp -d)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT

log "building into $TMP"
go build -o "$TMP/petrel" ./cmd/petrel
[ -n "$PETREL" ] && cp "$PETREL" "$TMP/petrel-serve" || cp "$TMP/petrel" "$TMP/petrel-serve"
go build -o "$TMP/flood" ./bench/flood
go build -o "$TMP/tlsflood" ./bench/tlsflood

# broker side and attacker side of the machine
BROKER_CPU=() FLOOD_CPU=()
if [ "$PIN" = 1 ]; then
	BROKER_CPU=(taskset -c 1) FLOOD_CPU=(taskset -c 0)
fi

# Credentials: a bcrypt cost-12 user and an argon2id user (petrel passwd's
# defaults); the guesses are always wrong.
printf 'right-password\n' | "$TMP/petrel" passwd >"$TMP/bcrypt.hash"
if [ -n "${ARGON2ID_HASH:-}" ]; then
	printf '%s\n' "$ARGON2ID_HASH" >"$TMP/argon2id.hash"
else
	printf 'right-password\n' | "$TMP/petrel" passwd --argon2id >"$TMP/argon2id.hash"
fi
printf 'users:\n  - {username: victim, password: "%s", roles: [ALL]}\n' "$(cat "$TMP/bcrypt.hash")" >"$TMP/users-bcrypt.yaml"
printf 'users:\n  - {username: victim, password: "%s", roles: [ALL]}\n' "$(cat "$TMP/argon2id.hash")" >"$TMP/users-argon2id.yaml"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
	-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null

# config FLOOD: the broker's configuration for that flood. The bystander
# and the message floods are anonymous clients allowed everything.
config() {
	local users=$TMP/users-bcrypt.yaml
	[ "$1" = argon2id ] && users=$TMP/users-argon2id.yaml
	cat <<EOF
listeners:
  - {name: tcp, type: tcp, address: 127.0.0.1:$PORT, connection_rate: $CONN_RATE}
  - name: tls
    type: tls
    address: 127.0.0.1:$((PORT + 1))
    tls: {cert_file: $TMP/cert.pem, key_file: $TMP/key.pem}
limits: {memory_budget: 256MiB}
store: {type: memory}
admin: {address: ""}
sys_interval: 0s
auth:
  users_file: $users
  password_checks: {cpu: $CHECK_CPU${REFUSAL_DELAY:+, refusal_delay: $REFUSAL_DELAY}}
  anonymous: {enabled: true, tenant: anon, roles: [ALL]}
  roles:
    - {name: ALL, activity: both, max_qos: 2, retain: true, topics: ["#"]}
EOF
}

# wait_port PORT: until something listens there (10 s at most).
wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

latency() { # OUT: the bystander's report
	timeout 60 "${BROKER_CPU[@]}" "$TMP/petrel" bench latency --port "$PORT" --rate 1000 --qos 1 --duration 5s --json >"$1"
}

# one FLOOD ROUND: a fresh broker, the bystander unloaded and during the
# flood, the broker's peak RSS. Appends "flood p50u p99u p50f p99f hwm_kib
# rss_before_kib" to $TMP/runs.
one() {
	local f=$1 r=$2 d=$TMP/$1-$2
	mkdir -p "$d"
	config "$f" >"$d/petrel.yaml"
	"${BROKER_CPU[@]}" "$TMP/petrel-serve" serve --config "$d/petrel.yaml" >"$d/serve.log" 2>&1 &
	local bpid=$!
	PIDS+=("$bpid")
	wait_port "$PORT" || { log "$f: broker did not listen"; cat "$d/serve.log" >&2; kill "$bpid"; return 1; }
	latency "$d/unloaded.json"
	local rss0
	rss0=$(awk '/^VmRSS/ {print $2}' "/proc/$bpid/status")
	if [ "$f" = tls ]; then
		timeout 60 "${FLOOD_CPU[@]}" "$TMP/tlsflood" -addr "127.0.0.1:$((PORT + 1))" -ca "$TMP/cert.pem" >"$d/flood.out" 2>"$d/flood.err" &
	else
		timeout 60 "${FLOOD_CPU[@]}" "$TMP/flood" -kind "$f" -addr "127.0.0.1:$PORT" -duration "${FLOOD_SECONDS}s" >"$d/flood.out" 2>"$d/flood.err" &
	fi
	local fpid=$!
	PIDS+=("$fpid")
	sleep 2
	latency "$d/flood.json" || log "$f: bystander failed during the flood"
	wait "$fpid" || log "$f: flood exited $?: $(tail -1 "$d/flood.err")"
	local hwm
	hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$bpid/status")
	kill "$bpid"
	wait "$bpid" 2>/dev/null || true
	PIDS=()
	printf '%s %s %s %s %s %s %s\n' "$f" \
		"$(jq .latency.p50_us "$d/unloaded.json")" "$(jq .latency.p99_us "$d/unloaded.json")" \
		"$(jq '.latency.p50_us // "nan"' "$d/flood.json" 2>/dev/null || echo nan)" \
		"$(jq '.latency.p99_us // "nan"' "$d/flood.json" 2>/dev/null || echo nan)" \
		"$hwm" "$rss0" >>"$TMP/runs"
	log "$f round $r: $(tail -1 "$TMP/runs") | $(head -c 300 "$d/flood.out")"
}

log "uptime: $(uptime)"
for r in $(seq "$ROUNDS"); do
	for f in $ONLY; do
		one "$f" "$r"
	done
done
log "uptime: $(uptime)"

echo "# bench/floods.sh: ROUNDS=$ROUNDS PIN=$PIN FLOOD_SECONDS=$FLOOD_SECONDS CONN_RATE=$CONN_RATE CHECK_CPU=$CHECK_CPU REFUSAL_DELAY=${REFUSAL_DELAY:-default} PETREL=${PETREL:-this tree}, $(nproc) CPUs, $(date -u +%F)"
echo "# argon2id hash parameters: $(cut -d'$' -f4 "$TMP/argon2id.hash")"
echo "# runs: flood p50_unloaded_us p99_unloaded_us p50_flood_us p99_flood_us vmhwm_kib rss_before_kib"
cat "$TMP/runs"
echo
awk '
function median(s,   a, n, i, j, t) {
	n = split(s, a, " ")
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
	return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
{
	if (!($1 in seen)) { order[++k] = $1; seen[$1] = 1 }
	p50u[$1] = p50u[$1] " " $2; p99u[$1] = p99u[$1] " " $3
	r50[$1] = r50[$1] " " ($4 == "nan" ? 1e9 : $4 / $2); r99[$1] = r99[$1] " " ($5 == "nan" ? 1e9 : $5 / $3)
	p50f[$1] = p50f[$1] " " $4; p99f[$1] = p99f[$1] " " $5
	hwm[$1] = hwm[$1] " " $6
}
END {
	print "| flood | RSS peak (MiB) | p50 ratio | p99 ratio | p50 unloaded / flood (us) | p99 unloaded / flood (us) |"
	print "|---|---|---|---|---|---|"
	for (i = 1; i <= k; i++) {
		f = order[i]
		printf "| %s | %.0f | %.2f | %.2f | %.0f / %.0f | %.0f / %.0f |\n", f, median(hwm[f]) / 1024, median(r50[f]), median(r99[f]),
			median(p50u[f]), median(p50f[f]), median(p99u[f]), median(p99f[f])
	}
}' "$TMP/runs"
