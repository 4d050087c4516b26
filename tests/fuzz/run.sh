#!/bin/bash
# make fuzz: builds the libFuzzer binaries (clang, ASan+UBSan, the library instrumented) and
# runs each target for FUZZ_SECONDS on a scratch copy of its checked-in corpus.
#   bash tests/fuzz/run.sh [--merge] [--build DIR] [--no-build] [TARGET...]
#   FUZZ_SECONDS=600 make fuzz            (default 60 s per target, one target at a time)
#   FUZZ_TARGETS="stream loader" make fuzz
# TARGET: a tests/fuzz/target_<TARGET>.c name; default all of them.
# The repository is never written, except with --merge: then the inputs that add coverage
# are merged (libFuzzer -merge=1) into tests/fuzz/corpus/<target>/ for you to commit.
# Per target it prints runs, runs/s, coverage (cov: edges, ft: features, from libFuzzer's
# start and final lines) and any crash, minimised, with its file under BUILD/fuzz-out/.
# Exit status 1 if any target crashed (or leaked, or timed out on an input).
# FUZZ_ARGS: more libFuzzer flags for every target (e.g. "-jobs=1 -max_len=65536").
set -uo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$SRC/build-fuzz
MERGE=0
BUILD_FIRST=1
SECONDS_PER=${FUZZ_SECONDS:-60}
TARGETS=()
while [ $# -gt 0 ]; do
	case $1 in
	--merge) MERGE=1 ;;
	--build) BUILD=$(realpath -m "$2"); shift ;;
	--no-build) BUILD_FIRST=0 ;; # run the fuzz_<target> binaries already in BUILD
	-h|--help) sed -n '2,14p' "$0"; exit 0 ;;
	*) TARGETS+=("$1") ;;
	esac
	shift
done
if [ ${#TARGETS[@]} -eq 0 ] && [ -n "${FUZZ_TARGETS:-}" ]; then
	read -ra TARGETS <<< "$FUZZ_TARGETS"
fi
if [ ${#TARGETS[@]} -eq 0 ]; then
	for f in "$SRC"/tests/fuzz/target_*.c; do
		t=$(basename "$f" .c)
		TARGETS+=("${t#target_}")
	done
fi

if ! command -v clang >/dev/null; then
	echo "run.sh: needs clang (Debian: apt-get install clang llvm, or make deps-fuzz as root)" >&2
	exit 2
fi

# ---- build (its own tree: every object instrumented, so it never mixes with build/)
if [ $BUILD_FIRST = 1 ] && [ ! -f "$BUILD/CMakeCache.txt" ]; then
	cmake -S "$SRC" -B "$BUILD" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DVMM_FUZZ=ON -DVMM_SANITIZE=address,undefined -DVMM_WERROR=ON >/dev/null || exit 2
fi
bins=()
for t in "${TARGETS[@]}"; do bins+=("fuzz_$t"); done
if [ $BUILD_FIRST = 1 ]; then
	cmake --build "$BUILD" -j"$(nproc)" --target "${bins[@]}" >"$BUILD/fuzz-build.log" 2>&1 || {
		tail -30 "$BUILD/fuzz-build.log" >&2
		exit 2
	}
fi

# ---- run, one target at a time
OUT=$BUILD/fuzz-out
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
summary=()
crashed=0
for t in "${TARGETS[@]}"; do
	bin=$BUILD/tests/fuzz/fuzz_$t
	dir=$OUT/$t
	rm -rf "$dir"
	mkdir -p "$dir/corpus" "$dir/artifacts"
	seeds=$SRC/tests/fuzz/corpus/$t
	[ -d "$seeds" ] && cp "$seeds"/* "$dir/corpus/" 2>/dev/null
	# tests/fuzz/<target>.options: libFuzzer flags that target always gets (e.g. a max_len
	# below its largest regression input, which would otherwise set the size of every run)
	opts=$(cat "$SRC/tests/fuzz/$t.options" 2>/dev/null)
	echo "== $t: ${SECONDS_PER}s, corpus $(ls "$dir/corpus" | wc -l) seeds, $opts log $dir/log"
	# shellcheck disable=SC2086
	"$bin" "$dir/corpus" -max_total_time="$SECONDS_PER" -print_final_stats=1 -timeout=25 \
		-artifact_prefix="$dir/artifacts/" $opts ${FUZZ_ARGS:-} >"$dir/log" 2>&1
	rc=$?
	start=$(grep -m1 'INITED' "$dir/log" | grep -o 'cov: [0-9]* ft: [0-9]*')
	end=$(grep -E '^#[0-9]+' "$dir/log" | tail -1 | grep -o 'cov: [0-9]* ft: [0-9]*')
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log")
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log")
	line=$(printf '%-10s runs %-10s runs/s %-7s start %-18s end %-18s' "$t" "${runs:-?}" \
		"${rate:-?}" "${start:-?}" "${end:-?}")
	art=$(ls "$dir"/artifacts/ 2>/dev/null | head -1)
	if [ $rc -ne 0 ] || [ -n "$art" ]; then
		crashed=1
		line="$line CRASH (exit $rc)"
		echo "-- $t crashed (exit $rc):"
		grep -E 'ERROR: |runtime error|SUMMARY' "$dir/log" | head -5
		if [ -n "$art" ]; then
			min=$dir/artifacts/minimised-$art
			"$bin" -minimize_crash=1 -runs=20000 -exact_artifact_path="$min" \
				"$dir/artifacts/$art" >"$dir/minimise.log" 2>&1
			[ -f "$min" ] || min=$dir/artifacts/$art
			echo "   input ($(stat -c %s "$min") bytes): $min"
			od -A x -t x1z -v "$min" | head -16
			echo "   keep it: cp $min $SRC/tests/fuzz/corpus/$t/regress-NAME (after the fix)"
		fi
	fi
	summary+=("$line")
	if [ $MERGE = 1 ] && [ $rc -eq 0 ]; then
		mkdir -p "$seeds"
		before=$(ls "$seeds" | wc -l)
		"$bin" -merge=1 "$seeds" "$dir/corpus" >"$dir/merge.log" 2>&1
		echo "   merged into tests/fuzz/corpus/$t: $before -> $(ls "$seeds" | wc -l) files"
	fi
done

echo
echo "== fuzz summary (${SECONDS_PER}s per target; cov/ft: libFuzzer's first and last line)"
printf '%s\n' "${summary[@]}"
exit $crashed
