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
#   1. the preference-aware TRM (trm train --model pref), its test metrics, one retrieval
#   2. warm-start trajectories on training users (agent synth, through the TRM)
#   3. tokenizer on a corpus of the catalog (the titles + categories of the first
#      $DEMO_CORPUS_USERS users' histories, `data show`)
#      and the trajectories (protocol text, prompts, tool results)
#      [synth runs before the tokenizer because the trajectories carry the protocol text]
#   4. the tiny qwen2 model (llm init, docs/llm_train.md) and its warm-up (llm sft)
#   5. evaluation of trm, rerank and deeprec on test users (eval), one full trace (recommend)
# A stage whose command this build lacks is skipped with a message (and so are the stages
# that need its output). Sizes can be changed through the environment (DEMO_*), see below.
# Later stages (RL) are appended after stage 5.
# ---------------------------------------------------------------------------------------------
W="$CACHE/demo"
mkdir -p "$W"
TRM_EPOCHS=${DEMO_TRM_EPOCHS:-4}         # preference-aware TRM epochs (batch 64)
SYNTH_USERS=${DEMO_SYNTH_USERS:-340}     # warm-start trajectories (= SFT steps at batch 1)
VOCAB=${DEMO_VOCAB:-4096}                # tokenizer vocabulary (docs/llm_train.md)
CORPUS_USERS=${DEMO_CORPUS_USERS:-200}   # users whose histories (titles, categories) go into the corpus
SFT_EPOCHS=${DEMO_SFT_EPOCHS:-1}
SFT_BATCH=${DEMO_SFT_BATCH:-1}            # batch 1: more steps for the same tokens (learnt the layout faster)
SFT_LR=${DEMO_SFT_LR:-2e-3}
EVAL_USERS=${DEMO_EVAL_USERS:-200}       # test users of each evaluated mode (~0.6 s a user per LLM mode)
EVAL_MODES=${DEMO_EVAL_MODES:-trm,rerank,deeprec}
MAX_HIST=${DEMO_MAX_HIST:-5}             # history items in the prompt (synth and eval alike)
TOOL_K=${DEMO_TOOL_K:-10}                # items per tool call (20 in the paper; 10 keeps the demo in time)
MAX_TOKENS=${DEMO_MAX_TOKENS:-384}       # generated tokens per turn in eval / recommend
CTX=${DEMO_CTX:-2048}                    # model context (llm init) and eval context cap

# OpenMP threads wait passively: on a machine shared with other jobs, spinning threads made
# the LLM 5-50x slower in our measurements (llm bench, 2 threads, load ~13); idle, it costs little.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

T0=$(date +%s)
SKIPPED=""
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
reuse() { echo "demo: reusing $1 (newer than its inputs)" >&2; }

# ---- 1. the preference-aware TRM
trm="$W/trm.gguf"
stage "1/5 preference-aware TRM"
if ! has_cmd "trm train"; then
  skip "trm train" "no 'trm train' command in this build"; trm=""
elif fresh "$trm" "$data"; then
  reuse "$trm"
  echo "-- TRM test metrics (full ranking over the catalog, history masked)"
  "$BIN" trm eval --data "$data" --model "$trm" --split test
else
  rm -f "$trm.resume.gguf"
  # (trm train ends with the test metrics of the best checkpoint)
  "$BIN" trm train --data "$data" --out "$trm" --model pref --epochs "$TRM_EPOCHS" --patience 0 --batch 64 \
    --lr 2e-3 --seed 1
fi
if [ -n "$trm" ]; then
  if has_cmd "trm retrieve"; then
    echo "-- one user's retrieval (test history; the held-out target is marked), preference 'Comedy; Romance'"
    "$BIN" trm retrieve --data "$data" --model "$trm" --index 0 --history test -k 10 --pref "Comedy; Romance"
  fi
fi

# ---- 2. warm-start trajectories
traj="$W/traj.jsonl"
stage "2/5 warm-start trajectories"
if [ -z "$trm" ]; then
  skip "agent synth" "no TRM"; traj=""
elif ! has_cmd "agent synth"; then
  skip "agent synth" "no 'agent synth' command in this build"; traj=""
elif fresh "$traj" "$trm" "$data"; then
  reuse "$traj"
else
  "$BIN" agent synth --data "$data" --trm "$trm" --out "$traj" --users "$SYNTH_USERS" --seed 1 \
    --tool-k "$TOOL_K" --max-hist "$MAX_HIST"
fi

# ---- 3. tokenizer
tok="$W/tok.gguf"
corpus="$W/corpus.txt"
stage "3/5 tokenizer"
if [ -z "$traj" ]; then
  skip "llm train-tokenizer" "no trajectories"; tok=""
elif ! has_cmd "llm train-tokenizer"; then
  skip "llm train-tokenizer" "no 'llm train-tokenizer' command in this build"; tok=""
