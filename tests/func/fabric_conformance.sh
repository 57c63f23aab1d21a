#!/usr/bin/env bash
# The transport conformance suite (tests/fabric/conformance.c) against the
# tcp:// or shm:// provider on this host. Usage: fabric_conformance.sh tcp|shm
. "$(dirname "$0")/lib.sh"

scheme=${1:?usage: fabric_conformance.sh tcp|shm}
case $scheme in
tcp) url="tcp://127.0.0.1:$(rf_free_port)" ;;
shm) url="shm://$RF_TMP/hub.sock" ;;
*) rf_fail "unknown scheme $scheme" ;;
esac

rf_log "running every case over $url"
"$RF_BIN/rf-fabric-conformance" run --url "$url" --dir "$RF_TMP"
