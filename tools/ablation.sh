#!/bin/sh
# The ablation of issue 12: the demo-budget pipeline once per mechanism switched off, every
# row on all test users with 95% CIs and the paired difference against the best TRM.
#   tools/ablation.sh DATA.gguf OUTDIR [THREADS_PER_RUN]
# RL is left out (rl1_steps = rl2_steps = 0: the mechanisms act on the warm start; the RL rows
# come from `make demo`), and so is the rerank baseline's own warm-up. The TRMs are trained once
# (base/) and copied with their timestamps, so every variant reuses them unless it changes them.
# The variants run in parallel, THREADS_PER_RUN threads each (2); ABLATION_VARIANTS picks a subset
# by name. Results: OUTDIR/<variant>/report.md, and OUTDIR/ablation.md with every table.
set -eu
BIN=${DEEPREC_BIN:-build/deeprec}
DATA=$1
ROOT=$2
THREADS=${3:-2}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
COMMON="--budget ${ABLATION_BUDGET:-demo} --set rl1_steps=0 --set rl2_steps=0 --set rerank_warm=0 --quiet --resume"

# name | what is switched off | --set arguments
VARIANTS='full|nothing (all mechanisms on)|
blind|outcome-aware warm start (one candidate, classic preferences, no target ordering)|--set ws_best_of=1 --set ws_varied=0 --set ws_order_by_target=0
nosel|best-of-N selection (one candidate per position)|--set ws_best_of=1
noorder|target ordering of the training lists|--set ws_order_by_target=0
oldtrm|the stronger TRM (empty-preference share 0.3 as before)|--set trm_pref_empty=0.3
deeper|size: 3 layers instead of 2|--set llm_layers=3
bestof8|(switched on) best-of-8 selection by outcome, with the anchored teacher|--set ws_best_of=8'

mkdir -p "$ROOT"
echo "ablation: TRMs once in $ROOT/base" >&2
DEEPREC_THREADS=${BASE_THREADS:-$THREADS} "$BIN" pipeline --data "$DATA" --out "$ROOT/base" $COMMON --until trm_pref >&2

echo "$VARIANTS" > "$ROOT/variants.txt"
# (the loop reads a file, not a pipe: a piped loop runs in a subshell and `wait` would not see its jobs)
while IFS='|' read -r name what sets; do
  if [ -n "${ABLATION_VARIANTS:-}" ] && ! echo " $ABLATION_VARIANTS " | grep -q " $name "; then continue; fi
  d="$ROOT/$name"
  [ -d "$d" ] || cp -a "$ROOT/base" "$d"
  echo "$what" > "$d/ablation.txt"
  # shellcheck disable=SC2086
  (DEEPREC_THREADS=$THREADS "$BIN" pipeline --data "$DATA" --out "$d" $COMMON --force $sets > "$d/stdout.md" 2> "$d/log.txt";
   echo "$?" > "$d/status") &
done < "$ROOT/variants.txt"
wait

{
  echo "# Ablation on $(basename "$DATA") (demo budget without RL; all test users; 95% bootstrap CIs)"
  while IFS='|' read -r name what sets; do
    d="$ROOT/$name"
    [ -f "$d/status" ] || continue
    echo
    echo "## $name: off = $what"
    echo "settings: ${sets:-(demo defaults)}; exit status $(cat "$d/status")"
    echo
    [ -s "$d/report.md" ] && cat "$d/report.md" || tail -n 5 "$d/log.txt"
  done < "$ROOT/variants.txt"
} > "$ROOT/ablation.md"
cat "$ROOT/ablation.md"
