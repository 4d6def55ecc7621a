#!/usr/bin/python3
"""A float64 reference of the SD3/SD3.5 MMDiT, written from the specification (docs/mmdit.md),
and the golden files of tests/nn/test_mmdit_golden.cpp.

How to regenerate (from the repository root):

    python3 tools/golden/mmdit_ref.py      # Debian's python3-torch 1.13.1 + python3-numpy

(re-runs itself under /usr/bin/python3 when `python3` lacks torch). It wipes and rewrites
tests/data/mmdit/. torch is used only as an autograd calculator in float64: the model below
is this project's own code, one function per section of the spec.

Weights and inputs come from a counter-based hash that the C++ test reproduces bit for bit,
so no weights are stored (docs/testing.md, "hashed tensors"):
    h0   = FNV-1a 64 of the tensor's name
    z_i  = splitmix64 finaliser of h0 + (i + 1)·0x9E3779B97F4A7C15   (mod 2^64)
    v_i  = 2·((z_i >> 11)·2^-53) − 1                                   in [−1, 1)
and a tensor named n of shape S holds
    1 + 0.3·v                        1-D "norm_*.weight" (RMS qk-norm gains, perturbed from 1)
    v·√3/√fan_in                     other ≥2-D weights (unit-variance-preserving)
    0.1·v                            biases
    the fresh sin-cos table          pos_embed.pos_embed (spec §1.2)
    v                                inputs "input.x", "input.context", "input.pooled"
The loss is L = Σ out ⊙ R with R = hashed "input.loss_weight".

Each case folder holds:
    config.json                diffusers-style config
    case.txt                   x shape, timesteps, N_t
    params.txt                 "<name> <d0>x<d1>..." for every parameter and buffer, in order
    out.npy                    the f64 output
    dx.npy, dcontext.npy, dpooled.npy   input gradients of L
    pgrad.npy                  [P, 2]: (Σ g ⊙ probe, ‖g‖₂) per parameter (probe = hashed "probe.<name>")
    trace.npy, trace.txt       [S, 3] fingerprints (Σ t, Σ t², Σ t ⊙ probe) of each traced stage
"""
import json
import math
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import system_python  # noqa: E402

system_python.require_torch()
import numpy as np
import torch

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT_DIR = os.path.join(ROOT, "tests", "data", "mmdit")

M64 = (1 << 64) - 1


# ---- hashed tensors ------------------------------------------------------------------------
def fnv1a64(s):
    h = 0xCBF29CE484222325
    for b in s.encode():
        h ^= b
        h = (h * 0x100000001B3) & M64
    return h


def hashed_uniform(name, n):
    """v_i in [-1, 1) for i < n, exactly as tests/nn/hashed.h computes them."""
    h0 = np.uint64(fnv1a64(name))
    i = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = h0 + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)
    return 2.0 * u - 1.0


def hashed(name, shape, scale=1.0, offset=0.0):
    n = int(np.prod(shape)) if len(shape) else 1
    v = hashed_uniform(name, n).reshape(shape)
    return torch.tensor(v * scale + offset, dtype=torch.float64)


def param_value(name, shape, cfg):
    if name == "pos_embed.pos_embed":
        return sincos_table(cfg)
    if len(shape) == 1 and name.split(".")[-2].startswith("norm_") and name.endswith(".weight"):
        return hashed(name, shape, 0.3, 1.0)
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        return hashed(name, shape, math.sqrt(3.0) / math.sqrt(fan_in))
    return hashed(name, shape, 0.1)


# ---- the model, from the spec ----------------------------------------------------------------
def dim(cfg):
    return cfg["num_attention_heads"] * cfg["attention_head_dim"]


