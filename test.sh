#!/usr/bin/env bash
# test.sh: everything CI checks, in the order it checks it: formatting, vet,
# builds and vets for darwin, windows and linux/arm64, the full test suite
# with the race detector, then a short run of every fuzz target. Run it from anywhere; it works in the repository root.
#
#   ./test.sh                 the whole run (about 5 minutes on 2 cores)
#   FUZZTIME=30s ./test.sh    longer fuzz runs
#
# CI=true (set by CI) is passed through to the tests: the interop tests then
# fail instead of skipping when mosquitto_pub/mosquitto_sub are missing, and
# the full-disk tests when they cannot mount a loop file system (root).
set -euo pipefail
cd "$(dirname "$0")"
export CI="${CI:-}"

step() { printf '\n==> %s\n' "$*"; }

step "go version"
go version

# Debian's mosquitto clients drive the interop tests.
sudo=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
	sudo=(sudo)
fi
if ! command -v mosquitto_pub >/dev/null 2>&1 || ! command -v mosquitto_sub >/dev/null 2>&1; then
	step "installing mosquitto-clients"
	if [ "$(id -u)" -eq 0 ] || [ "${#sudo[@]}" -gt 0 ]; then
		"${sudo[@]}" apt-get update
		DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y mosquitto-clients
	else
		echo "warning: mosquitto-clients missing and neither root nor sudo; install with: apt-get install mosquitto-clients" >&2
	fi
fi

# The `mqtt` npm package drives the WebSocket interop test, as a browser would.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	step "installing nodejs and npm"
	if [ "$(id -u)" -eq 0 ] || [ "${#sudo[@]}" -gt 0 ]; then
		"${sudo[@]}" apt-get update
		DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y nodejs npm
	fi
fi
if command -v npm >/dev/null 2>&1 && [ ! -d interop/node/node_modules/mqtt ]; then
	step "npm ci (interop/node)"
	npm ci --prefix interop/node --no-audit --no-fund
fi

step "gofmt -l"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "these files need gofmt -w:" >&2
	echo "$unformatted" >&2
	exit 1
fi

step "go vet ./..."
go vet ./...

# Linux is where the broker is measured and its raw descriptor paths run;
# the other platforms build without them (the _other.go files). Each must
# still build and vet, so that a Linux-only call cannot creep into a
# portable file.
for target in darwin/amd64 windows/amd64 linux/arm64; do
	step "GOOS=${target%/*} GOARCH=${target#*/} go build ./... && go vet ./..."
	GOOS=${target%/*} GOARCH=${target#*/} go build ./...
	GOOS=${target%/*} GOARCH=${target#*/} go vet ./...
done

step "go test -race ./..."
go test -race -count=1 -timeout 15m ./...

# Every fuzz target, found by name: a new Fuzz function is run without
# touching this script. The total stays under about 4 minutes.
step "fuzz"
mapfile -t targets < <(grep -r "^func Fuzz" --include=*_test.go . |
	sed -E 's#^(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*#\1 \2#' | sort)
fuzztime=${FUZZTIME:-10s}
if [ -z "${FUZZTIME:-}" ] && [ "${#targets[@]}" -gt 12 ]; then
	fuzztime=5s
fi
echo "${#targets[@]} fuzz targets, ${fuzztime} each"
# Go 1.26's fuzz coordinator can report a bare "context deadline exceeded"
# at the -fuzztime boundary with no failing input (golang/go#75804, fixed in
# Go 1.27). Such a run is repeated, at most twice; a run that writes a failing
# input, or any other failure, fails at once, and three such runs in a row
# fail too.
fuzz_one() {
	local pkg=$1 name=$2 attempt out rc
	for attempt in 1 2 3; do
		out=$(mktemp)
		rc=0
		go test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "$pkg" 2>&1 | tee "$out" || rc=$?
		if [ "$rc" -eq 0 ]; then
			rm -f "$out"
			return 0
		fi
		if grep -q 'Failing input written to' "$out" ||
			! grep -q '^    context deadline exceeded$' "$out"; then
			rm -f "$out"
			return "$rc"
		fi
		rm -f "$out"
		echo "--- $pkg $name: coordinator deadline race (golang/go#75804, no failing input), attempt $attempt of 3" >&2
	done
	return 1
}
for t in "${targets[@]}"; do
	pkg=${t% *}
	name=${t#* }
	echo "--- $pkg $name"
	fuzz_one "$pkg" "$name"
done

step "all checks passed"
