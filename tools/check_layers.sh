#!/bin/sh
# check_layers.sh [ROOT]: fails when a module reaches up or sideways against the layering.
#
# Two sources must agree, and the code must obey both:
#   - the levels of ../shared/DESIGN.md section 2, copied in LEVELS below:
#       cli -> (serve, pipeline) -> (eval, rl) -> agent -> (llm, trm, text, data) -> (nn, gguf) -> base
#     (pipeline is not named there; it orchestrates eval and rl, so it sits with serve);
#   - the Makefile's MODULES (higher first) and DEPS_<module> (what a module's tests link with).
# Every DEPS_m entry must be on a lower level than m, or on the same level and after m in
# MODULES (llm uses text, trm uses data: the order keeps such sideways edges acyclic).
# Every #include "..." in src/<m>/ and in include/deeprec/ must name m itself or one of DEPS_m
# (the CLI may use every module), and a module's private headers (src/<m>/*.h) are for m alone.
# Prints FILE:LINE: what is wrong, for each violation, and exits 1 if there was any.
set -eu
root=${1:-.}
[ -f "$root/Makefile" ] || { echo "check_layers: no Makefile in $root" >&2; exit 2; }

# Level of each module (0 = bottom), from DESIGN.md section 2.
LEVELS="base=0 nn=1 gguf=1 llm=2 trm=2 text=2 data=2 agent=3 eval=4 rl=4 serve=5 pipeline=5 cli=6"
# Public headers whose name is not their module's.
HEADERS="dist=base evaluate=eval metrics=data tokenizer=text llm_train=llm"

files=$( (find "$root/src" -name '*.[ch]'; [ -d "$root/include/deeprec" ] && find "$root/include/deeprec" -name '*.h') | sort)
# shellcheck disable=SC2086
awk -v root="$root" -v levels="$LEVELS" -v headers="$HEADERS" '
function fail(where, msg) { print where ": " msg; bad = 1 }
function words(s, arr,    n, i, kv, out) { n = split(s, kv, " "); for (i = 1; i <= n; i++) { split(kv[i], out, "="); arr[out[1]] = out[2] } }
BEGIN { words(levels, level); words(headers, hdr_owner); bad = 0 }
FILENAME ~ /Makefile$/ {
    if ($0 ~ /^MODULES[ \t]*:=/) {
        sub(/^MODULES[ \t]*:=[ \t]*/, ""); nmod = split($0, mods, /[ \t]+/)
        for (i = 1; i <= nmod; i++) { order[mods[i]] = i; if (!(mods[i] in level)) fail("Makefile:" FNR, "module " mods[i] " has no level in tools/check_layers.sh (DESIGN.md section 2)") }
    } else if ($0 ~ /^DEPS_[a-z_]+[ \t]*:=/) {
        m = $0; sub(/^DEPS_/, "", m); sub(/[ \t]*:=.*/, "", m)
        rest = $0; sub(/^[^=]*=[ \t]*/, "", rest)
        has_deps[m] = 1; deps_line[m] = FNR
        n = split(rest, ds, /[ \t]+/)
        for (i = 1; i <= n; i++) if (ds[i] != "") { allowed[m, ds[i]] = 1; dep_list[m] = dep_list[m] " " ds[i] }
    }
    next
}
{
    file = FILENAME; rel = substr(file, length(root) + 2)
    if (rel ~ /^src\//) { m = rel; sub(/^src\//, "", m); sub(/\/.*/, "", m); dir = file; sub(/\/[^\/]*$/, "", dir) }
    else { h = rel; sub(/^.*\//, "", h); sub(/\.h$/, "", h); m = (h in hdr_owner) ? hdr_owner[h] : h; dir = "" }
    if (!(m in level)) { if (FNR == 1) fail(rel, "belongs to no module of the Makefile"); next }
    if ($0 !~ /^[ \t]*#[ \t]*include[ \t]*"/) next
    inc = $0; sub(/^[^"]*"/, "", inc); sub(/".*/, "", inc)
    if (inc ~ /^deeprec\//) {
        h = inc; sub(/^deeprec\//, "", h); sub(/\.h$/, "", h)
        t = (h in hdr_owner) ? hdr_owner[h] : h
        if (!(t in level)) { fail(rel ":" FNR, "includes " inc ", a header of no known module"); next }
    } else if (inc ~ /\//) {
        t = inc; sub(/\/.*/, "", t)
        if (!(t in level)) { fail(rel ":" FNR, "includes " inc ", which is in no module"); next }
        if (t != m) { fail(rel ":" FNR, m " -> " t ": includes " inc ", a private header of " t); next }
    } else {
        if (dir == "" || system("test -f \"" dir "/" inc "\"") != 0) fail(rel ":" FNR, "includes " inc ", which is not beside it")
        next
    }
    if (t == m || m == "cli" || (m, t) in allowed) next
    fail(rel ":" FNR, m " -> " t ": includes " inc "; " m " may use only" (m in dep_list ? dep_list[m] : " itself") " (Makefile DEPS_" m ")")
}
END {
    for (m in has_deps) for (k = 1; k <= nmod; k++) {
        d = mods[k]
        if (!((m, d) in allowed)) continue
        if (level[d] > level[m] || (level[d] == level[m] && order[d] <= order[m]))
            fail("Makefile:" deps_line[m], "DEPS_" m " names " d ", which is not below " m " in DESIGN.md section 2")
    }
    exit bad
}
' "$root/Makefile" $files
