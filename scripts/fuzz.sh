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

failed=()
for t in "${targets[@]}"; do
	pkg=${t% *} name=${t#* }
	echo "=== $name ($pkg, $FUZZTIME)"
	# -run '^$' skips the package's ordinary tests; the seed corpus of the
	# target itself still runs first, as part of fuzzing.
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg"; then
		failed+=("$name ($pkg)")
	fi
done

echo "fuzz.sh: ran ${#targets[@]} targets for $FUZZTIME each"
if [ ${#failed[@]} -gt 0 ]; then
	printf 'FAILED: %s\n' "${failed[@]}" >&2
	exit 1
fi
