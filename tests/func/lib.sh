# Shared helpers for functional tests. Source it first thing:
#   . "$(dirname "$0")/lib.sh"
# Gives: RF_SOURCE_DIR, RF_BUILD_DIR, RF_BIN, RF_LIB, a per-test scratch dir
# $RF_TMP, and a cleanup trap that kills every process started with
# rf_spawn and removes the scratch dir.
set -euo pipefail

RF_SOURCE_DIR=${RF_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
RF_BUILD_DIR=${RF_BUILD_DIR:-$RF_SOURCE_DIR/build}
RF_BIN=$RF_BUILD_DIR/bin
RF_LIB=$RF_BUILD_DIR/lib
RF_TEST_NAME=$(basename "$0" .sh)
RF_TMP=$(mktemp -d "${TMPDIR:-/tmp}/rf-$RF_TEST_NAME.XXXXXX")
RF_PIDS=()

rf_log() { echo "[$RF_TEST_NAME $(date +%H:%M:%S)] $*"; }
rf_fail() { echo "[$RF_TEST_NAME] FAIL: $*" >&2; exit 1; }

# rf_skip REASON: the test cannot run here; ctest counts exit 77 as skipped.
rf_skip() { echo "[$RF_TEST_NAME] SKIP: $*"; exit 77; }

# rf_require CMD...: skip unless every command exists.
rf_require() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || rf_skip "'$c' is not installed"
	done
}

rf_cleanup() {
	local rc=$? pid
	for pid in "${RF_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${RF_PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
		rf_log "failed (exit $rc); scratch kept in $RF_TMP"
		local f
		for f in "$RF_TMP"/*.log; do
			[ -f "$f" ] || continue
			echo "----- $f (last 40 lines)"; tail -n 40 "$f"
		done
	else
		rm -rf "$RF_TMP"
	fi
	exit "$rc"
}
trap rf_cleanup EXIT
trap 'exit 130' INT TERM

# rf_spawn NAME CMD...: start CMD in the background, output to $RF_TMP/NAME.log;
# sets RF_LAST_PID. It is killed on exit.
rf_spawn() {
	local name=$1; shift
	"$@" >"$RF_TMP/$name.log" 2>&1 &
	RF_LAST_PID=$!
	RF_PIDS+=("$RF_LAST_PID")
}

# rf_free_port: print a TCP port on 127.0.0.1 that nothing listens on,
# below the kernel's ephemeral range (a port an outgoing connection holds
# cannot be bound, yet nothing listens on it).
rf_free_port() {
	local p lo
	lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
	[ "$lo" -gt 12000 ] 2>/dev/null || lo=32768
	for _ in $(seq 200); do
		p=$((10000 + RANDOM % (lo - 10000)))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"; return 0
		fi
	done
	rf_fail "no free port found"
}

# rf_wait_for SECONDS DESCRIPTION CMD...: poll CMD every 0.1 s until it
# succeeds; fail with DESCRIPTION after SECONDS.
rf_wait_for() {
	local secs=$1 what=$2; shift 2
	local i
	for i in $(seq $((secs * 10))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	rf_fail "timed out after ${secs}s waiting for $what"
}

# rf_wait_port PORT [SECONDS]: wait until something listens on 127.0.0.1:PORT.
rf_wait_port() {
	rf_wait_for "${2:-10}" "127.0.0.1:$1 to listen" bash -c "exec 3<>/dev/tcp/127.0.0.1/$1"
}

# rf_alive PID: fail unless PID still runs.
rf_alive() { kill -0 "$1" 2>/dev/null || rf_fail "process $1 died"; }

# The hub's status JSON (docs/HUB.md, "Status JSON"): assert a fact through
# its field, not through a log line. Set RF_HUB=HOST:PORT first, and
# RF_PSK=FILE (an admin key) when the hub authenticates; needs jq.
#   rf_status                   the JSON (repctl status --json)
#   rf_status_get [JQ-ARGS] FILTER
#                               jq -r FILTER over it ("" when the hub does
#                               not answer or the JSON does not parse)
#   rf_status_true [JQ-ARGS] FILTER
#                               succeeds when FILTER gives true (a condition
#                               for rf_wait_for)
#   rf_hub_field FIELD, rf_volume_field VOLUME FIELD, rf_agent_field ID FIELD
#                               one field (FIELD may be a path: journal.entries)
rf_status() {
	"$RF_BIN/repctl" --hub "$RF_HUB" ${RF_PSK:+--psk-file "$RF_PSK"} status --json
}
rf_status_get() {
	local json
	json=$(rf_status 2>/dev/null) || return 0
	jq -r "$@" <<<"$json" 2>/dev/null || true
}
rf_status_true() { [ "$(rf_status_get "$@")" = true ]; }
rf_hub_field() { rf_status_get ".hub.$1"; }
rf_volume_field() { rf_status_get --arg v "$1" ".volumes[] | select(.name == \$v) | .$2"; }
rf_agent_field() { rf_status_get --arg a "$1" ".agents[] | select(.id == \$a) | .$2"; }