def param_shapes(cfg):
    """(name, shape) in the engine's registration order (diffusers names, spec §3.2–3.3)."""
    D, p, hd = dim(cfg), cfg["patch_size"], cfg["attention_head_dim"]
    out = []

    def lin(name, i, o):
        out.append((name + ".weight", (o, i)))
        out.append((name + ".bias", (o,)))

    out.append(("pos_embed.proj.weight", (D, cfg["in_channels"], p, p)))
    out.append(("pos_embed.proj.bias", (D,)))
    lin("time_text_embed.timestep_embedder.linear_1", 256, D)
    lin("time_text_embed.timestep_embedder.linear_2", D, D)
    lin("time_text_embed.text_embedder.linear_1", cfg["pooled_projection_dim"], D)
    lin("time_text_embed.text_embedder.linear_2", D, D)
    lin("context_embedder", cfg["joint_attention_dim"], D)
    L = cfg["num_layers"]
    for l in range(L):
        b = "transformer_blocks.%d." % l
        last, dual = l == L - 1, l in cfg["dual_attention_layers"]
        lin(b + "norm1.linear", D, (9 if dual else 6) * D)
        lin(b + "norm1_context.linear", D, (2 if last else 6) * D)
        for n in ["to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0"]:
            lin(b + "attn." + n, D, D)
        if not last:
            lin(b + "attn.to_add_out", D, D)
        if cfg["qk_norm"]:
            for n in ["norm_q", "norm_k", "norm_added_q", "norm_added_k"]:
                out.append((b + "attn." + n + ".weight", (hd,)))
        if dual:
            for n in ["to_q", "to_k", "to_v", "to_out.0"]:
                lin(b + "attn2." + n, D, D)
            if cfg["qk_norm"]:
                for n in ["norm_q", "norm_k"]:
                    out.append((b + "attn2." + n + ".weight", (hd,)))
        lin(b + "ff.net.0.proj", D, 4 * D)
        lin(b + "ff.net.2", 4 * D, D)
        if not last:
            lin(b + "ff_context.net.0.proj", D, 4 * D)
            lin(b + "ff_context.net.2", 4 * D, D)
    lin("norm_out.linear", D, 2 * D)
    lin("proj_out", D, p * p * cfg["out_channels"])
    out.append(("pos_embed.pos_embed", (1, cfg["pos_embed_max_size"] ** 2, D)))
    return out


def sincos_table(cfg):
    """§1.2: a fresh model's [1, M², D] table; first half column (x), second half row (y)."""
    D, M = dim(cfg), cfg["pos_embed_max_size"]
    base = cfg["sample_size"] // cfg["patch_size"]
    g = np.arange(M, dtype=np.float64) * base / M
    q = D // 4
    omega = 1.0 / 10000.0 ** (np.arange(q, dtype=np.float64) / q)

    def enc(pos):  # [M] -> [M, D/2]
        a = pos[:, None] * omega[None, :]
        return np.concatenate([np.sin(a), np.cos(a)], axis=1)

    ex, ey = enc(g), enc(g)
    table = np.zeros((M, M, D))
    table[:, :, : D // 2] = ex[None, :, :]  # column J
    table[:, :, D // 2:] = ey[:, None, :]   # row I
    return torch.tensor(table.reshape(1, M * M, D))


def linear(P, name, x):
    return x @ P[name + ".weight"].T + P[name + ".bias"]


def ln(x):  # LayerNorm without affine, biased variance, eps 1e-6
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-6)


def rms(x, g):  # §1.7
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6) * g


def gelu_tanh(u):
    return 0.5 * u * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (u + 0.044715 * u ** 3)))


def sinusoid(t):  # §1.3, cos first, frequencies over 128
    k = torch.arange(128, dtype=t.dtype)
    w = torch.exp(-math.log(10000.0) * k / 128.0)
    a = t[:, None] * w[None, :]
    return torch.cat([torch.cos(a), torch.sin(a)], dim=1)


