# The two commands the README starts with. Each installs missing Debian packages (as
# root, `make deps`), configures and builds with CMake into build/, then runs. Plain `make`
# (`make build`) only configures and builds: it never calls apt-get.
#   make demo    show the product working
#   make check   the whole test suite, then again under ASan+UBSan, then the threaded
#                parts under TSan; where /dev/kvm cannot be opened, the tests that run
#                guests run in the emulated KVM host (tests/vmhost) instead
#   make check-emulated   the guest-running tests in the emulated KVM host, on any machine
#   make install PREFIX=/some/dir
#   make bench   benchmarks (figures, never pass/fail on time)
#   make fuzz    libFuzzer on every target for FUZZ_SECONDS each (tests/fuzz/run.sh; clang)
#   make bench-tls   the tls phase of make bench alone (no /dev/kvm needed)
#   make bench-mem   the migration and eager-restore data paths on memory only (no /dev/kvm needed)

PREFIX ?= /usr/local
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVMM_WERROR=ON

# Debian packages the build, the tests and the demo need.
DEB_PACKAGES = gcc make cmake pkg-config python3 binutils \
	liburing-dev libzstd-dev libxxhash-dev libprotobuf-c-dev protobuf-c-compiler libcmocka-dev \
	qemu-system-x86 iproute2 valgrind cppcheck \
	libmicrohttpd-dev libjson-c-dev libcurl4-openssl-dev curl \
	libssl-dev openssl libseccomp-dev
# Only `make fuzz` needs these (libFuzzer comes with clang); make check does not.
FUZZ_DEB_PACKAGES = clang llvm

.PHONY: all deps deps-fuzz fuzz build check check-fast check-emulated check-asan check-tsan demo install bench bench-tls bench-mem clean

all: build

deps deps-fuzz:
	@missing=""; for p in $(DEB_PACKAGES) $(if $(filter deps-fuzz,$@),$(FUZZ_DEB_PACKAGES)); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "run as root, or install:$$missing" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

# tests/vmhost/ctest.sh decides where the `kvm` tests run: here where /dev/kvm opens, else
# in the emulated KVM host (the sanitizer passes then leave them out, and say which).
check-fast: deps build
	bash tests/vmhost/ctest.sh auto $(BUILD) -j$(JOBS)

check-emulated: deps build
	bash tests/vmhost/ctest.sh emulated $(BUILD) -j$(JOBS)

check-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DVMM_SANITIZE=address,undefined -DVMM_WERROR=ON
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 bash tests/vmhost/ctest.sh native $(ASAN_BUILD) -j$(JOBS)

# The threaded parts (vCPU threads, pause/resume, dirty rings, migration) under TSan; run
# control, the fake-kernel vCPU threads and snapshot saves run under it on any machine.
TSAN_TESTS = 'lifecycle|dirty|test_migrate$$|migrate_fail|ram_batch|run_control|fake_run|snapshot_files|vm_threads|kick_signal|receive_limits|device_state|cpu_model|handover|snapshot_save|unit/test_tls$$|rx_populate|snapshot_uffd|pager_source|virtio_net|virtio_vsock|disk_migrate'
check-tsan: deps
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DVMM_SANITIZE=thread -DVMM_WERROR=ON
	cmake --build $(TSAN_BUILD) -j$(JOBS)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 VMM_TEST_QUICK=1 \
		bash tests/vmhost/ctest.sh native $(TSAN_BUILD) -R $(TSAN_TESTS)

check: check-fast check-asan check-tsan

demo: deps build
	@bash examples/demo.sh $(BUILD)

install: deps build
	cmake --install $(BUILD) --prefix $(PREFIX)

# Installs QEMU, iperf3, libvirt and matplotlib itself; builds only vmm_bench and the guests
# (in an optimised tree if $(BUILD) is a Debug one), so a broken unrelated target does not stop it.
bench: deps
	@bash tests/bench/run.sh $(BUILD)

# The tls phase alone (libvmm's tls_bench and QEMU's TLS migration; no /dev/kvm needed).
bench-tls: deps
	@BENCH_ONLY=tls bash tests/bench/run.sh $(BUILD)

# The migration and eager-restore data paths on memory only (migrate_mem_bench,
# snapshot_restore_bench: fake kernel; no /dev/kvm needed).
bench-mem: deps
	@BENCH_ONLY=mem bash tests/bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD)

# FUZZ_SECONDS per target (default 60), one target at a time, on a scratch copy of each
# corpus; `bash tests/fuzz/run.sh --merge` folds new coverage back into tests/fuzz/corpus.
fuzz: deps-fuzz
	@bash tests/fuzz/run.sh
