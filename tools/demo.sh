#!/bin/sh
# make demo: the main job on the embedded default dataset (MovieLens from Debian's r-cran-dslabs).
# Steps so far: fetch the package into cache/, unpack it, import the `movielens` data frame
# into cache/movielens.gguf (reused when present), print its statistics.
set -eu
cd "$(dirname "$0")/.."
BIN=${DEEPREC_BIN:-build/deeprec}
CACHE=${DEEPREC_CACHE:-cache}
mkdir -p "$CACHE"

deb=$(ls "$CACHE"/r-cran-dslabs_*_all.deb 2>/dev/null | head -n 1 || true)
if [ -z "$deb" ]; then
  echo "demo: fetching r-cran-dslabs (MovieLens data frame) with apt-get download" >&2
  if ! (cd "$CACHE" && apt-get download r-cran-dslabs >&2); then
    echo "demo: error: 'apt-get download r-cran-dslabs' failed (no network or no Debian package index)." >&2
    echo "  Put r-cran-dslabs_*_all.deb into $CACHE/ by hand (or run 'apt-get update' first) and rerun make demo." >&2
    exit 1
  fi
  deb=$(ls "$CACHE"/r-cran-dslabs_*_all.deb | head -n 1)
fi

pkg="$CACHE/dslabs_pkg"
if [ ! -f "$pkg/usr/lib/R/site-library/dslabs/data/Rdata.rdx" ]; then
  echo "demo: unpacking $deb" >&2
  rm -rf "$pkg.tmp" && mkdir -p "$pkg.tmp"
  dpkg-deb -x "$deb" "$pkg.tmp"
  rm -rf "$pkg" && mv "$pkg.tmp" "$pkg"
fi

data="$CACHE/movielens.gguf"
if [ ! -f "$data" ]; then
  "$BIN" data import --format dslabs --input "$pkg" --out "$data"
else
  echo "demo: reusing $data" >&2
fi
"$BIN" data stats "$data"