def heads(y, H):
    B, S, D = y.shape
    return y.reshape(B, S, H, D // H).transpose(1, 2)  # [B, H, S, hd]


def attention(q, k, v):
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return torch.softmax(s, dim=-1) @ v


def merge(o):
    B, H, S, hd = o.shape
    return o.transpose(1, 2).reshape(B, S, H * hd)


def ff(P, name, z):
    return linear(P, name + ".net.2", gelu_tanh(linear(P, name + ".net.0.proj", z)))


def block(P, cfg, l, X, C, s):
    """§1.5 (regular), §1.6 (last: context_pre_only), §1.7 (qk-norm), §1.8 (dual)."""
    b = "transformer_blocks.%d." % l
    D, H = dim(cfg), cfg["num_attention_heads"]
    last, dual = l == cfg["num_layers"] - 1, l in cfg["dual_attention_layers"]
    Ni = X.shape[1]
    m = linear(P, b + "norm1.linear", s)[:, None, :]
    mx = [m[..., i * D:(i + 1) * D] for i in range(9 if dual else 6)]
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mx[:6]
    n = ln(X)
    Xh = n * (1 + scale_msa) + shift_msa
    mc = linear(P, b + "norm1_context.linear", s)[:, None, :]
    if last:
        c_scale, c_shift = mc[..., :D], mc[..., D:]  # diffusers order (scale, shift)
        Ch = ln(C) * (1 + c_scale) + c_shift
    else:
        mcs = [mc[..., i * D:(i + 1) * D] for i in range(6)]
        Ch = ln(C) * (1 + mcs[1]) + mcs[0]
    q, k, v = (heads(linear(P, b + "attn." + n_, Xh), H) for n_ in ["to_q", "to_k", "to_v"])
    cq, ck, cv = (heads(linear(P, b + "attn." + n_, Ch), H) for n_ in ["add_q_proj", "add_k_proj", "add_v_proj"])
    if cfg["qk_norm"]:
        q, k = rms(q, P[b + "attn.norm_q.weight"]), rms(k, P[b + "attn.norm_k.weight"])
        cq, ck = rms(cq, P[b + "attn.norm_added_q.weight"]), rms(ck, P[b + "attn.norm_added_k.weight"])
    O = merge(attention(torch.cat([q, cq], 2), torch.cat([k, ck], 2), torch.cat([v, cv], 2)))
    Ox, Oc = O[:, :Ni], O[:, Ni:]
    Xn = X + gate_msa * linear(P, b + "attn.to_out.0", Ox)
    if dual:
        shift2, scale2, gate2 = mx[6:9]
        X2 = n * (1 + scale2) + shift2
        q2, k2, v2 = (heads(linear(P, b + "attn2." + n_, X2), H) for n_ in ["to_q", "to_k", "to_v"])
        if cfg["qk_norm"]:
            q2, k2 = rms(q2, P[b + "attn2.norm_q.weight"]), rms(k2, P[b + "attn2.norm_k.weight"])
        Xn = Xn + gate2 * linear(P, b + "attn2.to_out.0", merge(attention(q2, k2, v2)))
    Xn = Xn + gate_mlp * ff(P, b + "ff", ln(Xn) * (1 + scale_mlp) + shift_mlp)
    if last:
        return None, Xn
    c_shift_msa, c_scale_msa, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = mcs
    Cn = C + c_gate_msa * linear(P, b + "attn.to_add_out", Oc)
    Cn = Cn + c_gate_mlp * ff(P, b + "ff_context", ln(Cn) * (1 + c_scale_mlp) + c_shift_mlp)
    return Cn, Xn


def forward(P, cfg, x, t, c, y, trace):
    B, Cin, Hh, Ww = x.shape
    p, D, M = cfg["patch_size"], dim(cfg), cfg["pos_embed_max_size"]
    h, w = Hh // p, Ww // p
    # §1.1 patches flattened (c, u, v), tokens row-major
    patches = x.reshape(B, Cin, h, p, w, p).permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, Cin * p * p)
    X = patches @ P["pos_embed.proj.weight"].reshape(D, -1).T + P["pos_embed.proj.bias"]
    # §1.2 centred crop
    top, left = (M - h) // 2, (M - w) // 2
    grid = P["pos_embed.pos_embed"].reshape(M, M, D)
    X = X + grid[top:top + h, left:left + w].reshape(1, h * w, D)
    trace("embed", X)
    # §1.3
    e = sinusoid(t)
    te = linear(P, "time_text_embed.timestep_embedder.linear_2",
                torch.nn.functional.silu(linear(P, "time_text_embed.timestep_embedder.linear_1", e)))
    pe = linear(P, "time_text_embed.text_embedder.linear_2",
                torch.nn.functional.silu(linear(P, "time_text_embed.text_embedder.linear_1", y)))
    temb = te + pe
    trace("temb", temb)
    s = torch.nn.functional.silu(temb)
    C = linear(P, "context_embedder", c)  # §1.4
    trace("context", C)
    for l in range(cfg["num_layers"]):
        C, X = block(P, cfg, l, X, C, s)
        trace("block.%d.image" % l, X)
        if C is not None:
            trace("block.%d.context" % l, C)
    mo = linear(P, "norm_out.linear", s)[:, None, :]
    X = ln(X) * (1 + mo[..., :D]) + mo[..., D:]  # §1.9 (scale, shift)
    trace("norm_out", X)
    Y = linear(P, "proj_out", X)
    Co = cfg["out_channels"]
    out = Y.reshape(B, h, w, p, p, Co).permute(0, 5, 1, 3, 2, 4).reshape(B, Co, Hh, Ww)  # features (u, v, c)
    trace("output", out)
    return out


