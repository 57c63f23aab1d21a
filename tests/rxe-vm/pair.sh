# shellcheck shell=bash
# Sourced in a guest of tests/rxe-vm/run2.sh: coordination between the two
# machines through marker files in the shared folder $RF_PAIR_SYNC.
#   pair_mark NAME [TEXT]   create marker NAME (atomically), holding TEXT
#   pair_wait NAME SECS     poll every 50 ms until marker NAME exists; fails
#                           (status 1, says why) after SECS, or at once when
#                           the other guest's command has failed
#   pair_get NAME           print marker NAME's text
# Markers written by a guest: its role and a word (a-hub-up, b-done, ...).
: "${RF_PAIR_SYNC:?not in a run2.sh guest}"

pair_mark() {
	printf '%s\n' "${2:-}" >"$RF_PAIR_SYNC/.$1.$$"
	mv -f "$RF_PAIR_SYNC/.$1.$$" "$RF_PAIR_SYNC/$1"
}

pair_wait() {
	local name=$1 secs=$2 i
	for ((i = 0; i < secs * 20; i++)); do
		[ -e "$RF_PAIR_SYNC/$name" ] && return 0
		if [ -e "$RF_PAIR_SYNC/failed-a" ] || [ -e "$RF_PAIR_SYNC/failed-b" ]; then
			echo "[pair $RF_PAIR_ROLE] the other guest failed while waiting for '$name'" >&2
			return 1
		fi
		sleep 0.05
	done
	echo "[pair $RF_PAIR_ROLE] timed out after ${secs}s waiting for '$name'" >&2
	return 1
}

pair_get() { cat "$RF_PAIR_SYNC/$1"; }
