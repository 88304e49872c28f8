#!/bin/sh
# check_layers_test.sh: check_layers.sh must catch each kind of violation on a small tree
# (the project's Makefile, a few sources) and pass the same tree without it.
set -u
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

# tree NAME: a fresh tree with the real Makefile and clean sources.
tree() {
    t=$tmp/$1
    mkdir -p "$t/src/trm" "$t/src/eval" "$t/include/deeprec"
    cp "$here/../Makefile" "$t/Makefile"
    printf '/* ok */\n#include "deeprec/trm.h"\n#include "deeprec/metrics.h"\n#include "internal.h"\n' > "$t/src/trm/a.c"
    printf '#include "deeprec/base.h"\n' > "$t/src/trm/internal.h"
    printf '#include "deeprec/trm.h"\n#include "trm/internal.h"\n' > "$t/src/eval/b.c"
    printf '#include "deeprec/base.h"\n' > "$t/include/deeprec/trm.h"
}
# expect NAME STATUS PATTERN: check_layers on tree NAME exits STATUS and prints PATTERN.
expect() {
    [ -n "${VERBOSE:-}" ] && "$here/check_layers.sh" "$tmp/$1"
    out=$("$here/check_layers.sh" "$tmp/$1" 2>&1); rc=$?
    if [ "$rc" -ne "$2" ] || ! printf '%s\n' "$out" | grep -q -- "$3"; then
        echo "check_layers_test: $1: expected exit $2 and '$3', got exit $rc:"; printf '%s\n' "$out"
        fails=$((fails + 1))
    fi
}

tree clean
printf '#include "deeprec/trm.h"\n' > "$tmp/clean/src/eval/b.c"
expect clean 0 ''

tree upward # the TRM reaching up into eval, the cycle issue 17 removed
printf '#include "deeprec/evaluate.h"\n' >> "$tmp/upward/src/trm/a.c"
expect upward 1 'src/trm/a.c:5: trm -> eval: includes deeprec/evaluate.h'

tree private # a module using another's internals, though the edge itself is allowed
expect private 1 'src/eval/b.c:2: eval -> trm: includes trm/internal.h, a private header of trm'

tree header # a public header reaching up
printf '#include "deeprec/agent.h"\n' >> "$tmp/header/include/deeprec/trm.h"
printf '#include "deeprec/trm.h"\n' > "$tmp/header/src/eval/b.c"
expect header 1 'include/deeprec/trm.h:2: trm -> agent'

tree missing
printf '#include "nowhere.h"\n' >> "$tmp/missing/src/trm/a.c"
printf '#include "deeprec/trm.h"\n' > "$tmp/missing/src/eval/b.c"
expect missing 1 'src/trm/a.c:5: includes nowhere.h, which is not beside it'

tree deps # the Makefile disagreeing with DESIGN.md
sed -i 's/^DEPS_trm *:= */&eval /' "$tmp/deps/Makefile"
printf '#include "deeprec/trm.h"\n' > "$tmp/deps/src/eval/b.c"
expect deps 1 'DEPS_trm names eval, which is not below trm'

[ "$fails" -eq 0 ] || exit 1
