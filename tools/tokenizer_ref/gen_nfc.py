#!/usr/bin/env python3
"""NFC data for tools/tokenizer_ref/gen_unicode.js, as JSON on stdout:
ccc ranges, full canonical decompositions (non-Hangul), primary composition pairs."""
import json, sys, unicodedata as ud

ccc, decomp, comp = [], [], []
for cp in range(0x110000):
    if 0xD800 <= cp <= 0xDFFF or 0xAC00 <= cp <= 0xD7A3:
        continue
    ch = chr(cp)
    c = ud.combining(ch)
    if c:
        if ccc and ccc[-1][2] == c and ccc[-1][1] == cp - 1:
            ccc[-1][1] = cp
        else:
            ccc.append([cp, cp, c])
    d = ud.normalize('NFD', ch)
    if d != ch:
        decomp.append([cp, [ord(x) for x in d]])
    one = ud.decomposition(ch)
    if one and not one.startswith('<'):
        parts = [int(x, 16) for x in one.split()]
        # primary composite: a canonical pair decomposition that NFC recomposes
        if len(parts) == 2 and ud.normalize('NFC', ch) == ch and ud.normalize('NFC', chr(parts[0]) + chr(parts[1])) == ch:
            comp.append([parts[0], parts[1], cp])
comp.sort()
json.dump({'version': ud.unidata_version, 'ccc': ccc, 'decomp': decomp, 'comp': comp}, sys.stdout)
