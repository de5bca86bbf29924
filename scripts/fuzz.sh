#!/usr/bin/env bash
# fuzz.sh: run every fuzz target in the module for FUZZTIME each (default
# 10s), one after the other. Targets are found with `go test -list`, so a
# new FuzzXxx is picked up without editing this file. Exits non-zero if any
# target fails; the failing input is left under that package's
# testdata/fuzz/FuzzXxx/ for `go test -run FuzzXxx/<file>` to replay.
#
#   scripts/fuzz.sh                    # every target, 10 s each
#   FUZZTIME=60s scripts/fuzz.sh       # longer
#   scripts/fuzz.sh ./fsm/ ./mux/      # only these packages
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10s}
pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(./...)

# -list prints each package's matching names, then its "ok <import path>"
# line. -short keeps packages whose TestMain does heavy setup (systemtest)
# from doing it just to list names.
listing=$(go test -short -list '^Fuzz' "${pkgs[@]}") # a build failure stops here
targets=()
names=()
while read -r first second _; do
	case $first in
	Fuzz*) names+=("$first") ;;
	ok)
		for n in "${names[@]}"; do targets+=("$second $n"); done
		names=()
		;;
	esac
done <<<"$listing"

if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz.sh: no fuzz targets found in ${pkgs[*]}" >&2
	exit 1
fi

# Go 1.26's fuzzing coordinator can fail a target with a bare "context
# deadline exceeded" when a duration -fuzztime ends while a worker is busy
# (golang/go#75804, fixed in Go 1.27), having found nothing. A real finding
# always writes its input ("Failing input written to"); a run that fails
# with only that message is run once more. A count budget (FUZZTIME=20000x)
# has no deadline to race and is what CI uses.
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fuzz_one() { # $1 = package, $2 = target
	# -run '^$' skips the package's ordinary tests; the seed corpus of the
	# target itself still runs first, as part of fuzzing.
	go test -run '^$' -fuzz "^${2}\$" -fuzztime "$FUZZTIME" "$1" 2>&1 | tee "$out"
	return "${PIPESTATUS[0]}"
}
deadline_flake() {
	grep -q 'context deadline exceeded' "$out" && ! grep -q -e 'Failing input written' -e 'panic:' -e '_test.go:[0-9]*:' "$out"
}

failed=()
for t in "${targets[@]}"; do
	pkg=${t% *} name=${t#* }
	echo "=== $name ($pkg, $FUZZTIME)"
	if fuzz_one "$pkg" "$name"; then
		continue
	fi
	if deadline_flake; then
		echo "=== $name: only the fuzzing engine's deadline race (golang/go#75804); once more"
		fuzz_one "$pkg" "$name" && continue
	fi
	failed+=("$name ($pkg)")
done

echo "fuzz.sh: ran ${#targets[@]} targets for $FUZZTIME each"
if [ ${#failed[@]} -gt 0 ]; then
	printf 'FAILED: %s\n' "${failed[@]}" >&2
	exit 1
fi