# ---- cases -----------------------------------------------------------------------------------
TINY = dict(sample_size=32, patch_size=2, in_channels=1, out_channels=1, num_layers=4, attention_head_dim=64,
            num_attention_heads=2, joint_attention_dim=64, caption_projection_dim=128, pooled_projection_dim=64,
            pos_embed_max_size=24, qk_norm=None, dual_attention_layers=[])
TINY_SD35M = dict(TINY, qk_norm="rms_norm", dual_attention_layers=[0, 1])

CASES = [
    # name, config, x shape, timesteps, N_t
    ("sd3_28x20", TINY, (2, 1, 28, 20), [999.0, 137.25], 7),
    ("sd3_32x32_t0", TINY, (2, 1, 32, 32), [0.0, 0.0], 8),
    ("sd35m_20x28", TINY_SD35M, (2, 1, 20, 28), [500.0, 31.5], 7),
]


def fingerprint(name, t):
    t = t.detach()
    probe = hashed("probe." + name, tuple(t.shape))
    return [float(t.sum()), float((t * t).sum()), float((t * probe).sum())]


def run_case(name, cfg, xshape, ts, nt):
    cfg = dict(cfg, qk_norm=cfg["qk_norm"] is not None)
    shapes = param_shapes(cfg)
    P = {n: param_value(n, s, cfg).requires_grad_(n != "pos_embed.pos_embed") for n, s in shapes}
    x = hashed("input.x", xshape).requires_grad_(True)
    c = hashed("input.context", (xshape[0], nt, cfg["joint_attention_dim"])).requires_grad_(True)
    y = hashed("input.pooled", (xshape[0], cfg["pooled_projection_dim"])).requires_grad_(True)
    t = torch.tensor(ts, dtype=torch.float64)
    traces = []
    out = forward(P, cfg, x, t, c, y, lambda n, v: traces.append((n, fingerprint(n, v))))
    R = hashed("input.loss_weight", tuple(out.shape))
    (out * R).sum().backward()

    d = os.path.join(OUT_DIR, name)
    os.makedirs(d)
    jcfg = dict(cfg, qk_norm="rms_norm" if cfg["qk_norm"] else None)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(jcfg, f, indent=2)
    with open(os.path.join(d, "case.txt"), "w") as f:
        f.write("x %s\ntimesteps %s\nnt %d\n" % ("x".join(map(str, xshape)), " ".join(repr(v) for v in ts), nt))
    with open(os.path.join(d, "params.txt"), "w") as f:
        for n, s in shapes:
            f.write("%s %s\n" % (n, "x".join(map(str, s))))
    np.save(os.path.join(d, "out.npy"), out.detach().numpy())
    np.save(os.path.join(d, "dx.npy"), x.grad.numpy())
    np.save(os.path.join(d, "dcontext.npy"), c.grad.numpy())
    np.save(os.path.join(d, "dpooled.npy"), y.grad.numpy())
    pg = []
    for n, s in shapes:
        if n == "pos_embed.pos_embed":
            continue
        g = P[n].grad
        pg.append([float((g * hashed("probe." + n, s)).sum()), float(g.norm())])
    np.save(os.path.join(d, "pgrad.npy"), np.array(pg))
    np.save(os.path.join(d, "trace.npy"), np.array([v for _, v in traces]))
    with open(os.path.join(d, "trace.txt"), "w") as f:
        f.write("".join(n + "\n" for n, _ in traces))
    print("%-14s out std %.4f  params %d  |dx| %.4e" % (name, float(out.std()), sum(int(np.prod(s)) for n, s in shapes
                                                                                     if n != "pos_embed.pos_embed"),
                                                         float(x.grad.norm())))


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if os.path.isdir(OUT_DIR):
        shutil.rmtree(OUT_DIR)
    os.makedirs(OUT_DIR)
    for case in CASES:
        run_case(*case)


if __name__ == "__main__":
    main()