# ---------------------------------------------------------------------------------------------
# The DeepRec pipeline on the imported data (artifacts in $CACHE/demo/, reused on reruns: a
# stage runs again only when its output is missing or older than one of its inputs).
#   1. the preference-aware TRM (trm train --model pref --batch 64), its test metrics
#   2. warm-start trajectories on all training users (agent synth, through the TRM), 3 seeds
#   3. tokenizer (4k BPE) on a corpus of trajectories (protocol text, titles, categories)
#   4. the tiny qwen2 model (d=128, 2 layers) and its warm-up: SFT in two runs (docs/warmstart.md)
#   5. evaluation before RL: trm, rerank, deeprec (eval --json on the same seeded test users)
#   6. RL stage 1 (tool use) then stage 2 (recommendation), docs/rl.md
#   7. evaluation after RL (deeprec), the four-row table, the reward curve, one full trace
# A stage whose command this build lacks is skipped with a message (and so are the stages
# that need its output). Sizes can be changed through the environment (DEMO_*), see below.
# Per-stage wall and CPU times go to $CACHE/demo/times.txt (when /usr/bin/time exists).
# ---------------------------------------------------------------------------------------------
W="$CACHE/demo"
mkdir -p "$W"
TRM_EPOCHS=${DEMO_TRM_EPOCHS:-12}        # preference-aware TRM: at most this many epochs (batch 64)
TRM_PATIENCE=${DEMO_TRM_PATIENCE:-3}     # early stop after this many epochs without valid gain
SYNTH_SEEDS=${DEMO_SYNTH_SEEDS:-"1 3 4 5 6 7 8"} # one synth run (all 671 training users) per seed (docs/demo.md)
VOCAB=${DEMO_VOCAB:-4096}                # tokenizer vocabulary (docs/llm_train.md)
SFT_LR1=${DEMO_SFT_LR1:-3e-3}            # SFT run 1 (all seeds but the last), batch 4
SFT_LR2=${DEMO_SFT_LR2:-1e-3}            # SFT run 2 (the last seed), from run 1's model
SFT_BATCH=${DEMO_SFT_BATCH:-4}
SFT_MAXLEN=${DEMO_SFT_MAXLEN:-1536}      # covers every trajectory at tool-k 10 / 10 history items
EVAL_USERS=${DEMO_EVAL_USERS:-100}       # test users of each evaluated mode (seeded selection)
MAX_HIST=${DEMO_MAX_HIST:-10}            # history items in the prompt (synth, eval, rl alike)
TOOL_K=${DEMO_TOOL_K:-10}                # items per tool call (20 in the paper; 10 keeps the demo in time)
MAX_TOKENS=${DEMO_MAX_TOKENS:-384}       # generated tokens per turn in eval / recommend / rl
CTX=${DEMO_CTX:-2048}                    # model context (llm init) and eval / rl context cap
RERANK_SHARE=${DEMO_RERANK_SHARE:-0}     # share of the LAST seed's trajectories in the rerank form (docs/demo.md)
RERANK_WARM=${DEMO_RERANK_WARM:-0.5}     # the rerank baseline's own SFT run 2: this share in the rerank form (0 = use the agent's model)
RL1_STEPS=${DEMO_RL1_STEPS:-8}           # RL stage 1 steps
RL2_STEPS=${DEMO_RL2_STEPS:-12}          # RL stage 2 steps
RL_PROMPTS=${DEMO_RL_PROMPTS:-8}         # users per RL step
RL_SAMPLES=${DEMO_RL_SAMPLES:-4}         # samples per user (group size)
RL_LR1=${DEMO_RL_LR1:-1e-4}              # stage 1 learning rate (docs/rl.md: tiny-model settings)
RL_LR2=${DEMO_RL_LR2:-5e-5}              # stage 2 learning rate
RL_PROBE=${DEMO_RL_PROBE:-32}            # held-out probe users, scored before step 1 and after each step
RL_PROBE1=${DEMO_RL_PROBE1:-"0 1"}       # stage 1 probe: temperature, episodes per user (greedy)
RL_PROBE2=${DEMO_RL_PROBE2:-"1 4"}       # stage 2 probe: sampled like the rollouts, 4 episodes per user

# OpenMP threads wait passively: on a machine shared with other jobs, spinning threads made
# the LLM 5-50x slower in our measurements (llm bench, 2 threads, load ~13); idle, it costs little.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

