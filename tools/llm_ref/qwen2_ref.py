#!/usr/bin/env python3
"""PyTorch reference for deeprec's LLM forward (qwen2, qwen3 and llama 2 / 3), written from the math.

No Hugging Face code: the transformer below follows DESIGN.md section 5 / include/deeprec/llm.h
(RMSNorm, RoPE with NEOX or adjacent pairing, GQA causal attention, SwiGLU MLP, tied or separate
output), computed in float64.

Two modes:
  gen    generate a tiny random model from a seed, write it as an F32 GGUF (own minimal writer)
         and the expected logits for a few token sequences:
           qwen2_ref.py gen --arch qwen2 --out tests/fixtures/llm/qwen2_tiny
         writes qwen2_tiny.gguf.fixture and qwen2_tiny.ref (see write_ref for the layout).
  eval   read a GGUF written by `deeprec llm init --type f32` (own minimal reader) and write the
         expected logits for random token sequences:
           qwen2_ref.py eval --model M.gguf --out M.ref [--seed S]

Reference file layout (little endian): b"LREF", int32 n_seqs, int32 vocab, then per sequence
int32 len, int32 tokens[len], float32 logits[len][vocab] (logits after each prefix).

Run with Debian's python3-torch (/usr/bin/python3).
"""
import argparse
import struct
import sys

import numpy as np
import torch

GGUF_MAGIC = b"GGUF"
T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = 4, 5, 6, 7, 8, 9, 10, 11, 12
GGML_F32, GGML_F16 = 0, 1


