#!/usr/bin/env python3
"""PyTorch autograd reference for deeprec's LLM trainer (src/llm/train_*.c).

Reads a tiny F32 model GGUF (the forward fixtures of qwen2_ref.py), builds a fixed padded batch
(3 sequences, per-token weights and mask), and computes in float64 with autograd:
  - the SFT loss  L = sum_i w_i m_i ce_i / sum_i w_i m_i  over targets (position t >= 1 of a
    sequence is predicted from positions < t; padding and t = 0 are not targets),
  - the gradient of L w.r.t. every tensor of the model (tied embeddings: one tensor),
  - the losses of 10 AdamW steps on that batch (torch.optim.AdamW, lr 1e-2, betas (0.9, 0.95),
    eps 1e-8, weight decay 0.1 on matrices only, global-norm clipping at 1.0 before each step).
Writes everything as F32 tensors in a GGUF (own minimal writer from qwen2_ref.py):
  batch.tokens [B*T], batch.len [B], batch.weight [B*T], batch.mask [B*T] (as floats),
  loss [1], grad.<tensor name> (same shape as the tensor), adam.losses [10].

  /usr/bin/python3 tools/llm_ref/train_ref.py --model tests/fixtures/llm/qwen2_tiny.gguf.fixture \
      --out tests/fixtures/llm/train_qwen2.gguf.fixture
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qwen2_ref import read_gguf, write_gguf, cfg_from_kv, rmsnorm, rope  # noqa: E402

B, T = 3, 10
LENS = [10, 7, 4]


def logits_of(c, P, tokens):
    """tokens: list of ints -> logits [len, V] (float64, differentiable in P)."""
    n = len(tokens)
    x = P["token_embd.weight"][torch.tensor(tokens)]
    pos = torch.arange(n)
    H, K, hd = c.n_heads, c.n_kv_heads, c.head_dim
    mask = torch.full((n, n), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(c.n_layers):
        p = f"blk.{l}."
        h = rmsnorm(x, P[p + "attn_norm.weight"], c.eps)
        q, k, v = h @ P[p + "attn_q.weight"].T, h @ P[p + "attn_k.weight"].T, h @ P[p + "attn_v.weight"].T
        if p + "attn_q.bias" in P:
            q, k, v = q + P[p + "attn_q.bias"], k + P[p + "attn_k.bias"], v + P[p + "attn_v.bias"]
        q = rope(q.view(n, H, hd), pos, c.theta, c.neox)
        k = rope(k.view(n, K, hd), pos, c.theta, c.neox)
        v = v.view(n, K, hd)
        rep = H // K
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        att = torch.softmax(torch.einsum("thd,shd->hts", q, k) / (hd ** 0.5) + mask, -1)
        o = torch.einsum("hts,shd->thd", att, v).reshape(n, H * hd)
        x = x + o @ P[p + "attn_output.weight"].T
        h = rmsnorm(x, P[p + "ffn_norm.weight"], c.eps)
        x = x + (torch.nn.functional.silu(h @ P[p + "ffn_gate.weight"].T) * (h @ P[p + "ffn_up.weight"].T)) \
            @ P[p + "ffn_down.weight"].T
    x = rmsnorm(x, P["output_norm.weight"], c.eps)
    out = P["output.weight"] if "output.weight" in P else P["token_embd.weight"]
    return x @ out.T


def sft_loss(c, P, toks, w, m):
    num = torch.zeros((), dtype=torch.float64)
    den = 0.0
    for b in range(B):
        L = LENS[b]
        seq = toks[b * T:b * T + L]
        lp = torch.log_softmax(logits_of(c, P, seq), -1)
        for t in range(1, L):
            k = b * T + t
            if not m[k]:
                continue
            num = num - float(w[k]) * lp[t - 1, seq[t]]
            den += float(w[k])
    return num / den


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    kv, W = read_gguf(a.model)
    c = cfg_from_kv(kv, W)
    rng = np.random.default_rng(a.seed)
    toks = np.zeros(B * T, dtype=np.int64)
    w = np.zeros(B * T, dtype=np.float32)
    m = np.zeros(B * T, dtype=np.float32)
    for b in range(B):
        for t in range(T):
            k = b * T + t
            toks[k] = rng.integers(0, c.vocab) if t < LENS[b] else 0
            w[k] = rng.uniform(0.5, 1.5)
            m[k] = 1.0 if rng.uniform() < 0.8 else 0.0
    toks_l = toks.tolist()
    names = list(W.keys())
    P = {n: torch.tensor(np.array(W[n], dtype=np.float64), requires_grad=True) for n in names}
    loss = sft_loss(c, P, toks_l, w, m)
    loss.backward()
    out = [("batch.tokens", toks.astype(np.float32)), ("batch.len", np.array(LENS, dtype=np.float32)),
           ("batch.weight", w), ("batch.mask", m), ("loss", np.array([loss.item()], dtype=np.float32))]
    for n in names:
        out.append(("grad." + n, P[n].grad.numpy().astype(np.float32)))
    # 10 AdamW steps
    P = {n: torch.tensor(np.array(W[n], dtype=np.float64), requires_grad=True) for n in names}
    decay = [P[n] for n in names if P[n].dim() == 2]
    nodecay = [P[n] for n in names if P[n].dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        loss = sft_loss(c, P, toks_l, w, m)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([P[n] for n in names], 1.0)
        opt.step()
        losses.append(loss.item())
    out.append(("adam.losses", np.array(losses, dtype=np.float32)))
    write_gguf(a.out, [("general.name", 8, "deeprec-train-ref")], out)
    print(f"{a.out}: loss {out[4][1][0]:.6f}, adam losses {losses[0]:.5f} .. {losses[-1]:.5f}")


if __name__ == "__main__":
    main()