command -v jq >/dev/null 2>&1 || { echo "demo: error: jq is needed (apt-get install jq)" >&2; exit 1; }
T0=$(date +%s)
SKIPPED=""
TIMES="$W/times.txt"
stage() { echo; echo "==== demo: $* ($(( $(date +%s) - T0 )) s so far)"; }
skip() { echo "demo: SKIPPED $1: $2" >&2; SKIPPED="$SKIPPED
  - $1: $2"; }
# has_cmd "llm sft": the build lists the command in `deeprec --help`
has_cmd() { "$BIN" --help 2>&1 | grep -q "^  $1  "; }
# fresh OUT IN...: OUT exists, is not empty, and is newer than every IN
fresh() {
  out=$1; shift
  [ -s "$out" ] || return 1
  for in_ in "$@"; do [ "$out" -nt "$in_" ] || return 1; done
  return 0
}
# keyed OUT KEY: OUT was made with these settings (OUT.key holds them; settings = DEMO_* values)
keyed() { [ "$(cat "$1.key" 2>/dev/null)" = "$2" ]; }
setkey() { echo "$2" > "$1.key"; }
reuse() { echo "demo: reusing $1 (newer than its inputs)" >&2; }
# timed LABEL CMD...: run CMD, append its wall / CPU seconds to $TIMES
timed() {
  label=$1; shift
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -a -o "$TIMES" -f "$label	%e s wall	%U s user	%S s sys" "$@"
  else
    "$@"
  fi
}

# synth_run LABEL OUT SEED SHARE: agent synth on all training users (SHARE of them in the rerank
# form), reused when OUT is newer than the TRM and data and was made with these settings
synth_run() {
  key="synth $TOOL_K $MAX_HIST $4"
  if fresh "$2" "$trm" "$data" && keyed "$2" "$key"; then reuse "$2"; return 0; fi
  timed "$1" "$BIN" agent synth --data "$data" --trm "$trm" --out "$2" --users 0 --seed "$3" \
    --tool-k "$TOOL_K" --max-hist "$MAX_HIST" --rerank-share "$4" --quiet
  setkey "$2" "$key"
}
# sft_run LABEL MODEL OUT LR TRAJ...: one epoch of llm sft from MODEL on the trajectories
# (concatenated when several), reused when OUT is newer than its inputs and made with these settings
sft_run() {
  label=$1; model=$2; out=$3; lr=$4; shift 4
  key="sft $lr $SFT_BATCH $SFT_MAXLEN"
  if fresh "$out" "$model" "$@" && keyed "$out" "$key"; then reuse "$out"; return 0; fi
  sft_data=$1
  if [ $# -gt 1 ]; then sft_data="$W/traj_$label.jsonl"; cat "$@" > "$sft_data"; fi
  timed "$label" "$BIN" llm sft --model "$model" --data "$sft_data" --out "$out" --epochs 1 \
    --batch "$SFT_BATCH" --lr "$lr" --max-len "$SFT_MAXLEN" --seed 1 --metrics "$W/$label.metrics.jsonl"
  setkey "$out" "$key"
}

# ---- 1. the preference-aware TRM
trm="$W/trm.gguf"
stage "1/7 preference-aware TRM"
if ! has_cmd "trm train"; then
  skip "trm train" "no 'trm train' command in this build"; trm=""
elif fresh "$trm" "$data"; then
  reuse "$trm"
  echo "-- TRM test metrics (full ranking over the catalog, history masked)"
  "$BIN" trm eval --data "$data" --model "$trm" --split test
else
  rm -f "$trm.resume.gguf"
  # (trm train ends with the test metrics of the best checkpoint)
  timed trm_train "$BIN" trm train --data "$data" --out "$trm" --model pref --epochs "$TRM_EPOCHS" \
    --patience "$TRM_PATIENCE" --batch 64 --seed 1
fi
if [ -n "$trm" ] && has_cmd "trm retrieve"; then
  echo "-- one user's retrieval (test history; the held-out target is marked), preference 'Comedy; Romance'"
  "$BIN" trm retrieve --data "$data" --model "$trm" --index 0 --history test -k 10 --pref "Comedy; Romance"
fi

# ---- 2. warm-start trajectories (one file per seed; the last seed feeds SFT run 2)
stage "2/7 warm-start trajectories (seeds $SYNTH_SEEDS, all training users)"
trajs=""
if [ -z "$trm" ]; then
  skip "agent synth" "no TRM"
elif ! has_cmd "agent synth"; then
  skip "agent synth" "no 'agent synth' command in this build"
else
  last_seed=""
  for s in $SYNTH_SEEDS; do last_seed=$s; done
  for s in $SYNTH_SEEDS; do
    t="$W/traj_s$s.jsonl"
    # rerank-form examples only in the last seed (SFT run 2): in run 1 they cost format validity
    share=0
    [ "$s" = "$last_seed" ] && share=$RERANK_SHARE
    synth_run "synth_s$s" "$t" "$s" "$share"
    trajs="$trajs $t"
  done
fi
traj_last=""; traj_first=""
for t in $trajs; do traj_last=$t; done
for t in $trajs; do [ "$t" != "$traj_last" ] && traj_first="$traj_first $t"; done

# ---- 3. tokenizer
tok="$W/tok.gguf"
corpus="$W/corpus.txt"
stage "3/7 tokenizer"
if [ -z "$trajs" ]; then
  skip "llm train-tokenizer" "no trajectories"; tok=""
elif ! has_cmd "llm train-tokenizer"; then
  skip "llm train-tokenizer" "no 'llm train-tokenizer' command in this build"; tok=""
elif fresh "$tok" $trajs "$data"; then
  reuse "$tok"
else
  # corpus: the text (prompt + completion) of the first seed's trajectories plus one synth run
  # with 20 history items and 20 items per call, for more titles (docs/warmstart.md)
  set -- $trajs
  "$BIN" agent synth --data "$data" --trm "$trm" --out "$W/traj_corpus.jsonl" --users 0 --seed 2 --quiet
  jq -r '.prompt + .completion' "$W/traj_corpus.jsonl" "$1" > "$corpus.tmp" && mv "$corpus.tmp" "$corpus"
  timed tokenizer "$BIN" llm train-tokenizer --corpus "$corpus" --vocab-size "$VOCAB" --out "$tok"
fi

# ---- 4. tiny model and warm-up
tiny0="$W/tiny0.gguf"
tiny1="$W/tiny_sft1.gguf"
tiny="$W/tiny_sft.gguf"
stage "4/7 tiny model: init and warm-up (SFT on the trajectories, two runs; run 2 again for the rerank baseline)"
if [ -z "$tok" ]; then
  skip "llm init" "no tokenizer"; tiny0=""
elif ! has_cmd "llm init"; then
  skip "llm init" "no 'llm init' command in this build"; tiny0=""
elif fresh "$tiny0" "$tok"; then
  reuse "$tiny0"
else
  "$BIN" llm init --arch qwen2 --dim 128 --layers 2 --heads 2 --kv-heads 1 --ffn 384 --vocab-from "$tok" \
    --context "$CTX" --std 0.02 --seed 1 --out "$tiny0"
fi
if [ -z "$tiny0" ]; then
  skip "llm sft" "no initial model"; tiny=""
elif ! has_cmd "llm sft"; then
  skip "llm sft" "no 'llm sft' command in this build"; tiny=""
else
  # run 1: lr 3e-3 over all seeds but the last (6 x 671 trajectories, 1007 steps of 4)
  if [ -z "$traj_first" ]; then
    tiny1=$tiny0   # one seed only: run 2 alone
  else
    sft_run sft1 "$tiny0" "$tiny1" "$SFT_LR1" $traj_first
  fi
  # run 2: lr 1e-3 on fresh trajectories (the last seed, 168 steps of 4)
  sft_run sft2 "$tiny1" "$tiny" "$SFT_LR2" "$traj_last"
fi
# the rerank baseline's model: SFT run 2 again from run 1's model, on the last seed written with
# RERANK_WARM of its users in the rerank form (one forced call, then the answer), so the
# baseline is measured with a model that has seen its prompt shape; the agent is not touched
tiny_rr=$tiny
if [ -n "$tiny" ] && [ -n "$trajs" ] && [ "$RERANK_WARM" != 0 ]; then
  tiny_rr="$W/tiny_sft_rerank.gguf"
  seed_rr=${traj_last##*_s}; seed_rr=${seed_rr%.jsonl}
  traj_rr="$W/traj_rerank_s$seed_rr.jsonl"
  synth_run synth_rerank "$traj_rr" "$seed_rr" "$RERANK_WARM"
  sft_run sft2_rerank "$tiny1" "$tiny_rr" "$SFT_LR2" "$traj_rr"
fi

# eval_json OUT MODE [LLM]: deeprec eval --json on the demo's test users, reused when fresh
EVAL_KEY="$EVAL_USERS $MAX_HIST $TOOL_K $MAX_TOKENS $CTX"
eval_json() {
  out=$1; mode=$2; llm=${3:-}
  if fresh "$out" "$trm" "$data" ${llm:+"$llm"} && keyed "$out" "$EVAL_KEY"; then
    reuse "$out"; return 0
  fi
  timed "eval_$(basename "$out" .json)" "$BIN" eval --data "$data" --trm "$trm" ${llm:+--llm "$llm"} --mode "$mode" \
    --users "$EVAL_USERS" --seed 1 --temp 0 --max-hist "$MAX_HIST" --tool-k "$TOOL_K" --max-tokens "$MAX_TOKENS" \
    --ctx "$CTX" --json > "$out.tmp"
  mv "$out.tmp" "$out"
  setkey "$out" "$EVAL_KEY"
}

# ---- 5. evaluation before RL
stage "5/7 evaluation before RL (trm, rerank, deeprec on $EVAL_USERS test users)"
if [ -z "$trm" ]; then
  skip "eval" "no TRM"
elif ! has_cmd "eval"; then
  skip "eval" "no 'eval' command in this build"
else
  eval_json "$W/eval_trm.json" trm
  if [ -n "$tiny" ]; then
    eval_json "$W/eval_rerank.json" rerank "$tiny_rr"
    eval_json "$W/eval_deeprec_warm.json" deeprec "$tiny"
  else
    skip "eval rerank/deeprec" "no warmed-up model (only the trm baseline is evaluated)"
  fi
fi

# ---- 6. RL: stage 1 then stage 2
# rl_stage N IN OUT STEPS LR "PROBE_TEMP PROBE_SAMPLES": deeprec rl, reused when OUT is newer than its inputs; an interrupted
# run continues (--resume) unless its checkpoint is older than the inputs
rl_stage() {
  n=$1; in_=$2; out=$3; steps=$4; lr=$5
  set -- $6
  ptemp=$1; psamples=$2
  key="rl $n $steps $lr $RL_PROMPTS $RL_SAMPLES $RL_PROBE $ptemp $psamples $CTX $MAX_HIST $TOOL_K $MAX_TOKENS"
  if fresh "$out" "$in_" "$trm" "$data" && keyed "$out" "$key"; then
    reuse "$out"; return 0
  fi
  ck="${out%.gguf}.ckpt.json"
  # a checkpoint of other inputs or settings is dropped (--resume would refuse or mix runs)
  if [ -f "$ck" ] && { ! fresh "$ck" "$in_" "$trm" "$data" || ! keyed "$out" "$key"; }; then rm -f "$ck"; fi
  rm -f "$out"; setkey "$out" "$key"
  timed "rl_stage$n" "$BIN" rl --stage "$n" --data "$data" --trm "$trm" --llm "$in_" --out "$out" \
    --steps "$steps" --prompts "$RL_PROMPTS" --samples "$RL_SAMPLES" --lr "$lr" --updates 1 --micro 2 --seed 1 \
    --probe "$RL_PROBE" --probe-temp "$ptemp" --probe-samples "$psamples" --ctx "$CTX" --max-hist "$MAX_HIST" --tool-k "$TOOL_K" --max-tokens "$MAX_TOKENS" --resume
}
pol1="$W/policy1.gguf"
pol2="$W/policy2.gguf"
stage "6/7 RL stage 1 ($RL1_STEPS steps) and stage 2 ($RL2_STEPS steps), $RL_PROMPTS users x $RL_SAMPLES samples"
if [ -z "$tiny" ]; then
  skip "rl" "no warmed-up model"; pol2=""
elif ! has_cmd "rl"; then
  skip "rl" "no 'rl' command in this build"; pol2=""
else
  rl_stage 1 "$tiny" "$pol1" "$RL1_STEPS" "$RL_LR1" "$RL_PROBE1"
  # the stage-1 policy on the evaluation users: tool calls and format before stage 2
  [ -s "$pol1" ] && eval_json "$W/eval_deeprec_rl1.json" deeprec "$pol1"
  rl_stage 2 "$pol1" "$pol2" "$RL2_STEPS" "$RL_LR2" "$RL_PROBE2"
  echo "-- RL steps (${pol1%.gguf}.metrics.jsonl, ${pol2%.gguf}.metrics.jsonl)"
  echo "   batch: this step's $RL_PROMPTS users x $RL_SAMPLES samples (temperature 1; other users every step);"
  echo "   probe: the same $RL_PROBE held-out users every time, after the step (step 0: before the stage);"
  echo "   stage 1 (temperature, episodes per user): $RL_PROBE1; stage 2: $RL_PROBE2 (same sampling seeds each time)"
  printf '%-6s %-4s | %8s %6s %6s %6s %9s %9s | %8s %6s %6s %6s | %6s\n' stage step reward valid calls hit listwise \
    pointwise probe valid calls hit cpu_s
  for m in "${pol1%.gguf}.metrics.jsonl" "${pol2%.gguf}.metrics.jsonl"; do
    jq -r 'def f3: if . == null then "-" else (. * 1000 | round / 1000 | tostring) end;
           (if .probe_start then [.stage, 0, "-", "-", "-", "-", "-", "-", (.probe_start.reward | f3),
              (.probe_start.valid_rate | f3), (.probe_start.mean_calls | f3), (.probe_start.hit_rate | f3), "-"]
            else empty end),
           [.stage, .step, (.reward | f3), (.valid_rate | f3), (.mean_calls | f3), (.hit_rate | f3), (.listwise | f3),
            (.pointwise | f3), (.probe.reward | f3), (.probe.valid_rate | f3), (.probe.mean_calls | f3),
            (.probe.hit_rate | f3), ((.rollout_cpu_s + .update_cpu_s) * 10 | round / 10)] | @tsv' "$m" |
      awk -F'\t' '{ printf "%-6s %-4s | %8s %6s %6s %6s %9s %9s | %8s %6s %6s %6s | %6s\n",
                   $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 }'
  done
  echo "reward curve (both stages): ${pol2%.gguf}.rewards.svg"
fi

# ---- 7. evaluation after RL, the table, one trace
stage "7/7 evaluation after RL, the table and one trace"
if [ -n "$pol2" ] && [ -n "$trm" ] && has_cmd "eval"; then
  eval_json "$W/eval_deeprec_rl.json" deeprec "$pol2"
fi
echo "-- $EVAL_USERS test users (seed 1, greedy), exact-title resolution; failures count as misses"
printf '%-22s %8s %8s %8s %8s %8s %8s %8s %6s\n' row R@1 R@5 R@10 NDCG@5 NDCG@10 MRR valid calls
for row in "trm:eval_trm" "rerank:eval_rerank" "deeprec before RL:eval_deeprec_warm" \
           "deeprec after RL st.1:eval_deeprec_rl1" "deeprec after RL:eval_deeprec_rl"; do
  f="$W/${row#*:}.json"
  [ -s "$f" ] || continue
  jq -r '[.metrics.exact["recall@1"], .metrics.exact["recall@5"], .metrics.exact["recall@10"],
          .metrics.exact["ndcg@5"], .metrics.exact["ndcg@10"], .metrics.exact.mrr,
          (.format_valid_rate // "-"), (.mean_tool_calls // "-")] | @tsv' "$f" |
    awk -F'\t' -v name="${row%%:*}" '{ printf "%-22s %8.4f %8.4f %8.4f %8.4f %8.4f %8.4f %8s %6s\n",
                                       name, $1, $2, $3, $4, $5, $6,
                                       ($7 == "-" ? "-" : sprintf("%.3f", $7)), ($8 == "-" ? "-" : sprintf("%.2f", $8)) }'
done
final=${pol2:-$tiny}
if [ -n "$final" ] && [ -n "$trm" ] && has_cmd "recommend"; then
  echo "-- one full trace (user #0, test split, $(basename "$final"))"
  "$BIN" recommend --data "$data" --trm "$trm" --llm "$final" --user "#0" --temp 0 --max-hist "$MAX_HIST" \
    --tool-k "$TOOL_K" --max-tokens "$MAX_TOKENS" --ctx "$CTX"
fi

echo
echo "==== demo: done in $(( $(date +%s) - T0 )) s (pipeline after the data import; artifacts in $W)"
[ -s "$TIMES" ] && { echo "-- per-command times ($TIMES)"; cat "$TIMES"; }
if [ -n "$pol2" ] && [ -s "${pol2%.gguf}.rewards.svg" ]; then
  echo "reward curve: ${pol2%.gguf}.rewards.svg (steps as JSON lines: ${pol1%.gguf}.metrics.jsonl, ${pol2%.gguf}.metrics.jsonl)"
fi
if [ -n "$SKIPPED" ]; then
  echo "skipped stages:$SKIPPED"
fi