# ---------------------------------------------------------------- GGUF writer / reader
def _gstr(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def write_gguf(path, kvs, tensors, alignment=32):
    """kvs: list of (key, type, value); tensors: list of (name, np.float32 array) where the
    array's numpy shape is (out, in) i.e. reversed GGUF ne."""
    out = bytearray()
    out += GGUF_MAGIC + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, typ, val in kvs:
        out += _gstr(key) + struct.pack("<I", typ)
        if typ == T_U32:
            out += struct.pack("<I", val)
        elif typ == T_F32:
            out += struct.pack("<f", val)
        elif typ == T_STR:
            out += _gstr(val)
        elif typ == T_BOOL:
            out += struct.pack("<B", 1 if val else 0)
        else:
            raise ValueError(typ)
    offset = 0
    blobs = []
    for name, arr in tensors:
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        ne = list(reversed(arr.shape))
        out += _gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        out += struct.pack("<IQ", GGML_F32, offset)
        blob = arr.tobytes()
        blobs.append((offset, blob))
        offset += len(blob)
        offset = (offset + alignment - 1) // alignment * alignment
    pad = (-len(out)) % alignment
    out += b"\0" * pad
    data = bytearray(offset)
    for off, blob in blobs:
        data[off:off + len(blob)] = blob
    out += data
    with open(path, "wb") as f:
        f.write(out)


def read_gguf(path):
    buf = open(path, "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def rstr():
        nonlocal pos
        n = take("<Q")
        s = buf[pos:pos + n].decode("utf-8", "replace")
        pos += n
        return s

    scalar = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q", 11: "<q", 12: "<d"}

    def rval(t):
        if t == T_STR:
            return rstr()
        if t == T_ARR:
            at, n = take("<I"), take("<Q")
            return [rval(at) for _ in range(n)]
        return take(scalar[t])

    assert buf[:4] == GGUF_MAGIC, "not a GGUF file"
    pos = 4
    version, n_t, n_kv = take("<I"), take("<Q"), take("<Q")
    assert version == 3
    kv = {}
    for _ in range(n_kv):
        k = rstr()
        kv[k] = rval(take("<I"))
    infos = []
    for _ in range(n_t):
        name = rstr()
        nd = take("<I")
        ne = [take("<Q") for _ in range(nd)]
        typ, off = take("<I"), take("<Q")
        infos.append((name, ne, typ, off))
    align = kv.get("general.alignment", 32)
    data_off = (pos + align - 1) // align * align
    tensors = {}
    for name, ne, typ, off in infos:
        n = int(np.prod(ne))
        if typ == GGML_F32:
            a = np.frombuffer(buf, dtype=np.float32, count=n, offset=data_off + off)
        elif typ == GGML_F16:
            a = np.frombuffer(buf, dtype=np.float16, count=n, offset=data_off + off).astype(np.float32)
        else:
            raise SystemExit(f"{path}: tensor {name}: type {typ} not supported by the reference (use --type f32)")
        tensors[name] = a.reshape(list(reversed(ne)))
    return kv, tensors


# ---------------------------------------------------------------- the model
class Cfg:
    pass


def cfg_from_kv(kv, tensors):
    c = Cfg()
    c.arch = kv["general.architecture"]
    a = c.arch
    c.dim = kv[f"{a}.embedding_length"]
    c.n_layers = kv[f"{a}.block_count"]
    c.n_heads = kv[f"{a}.attention.head_count"]
    c.n_kv_heads = kv.get(f"{a}.attention.head_count_kv", c.n_heads)
    c.head_dim = kv.get(f"{a}.attention.key_length", c.dim // c.n_heads)
    c.eps = kv[f"{a}.attention.layer_norm_rms_epsilon"]
    c.theta = kv.get(f"{a}.rope.freq_base", 1e6 if a == "qwen2" else 1e4)
    c.neox = a in ("qwen2", "qwen3")
    c.vocab = tensors["token_embd.weight"].shape[0]
    c.rope_freqs = tensors.get("rope_freqs.weight")
    return c


def rmsnorm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope(x, pos, theta, neox, factors=None):
    """x: [T, H, hd]; pos: [T]; factors: llama 3.1+ rope_freqs (frequency i divided by factors[i])."""
    hd = x.shape[-1]
    half = hd // 2
    i = torch.arange(half, dtype=torch.float64)
    freq = theta ** (-2.0 * i / hd)
    if factors is not None:
        freq = freq / torch.from_numpy(np.array(factors, dtype=np.float64))
    ang = pos[:, None].double() * freq[None, :]          # [T, half]
    cos, sin = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
    if neox:
        a, b = x[..., :half], x[..., half:]
    else:
        a, b = x[..., 0::2], x[..., 1::2]
    ra, rb = a * cos - b * sin, a * sin + b * cos
    if neox:
        return torch.cat([ra, rb], -1)
    out = torch.empty_like(x)
    out[..., 0::2], out[..., 1::2] = ra, rb
    return out


def forward(c, W, tokens):
    """Logits [T, vocab] for every prefix of tokens (float64)."""
    t = lambda n: torch.from_numpy(np.array(W[n], dtype=np.float64))
    T = len(tokens)
    x = t("token_embd.weight")[torch.tensor(tokens)]
    pos = torch.arange(T)
    H, K, hd = c.n_heads, c.n_kv_heads, c.head_dim
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(c.n_layers):
        p = f"blk.{l}."
        h = rmsnorm(x, t(p + "attn_norm.weight"), c.eps)
        q, k, v = h @ t(p + "attn_q.weight").T, h @ t(p + "attn_k.weight").T, h @ t(p + "attn_v.weight").T
        if p + "attn_q.bias" in W:
            q, k, v = q + t(p + "attn_q.bias"), k + t(p + "attn_k.bias"), v + t(p + "attn_v.bias")
        q, k = q.view(T, H, hd), k.view(T, K, hd)
        if p + "attn_q_norm.weight" in W:  # qwen3: RMSNorm of every head before RoPE
            q, k = rmsnorm(q, t(p + "attn_q_norm.weight"), c.eps), rmsnorm(k, t(p + "attn_k_norm.weight"), c.eps)
        q = rope(q, pos, c.theta, c.neox, c.rope_freqs)
        k = rope(k, pos, c.theta, c.neox, c.rope_freqs)
        v = v.view(T, K, hd)
        rep = H // K
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        att = torch.einsum("thd,shd->hts", q, k) / (hd ** 0.5) + mask
        att = torch.softmax(att, -1)
        o = torch.einsum("hts,shd->thd", att, v).reshape(T, H * hd)
        x = x + o @ t(p + "attn_output.weight").T
        h = rmsnorm(x, t(p + "ffn_norm.weight"), c.eps)
        g, u = h @ t(p + "ffn_gate.weight").T, h @ t(p + "ffn_up.weight").T
        x = x + (torch.nn.functional.silu(g) * u) @ t(p + "ffn_down.weight").T
    x = rmsnorm(x, t("output_norm.weight"), c.eps)
    out = t("output.weight") if "output.weight" in W else t("token_embd.weight")
    return x @ out.T


def write_ref(path, vocab, seqs, logits):
    with open(path, "wb") as f:
        f.write(b"LREF" + struct.pack("<ii", len(seqs), vocab))
        for s, lg in zip(seqs, logits):
            f.write(struct.pack("<i", len(s)) + np.array(s, dtype=np.int32).tobytes())
            f.write(np.ascontiguousarray(lg.numpy(), dtype=np.float32).tobytes())


# ---------------------------------------------------------------- tiny models
SHAPES = {
    # qwen2: NEOX rope, q/k/v biases, GQA 4:2, tied output
    "qwen2": dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn=160, vocab=300, context=128,
                  eps=1e-6, theta=1e6, bias=True, tied=True),
    # llama: adjacent rope, no biases, MQA 4:1, separate output matrix
    "llama": dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=1, ffn=96, vocab=300, context=128,
                  eps=1e-5, theta=1e4, bias=False, tied=False),
    # qwen3: NEOX rope, no biases, q/k RMSNorm per head, head_dim 24 (q width 96 != dim), tied
    "qwen3": dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn=160, vocab=300, context=128,
                  eps=1e-6, theta=1e6, bias=False, tied=True, head_dim=24, qk_norm=True),
    # llama 3.1: architecture "llama" with a rope_freqs tensor, GQA 4:2, theta 5e5, separate output
    "llama3": dict(arch="llama", dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn=96, vocab=300, context=128,
                   eps=1e-5, theta=5e5, bias=False, tied=False, rope_freqs=True),
}


