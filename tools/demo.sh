#!/bin/sh
# make demo: the main job on the embedded default dataset (MovieLens from Debian's r-cran-dslabs).
# This script only gets the data: fetch the package into cache/, unpack it, import the
# `movielens` data frame into cache/movielens.gguf (reused when present). The method itself is
# one command, `deeprec pipeline` (docs/pipeline.md), whose outputs in cache/demo/ are reused
# on reruns; the table it prints is cache/demo/report.md.
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

# The whole method (TRMs, warm start, tokenizer, tiny model, SFT, RL stages 1 and 2, evaluation
# on all test users, report); --resume continues a stage that an earlier run left unfinished;
# --force rebuilds the stages whose settings changed since the last run (a newer checkout's
# defaults) and reuses the others: cache/demo belongs to the demo.
# DEMO_BUDGET=full runs the longer recipe (docs/pipeline.md).
W="$CACHE/demo"
# a cache/demo of the earlier shell demo has no pipeline keys (the pipeline would refuse it):
# sasrec.gguf is the pipeline's first output, which that script never made
if [ -d "$W" ] && [ ! -e "$W/sasrec.gguf.key" ] && [ ! -e "$W/sasrec.gguf.pending" ]; then
  echo "demo: moving the earlier script's $W aside to $W.pre-pipeline" >&2
  rm -rf "$W.pre-pipeline" && mv "$W" "$W.pre-pipeline"
fi
exec "$BIN" pipeline --data "$data" --out "$W" --budget "${DEMO_BUDGET:-demo}" --resume --force