elif fresh "$tok" "$traj" "$data"; then
  reuse "$tok"
else
  n_users=$("$BIN" data stats "$data" | awk '$1 == "users" { print $2 }')
  [ "$n_users" -gt "$CORPUS_USERS" ] && n_users=$CORPUS_USERS
  echo "demo: building the tokenizer corpus $corpus (titles and categories of $n_users users' histories + the trajectories)" >&2
  {
    i=0
    while [ "$i" -lt "$n_users" ]; do
      "$BIN" data show "$data" --index "$i" | sed -e '1d' -e 's/^ *[0-9]*\. \[[a-z]*\] //' -e 's/  (id [0-9]*, t=[0-9-]*)$//' \
        -e 's/^ *- categories/  - categories/'
      i=$((i + 1))
    done
    # JSON lines -> text: the escapes jansson writes for newlines, quotes and backslashes
    sed -e 's/\\n/\n/g' -e 's/\\"/"/g' -e 's/\\\\/\\/g' "$traj"
  } > "$corpus.tmp" && mv "$corpus.tmp" "$corpus"
  "$BIN" llm train-tokenizer --corpus "$corpus" --vocab-size "$VOCAB" --out "$tok"
fi

# ---- 4. tiny model and warm-up
tiny0="$W/tiny0.gguf"
tiny="$W/tiny_sft.gguf"
stage "4/5 tiny model: init and warm-up (SFT on the trajectories)"
if [ -z "$tok" ]; then
  skip "llm init" "no tokenizer"; tiny0=""
elif ! has_cmd "llm init"; then
  skip "llm init" "no 'llm init' command in this build"; tiny0=""
elif fresh "$tiny0" "$tok"; then
  reuse "$tiny0"
else
  "$BIN" llm init --arch qwen2 --dim 256 --layers 4 --heads 4 --kv-heads 2 --ffn 768 --vocab-from "$tok" \
    --context "$CTX" --std 0.02 --seed 1 --out "$tiny0"
fi
if [ -z "$tiny0" ]; then
  skip "llm sft" "no initial model"; tiny=""
elif ! has_cmd "llm sft"; then
  skip "llm sft" "no 'llm sft' command in this build"; tiny=""
elif fresh "$tiny" "$tiny0" "$traj"; then
  reuse "$tiny"
else
  "$BIN" llm sft --model "$tiny0" --data "$traj" --out "$tiny" --epochs "$SFT_EPOCHS" --batch "$SFT_BATCH" \
    --lr "$SFT_LR" --max-len "$CTX" --seed 1 --metrics "$W/sft.metrics.jsonl"
fi

# ---- 5. evaluation and one trace
stage "5/5 evaluation ($EVAL_MODES on $EVAL_USERS test users) and one trace"
if [ -z "$trm" ]; then
  skip "eval" "no TRM"
elif ! has_cmd "eval"; then
  skip "eval" "no 'eval' command in this build"
else
  modes=$EVAL_MODES
  if [ -z "$tiny" ]; then
    modes=trm
    skip "eval rerank/deeprec" "no warmed-up model (only the trm baseline is evaluated)"
  fi
  table="$W/eval_table.txt"
  if fresh "$table" "$trm" ${tiny:+"$tiny"} "$data" && [ "$(cat "$W/eval_table.key" 2>/dev/null)" = "$modes $EVAL_USERS $MAX_HIST $TOOL_K $MAX_TOKENS" ]; then
    reuse "$table"
  else
    "$BIN" eval --data "$data" --trm "$trm" ${tiny:+--llm "$tiny"} --mode "$modes" --users "$EVAL_USERS" --seed 1 \
      --temp 0 --max-hist "$MAX_HIST" --tool-k "$TOOL_K" --max-tokens "$MAX_TOKENS" --ctx "$CTX" > "$table.tmp"
    mv "$table.tmp" "$table"
    echo "$modes $EVAL_USERS $MAX_HIST $TOOL_K $MAX_TOKENS" > "$W/eval_table.key"
  fi
  cat "$table"
fi
if [ -n "$tiny" ] && [ -n "$trm" ]; then
  if has_cmd "recommend"; then
    echo "-- one full trace (user #0, test split)"
    "$BIN" recommend --data "$data" --trm "$trm" --llm "$tiny" --user "#0" --temp 0 --max-hist "$MAX_HIST" \
      --tool-k "$TOOL_K" --max-tokens "$MAX_TOKENS" --ctx "$CTX"
  else
    skip "recommend" "no 'recommend' command in this build"
  fi
fi

echo
echo "==== demo: done in $(( $(date +%s) - T0 )) s (pipeline after the data import; artifacts in $W)"
if [ -n "$SKIPPED" ]; then
  echo "skipped stages:$SKIPPED"
fi
