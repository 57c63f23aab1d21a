# Sourced by scripts/test.sh and scripts/demo.sh: installs the Debian
# packages the project needs, and only those that are missing.
# Usage: rf_install_deps [EXTRA_PACKAGE...]

RF_DEBIAN_PACKAGES=(
	# build
	gcc make cmake pkg-config clang-format clang libclang-rt-14-dev
	# libraries (pkg-config names: libibverbs librdmacm libpmem cmocka nbdkit inih
	# libmicrohttpd)
	libibverbs-dev librdmacm-dev ibverbs-providers rdma-core ibverbs-utils
	libpmem-dev libcmocka-dev nbdkit nbdkit-plugin-dev libinih-dev libmicrohttpd-dev libssl-dev
	# soft-RoCE VM harness (tests/rxe-vm)
	qemu-system-x86 busybox-static kmod cpio xz-utils zstd iproute2
	# emulated persistent memory in that VM (run.sh --nvdimm): devdax namespaces;
	# a slow disk there (device-mapper's delay target)
	ndctl dmsetup
	# clients and tools used by functional tests
	qemu-utils fio libnbd-bin perftest jq
	# the soak's writer (tests/soak/soak.py, scripts/soak.sh)
	python3-libnbd
	# benchmarks (scripts/bench.sh): anchors, report, plots, profiles
	iperf3 python3 gnuplot-nox valgrind
	# peers in the benchmark (scripts/bench.sh part i): DRBD 8.4 across two guests
	drbd-utils
)

rf_install_deps() {
	local missing=() p sudo=()
	for p in "${RF_DEBIAN_PACKAGES[@]}" "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || {
			echo "missing packages: ${missing[*]} (run as root or install sudo)" >&2
			return 1
		}
		sudo=(sudo)
	fi
	echo "== installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get update -qq
	"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
