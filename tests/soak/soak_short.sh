#!/usr/bin/env bash
# The short soak run by ctest (scripts/test.sh): the soak of soak.sh for
# RF_SOAK_SECONDS (50) with the fixed seed 1, then as long with a random
# seed, printed first so that a failure can be replayed with
#   scripts/soak.sh --seed N --seconds 50
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
secs=${RF_SOAK_SECONDS:-50}
random_seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
echo "[soak_short] fixed seed 1, then random seed $random_seed, ${secs} s each"
for seed in 1 "$random_seed"; do
	echo "[soak_short] seed $seed (replay: scripts/soak.sh --seed $seed --seconds $secs)"
	bash "$here/soak.sh" --seed "$seed" --seconds "$secs"
done
echo "[soak_short] PASS: seeds 1 and $random_seed, nothing lost"