def gen(arch, out, seed):
    s = SHAPES[arch]
    arch = s.get("arch", arch)
    rng = np.random.default_rng(seed)
    d, H, K, F, V = s["dim"], s["n_heads"], s["n_kv_heads"], s["ffn"], s["vocab"]
    hd = s.get("head_dim", d // H)
    std = 0.1
    nrm = lambda *shape: (rng.standard_normal(shape) * std).astype(np.float32)
    W = {"token_embd.weight": (rng.standard_normal((V, d)) * 0.5).astype(np.float32)}
    order = ["token_embd.weight"]
    for l in range(s["n_layers"]):
        p = f"blk.{l}."
        W[p + "attn_norm.weight"] = (1 + nrm(d)).astype(np.float32)
        W[p + "attn_q.weight"] = nrm(H * hd, d)
        W[p + "attn_k.weight"] = nrm(K * hd, d)
        W[p + "attn_v.weight"] = nrm(K * hd, d)
        if s["bias"]:
            W[p + "attn_q.bias"] = nrm(H * hd)
            W[p + "attn_k.bias"] = nrm(K * hd)
            W[p + "attn_v.bias"] = nrm(K * hd)
        if s.get("qk_norm"):
            W[p + "attn_q_norm.weight"] = (1 + 3 * nrm(hd)).astype(np.float32)
            W[p + "attn_k_norm.weight"] = (1 + 3 * nrm(hd)).astype(np.float32)
        W[p + "attn_output.weight"] = nrm(d, H * hd)
        W[p + "ffn_norm.weight"] = (1 + nrm(d)).astype(np.float32)
        W[p + "ffn_gate.weight"] = nrm(F, d)
        W[p + "ffn_up.weight"] = nrm(F, d)
        W[p + "ffn_down.weight"] = nrm(d, F)
        order += [k for k in W if k.startswith(p)]
    W["output_norm.weight"] = (1 + nrm(d)).astype(np.float32)
    order.append("output_norm.weight")
    if s.get("rope_freqs"):  # factors 1 (high frequencies) to 8 (low), as llama 3.1's scaling gives
        W["rope_freqs.weight"] = np.geomspace(1.0, 8.0, hd // 2).astype(np.float32)
        order.append("rope_freqs.weight")
    if not s["tied"]:
        W["output.weight"] = nrm(V, d) * 5
        order.append("output.weight")
    kvs = [("general.architecture", T_STR, arch), ("general.name", T_STR, f"{arch}-tiny-ref"),
           (f"{arch}.context_length", T_U32, s["context"]), (f"{arch}.embedding_length", T_U32, d),
           (f"{arch}.block_count", T_U32, s["n_layers"]), (f"{arch}.feed_forward_length", T_U32, F),
           (f"{arch}.attention.head_count", T_U32, H), (f"{arch}.attention.head_count_kv", T_U32, K),
           (f"{arch}.attention.layer_norm_rms_epsilon", T_F32, s["eps"]),
           (f"{arch}.rope.freq_base", T_F32, s["theta"])]
    if hd * H != d:
        kvs += [(f"{arch}.attention.key_length", T_U32, hd), (f"{arch}.attention.value_length", T_U32, hd)]
    write_gguf(out + ".gguf.fixture", kvs, [(n, W[n]) for n in order])
    kv, W2 = read_gguf(out + ".gguf.fixture")  # read back: the reference sees exactly the file
    evaluate(kv, W2, out + ".ref", seed + 1)


def evaluate(kv, W, ref_path, seed):
    c = cfg_from_kv(kv, W)
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(0, c.vocab, n).tolist() for n in (13, 7, 4, 10)]
    logits = [forward(c, W, s) for s in seqs]
    write_ref(ref_path, c.vocab, seqs, logits)
    print(f"{ref_path}: {len(seqs)} sequences, vocab {c.vocab}, max |logit| "
          f"{max(float(l.abs().max()) for l in logits):.3f}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--arch", choices=sorted(SHAPES), required=True)
    g.add_argument("--out", required=True, help="path prefix: writes PREFIX.gguf.fixture and PREFIX.ref")
    g.add_argument("--seed", type=int, default=1234)
    e = sub.add_parser("eval")
    e.add_argument("--model", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--seed", type=int, default=99)
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    if a.cmd == "gen":
        gen(a.arch, a.out, a.seed)
    else:
        kv, W = read_gguf(a.model)
        evaluate(kv, W, a.out, a.seed)


if __name__ == "__main__":
    sys.exit(main())
