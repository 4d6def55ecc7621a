#!/usr/bin/python3
"""PyTorch golden files for vggflow's differentiable ops (tests/kernels/test_golden.cpp).

How to regenerate (from the repository root):

    python3 tools/golden/ops.py            # Debian's python3-torch 1.13.1 + python3-numpy

(If `python3` on PATH is another interpreter without torch, e.g. a pyenv shim, the script
re-runs itself under /usr/bin/python3.) The script wipes and rewrites tests/data/ops/.
It is deterministic: every case draws from its own NumPy generator seeded from the case
name (crc32), so adding or reordering cases does not change the others; torch's seed is
fixed as well although no torch RNG is used.

For each case it writes tests/data/ops/<dir>/:
    in0.npy, in1.npy, ...   the inputs (float64 or float32; index tensors int64; masks bool)
    out.npy                 the op's output computed by torch
    gout.npy                a fixed random cotangent for the output
    gradI.npy               d(sum(out * gout)) / d(inI) for every float input I listed in grads=
and one line per case in tests/data/ops/manifest.txt:

    <name> op=<op> dtype=<f64|f32> dir=<folder> inputs=<count> grads=<i,j,...> [key=value ...]

Lists are comma-separated, floats are written with repr() (exact round trip), booleans are
0/1. Lines starting with '#' are comments. Several manifest lines may share one folder
(the attention case is run through both vgg AttentionImpl::Naive and ::Tiled).
"""
import os
import shutil
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import system_python  # noqa: E402

system_python.require_torch()
import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT_DIR = os.path.join(ROOT, "tests", "data", "ops")

torch.manual_seed(0)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

CASES = []  # (name, op, dtype, dir, n_inputs, grads, params)


def rng_for(name):
    return np.random.default_rng(zlib.crc32(name.encode()))


def fmt(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (list, tuple)):
        return ",".join(fmt(x) for x in v) if v else ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def emit(name, op, dtype, inputs, fn, params=None, folder=None, extra_lines=()):
    """inputs: list of numpy arrays; float ones get requires_grad and a gradient file."""
    params = dict(params or {})
    folder = folder or name
    rng = rng_for(name + "/gout")
    path = os.path.join(OUT_DIR, folder)
    os.makedirs(path, exist_ok=True)
    ts, grads = [], []
    for i, a in enumerate(inputs):
        a = np.ascontiguousarray(a)
        np.save(os.path.join(path, f"in{i}.npy"), a)
        t = torch.from_numpy(a.copy())
        if a.dtype in (np.float32, np.float64):
            t.requires_grad_(True)
            grads.append(i)
        ts.append(t)
    out = fn(*ts)
    gout = torch.from_numpy(rng.standard_normal(tuple(out.shape)).astype(out.detach().numpy().dtype))
    gs = torch.autograd.grad([out], [ts[i] for i in grads], [gout])
    np.save(os.path.join(path, "out.npy"), np.ascontiguousarray(out.detach().numpy()))
    np.save(os.path.join(path, "gout.npy"), np.ascontiguousarray(gout.numpy()))
    for i, g in zip(grads, gs):
        np.save(os.path.join(path, f"grad{i}.npy"), np.ascontiguousarray(g.numpy()))
    CASES.append((name, op, dtype, folder, len(inputs), grads, params))
    for (n2, p2) in extra_lines:  # further manifest lines over the same folder
        CASES.append((n2, op, dtype, folder, len(inputs), grads, {**params, **p2}))


def fdt(dtype):
    return np.float64 if dtype == "f64" else np.float32


def normal(name, shape, dtype="f64", k=0):
    return rng_for(f"{name}/in{k}").standard_normal(shape).astype(fdt(dtype))


def uniform(name, shape, lo, hi, dtype="f64", k=0):
    return rng_for(f"{name}/in{k}").uniform(lo, hi, shape).astype(fdt(dtype))


def away_from_zero(name, shape, margin, dtype="f64", k=0):
    """N(0,1) values with |x| >= margin (keeps abs/relu away from their kinks)."""
    x = rng_for(f"{name}/in{k}").standard_normal(shape)
    x = np.where(np.abs(x) < margin, np.sign(x + 1e-300) * (margin + np.abs(x)), x)
    return x.astype(fdt(dtype))


def build():
    # ---- binary elementwise (with broadcasting) -------------------------------------
    n = "add_broadcast_f64"
    emit(n, "add", "f64", [normal(n, (2, 3, 4)), normal(n, (3, 1), k=1)], torch.add)
    n = "sub_broadcast_f64"
    emit(n, "sub", "f64", [normal(n, (4, 1)), normal(n, (2, 1, 5), k=1)], torch.sub)
    n = "mul_broadcast_f64"
    emit(n, "mul", "f64", [normal(n, (3, 1)), normal(n, (1, 4), k=1)], torch.mul)
    n = "div_broadcast_f64"
    emit(n, "div", "f64", [normal(n, (2, 3, 4)), uniform(n, (4,), 0.5, 2.0, k=1)], torch.div)
    n = "pow_tensor_f64"
    emit(n, "pow", "f64", [uniform(n, (3, 4), 0.3, 2.5), normal(n, (3, 4), k=1)], torch.pow)
    n = "maximum_ties_f64"
    a = normal(n, (3, 5))
    b = normal(n, (3, 5), k=1)
    b[0, 1] = a[0, 1]  # ties split the gradient equally (both vgg and torch)
    b[2, 3] = a[2, 3]
    emit(n, "maximum", "f64", [a, b], torch.maximum)
    n = "mul_f32"
    emit(n, "mul", "f32", [normal(n, (2, 3, 4), "f32"), normal(n, (3, 4), "f32", k=1)], torch.mul)

    # ---- unary elementwise ----------------------------------------------------------
    unary = {
        "neg": (torch.neg, lambda n: normal(n, (3, 7))),
        "abs": (torch.abs, lambda n: away_from_zero(n, (3, 7), 0.05)),
        "exp": (torch.exp, lambda n: normal(n, (3, 7))),
        "log": (torch.log, lambda n: uniform(n, (3, 7), 0.1, 3.0)),
        "sqrt": (torch.sqrt, lambda n: uniform(n, (3, 7), 0.1, 3.0)),
        "rsqrt": (torch.rsqrt, lambda n: uniform(n, (3, 7), 0.2, 3.0)),
        "tanh": (torch.tanh, lambda n: normal(n, (3, 7)) * 2),
        "sigmoid": (torch.sigmoid, lambda n: normal(n, (3, 7)) * 3),
        "silu": (F.silu, lambda n: normal(n, (3, 7)) * 2),
        "relu": (torch.relu, lambda n: away_from_zero(n, (3, 7), 0.05)),
    }
    for op, (fn, make) in unary.items():
        n = f"{op}_f64"
        emit(n, op, "f64", [make(n)], fn)
    n = "gelu_exact_f64"
    emit(n, "gelu", "f64", [normal(n, (4, 6)) * 2], lambda x: F.gelu(x), {"approximate": "none"})
    n = "gelu_tanh_f64"
    emit(n, "gelu", "f64", [normal(n, (4, 6)) * 2], lambda x: F.gelu(x, approximate="tanh"), {"approximate": "tanh"})
    n = "gelu_tanh_f32"
    emit(n, "gelu", "f32", [normal(n, (4, 6), "f32") * 2], lambda x: F.gelu(x, approximate="tanh"),
         {"approximate": "tanh"})
    n = "exp_f32"
    emit(n, "exp", "f32", [normal(n, (3, 7), "f32")], torch.exp)

    n = "clamp_f64"
    x = normal(n, (4, 6)) * 1.5
    lo, hi = -0.5, 0.75
    x = np.where(np.abs(x - lo) < 1e-3, x - 0.01, x)  # stay off the boundaries
    x = np.where(np.abs(x - hi) < 1e-3, x + 0.01, x)
    emit(n, "clamp", "f64", [x], lambda t: torch.clamp(t, lo, hi), {"lo": lo, "hi": hi})

    n = "where_broadcast_f64"
    cond = rng_for(n + "/cond").random((3, 4)) < 0.5
    emit(n, "where", "f64", [cond, normal(n, (3, 4), k=1), normal(n, (4,), k=2)], torch.where)

    # ---- reductions -----------------------------------------------------------------
    n = "sum_dims_keepdim_f64"
    emit(n, "sum", "f64", [normal(n, (2, 3, 4))], lambda t: t.sum(dim=(0, 2), keepdim=True),
         {"dims": [0, 2], "keepdim": True})
    n = "sum_f32"
    emit(n, "sum", "f32", [normal(n, (3, 5, 4), "f32")], lambda t: t.sum(dim=(1,), keepdim=False),
         {"dims": [1], "keepdim": False})
    n = "mean_f64"
    emit(n, "mean", "f64", [normal(n, (2, 3, 5))], lambda t: t.mean(dim=(-1,), keepdim=False),
         {"dims": [-1], "keepdim": False})
    n = "var_f64"
    emit(n, "var", "f64", [normal(n, (3, 4, 5))], lambda t: torch.var(t, dim=(1, 2), unbiased=True, keepdim=True),
         {"dims": [1, 2], "correction": 1, "keepdim": True})
    n = "amax_ties_f64"
    x = normal(n, (3, 5, 2))
    x[1, 4, 0] = x[1, :, 0].max()  # a tie: the gradient is shared equally
    x[1, 0, 0] = x[1, 4, 0]
    emit(n, "amax", "f64", [x], lambda t: torch.amax(t, dim=(1,), keepdim=False), {"dims": [1], "keepdim": False})
    n = "norm_p2_f64"
    emit(n, "norm", "f64", [normal(n, (3, 6))], lambda t: torch.linalg.vector_norm(t, 2, dim=(1,), keepdim=True),
         {"p": 2.0, "dims": [1], "keepdim": True})

    # ---- linear algebra ---------------------------------------------------------------
    n = "matmul_batch_broadcast_f64"
    emit(n, "matmul", "f64", [normal(n, (2, 1, 3, 4)), normal(n, (3, 4, 5), k=1)], torch.matmul)
    n = "matmul_f32"
    emit(n, "matmul", "f32", [normal(n, (2, 5, 8), "f32"), normal(n, (8, 3), "f32", k=1)], torch.matmul)

    # ---- nn ops -------------------------------------------------------------------------
    n = "softmax_dim1_f64"
    emit(n, "softmax", "f64", [normal(n, (2, 5, 3)) * 2], lambda t: torch.softmax(t, 1), {"dim": 1})
    n = "softmax_f32"
    emit(n, "softmax", "f32", [normal(n, (4, 7), "f32") * 2], lambda t: torch.softmax(t, -1), {"dim": -1})
    n = "log_softmax_f64"
    emit(n, "log_softmax", "f64", [normal(n, (3, 6)) * 2], lambda t: torch.log_softmax(t, -1), {"dim": -1})

    n = "layer_norm_affine_f64"
    emit(n, "layer_norm", "f64", [normal(n, (2, 3, 5)) * 2 + 0.5, 1 + 0.3 * normal(n, (5,), k=1),
                                  normal(n, (5,), k=2)],
         lambda x, w, b: F.layer_norm(x, (5,), w, b, 1e-5), {"normalized_shape": [5], "eps": 1e-5, "affine": True})
    n = "layer_norm_noaffine_f64"
    emit(n, "layer_norm", "f64", [normal(n, (4, 2, 3)) - 1],
         lambda x: F.layer_norm(x, (2, 3), None, None, 1e-5),
         {"normalized_shape": [2, 3], "eps": 1e-5, "affine": False})
    n = "layer_norm_affine_f32"
    emit(n, "layer_norm", "f32", [normal(n, (3, 8), "f32"), (1 + 0.3 * normal(n, (8,), k=1)).astype(np.float32),
                                  normal(n, (8,), "f32", k=2)],
         lambda x, w, b: F.layer_norm(x, (8,), w, b, 1e-5), {"normalized_shape": [8], "eps": 1e-5, "affine": True})

    def rms(x, w, eps):
        return x * torch.rsqrt(torch.mean(x * x, -1, keepdim=True) + eps) * w

    n = "rms_norm_f64"
    emit(n, "rms_norm", "f64", [normal(n, (2, 3, 6)), 1 + 0.3 * normal(n, (6,), k=1)],
         lambda x, w: rms(x, w, 1e-6), {"normalized_shape": [6], "eps": 1e-6})
    n = "rms_norm_f32"
    emit(n, "rms_norm", "f32", [normal(n, (4, 8), "f32"), (1 + 0.3 * normal(n, (8,), k=1)).astype(np.float32)],
         lambda x, w: rms(x, w, 1e-6), {"normalized_shape": [8], "eps": 1e-6})

    # ---- shape ops ----------------------------------------------------------------------
    n = "cat_dim1_f64"
    emit(n, "cat", "f64", [normal(n, (2, 1, 3)), normal(n, (2, 3, 3), k=1), normal(n, (2, 2, 3), k=2)],
         lambda *xs: torch.cat(xs, 1), {"dim": 1})
    n = "stack_dim1_f64"
    emit(n, "stack", "f64", [normal(n, (3, 4)), normal(n, (3, 4), k=1)], lambda *xs: torch.stack(xs, 1), {"dim": 1})
    n = "pad_constant_f64"
    emit(n, "pad", "f64", [normal(n, (2, 3, 4))], lambda t: F.pad(t, (1, 2, 0, 1), mode="constant", value=0.5),
         {"pads": [1, 2, 0, 1], "value": 0.5})
    n = "permute_reshape_f64"
    emit(n, "permute_reshape", "f64", [normal(n, (2, 3, 4))],
         lambda t: t.permute(1, 2, 0).reshape(3, 8).permute(1, 0).reshape(2, 12),
         {"perm": [1, 2, 0], "shape": [3, 8], "perm2": [1, 0], "shape2": [2, 12]})

    # ---- indexing -----------------------------------------------------------------------
    n = "index_select_f64"
    idx = np.array([2, 0, 2, 3, 1], dtype=np.int64)  # repeats accumulate in the gradient
    emit(n, "index_select", "f64", [normal(n, (3, 4, 2)), idx], lambda x, i: torch.index_select(x, 1, i), {"dim": 1})
    n = "gather_f64"
    idx = rng_for(n + "/idx").integers(0, 5, (3, 4)).astype(np.int64)
    emit(n, "gather", "f64", [normal(n, (3, 5)), idx], lambda x, i: torch.gather(x, 1, i), {"dim": 1})
    n = "scatter_add_f64"
    idx = rng_for(n + "/idx").integers(0, 4, (3, 5)).astype(np.int64)
    emit(n, "scatter_add", "f64", [normal(n, (4, 5)), idx, normal(n, (3, 5), k=2)],
         lambda x, i, s: torch.scatter_add(x, 0, i, s), {"dim": 0})
    n = "embedding_f64"
    idx = np.array([[1, 4, 1], [0, 6, 4]], dtype=np.int64)
    emit(n, "embedding", "f64", [normal(n, (7, 3)), idx], lambda w, i: F.embedding(i, w))

    # ---- convolution and pooling --------------------------------------------------------
    n = "conv2d_stride_pad_bias_f64"
    emit(n, "conv2d", "f64", [normal(n, (2, 3, 6, 5)), normal(n, (4, 3, 3, 2), k=1) * 0.5, normal(n, (4,), k=2)],
         lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=(1, 2)),
         {"stride": [2, 1], "padding": [1, 2], "bias": True})
    n = "conv2d_f32"
    emit(n, "conv2d", "f32", [normal(n, (1, 2, 5, 5), "f32"), normal(n, (3, 2, 3, 3), "f32", k=1),
                              normal(n, (3,), "f32", k=2)],
         lambda x, w, b: F.conv2d(x, w, b, stride=(1, 2), padding=(1, 0)),
         {"stride": [1, 2], "padding": [1, 0], "bias": True})
    n = "avg_pool2d_pad_f64"
    emit(n, "avg_pool2d", "f64", [normal(n, (2, 2, 5, 6))],
         lambda x: F.avg_pool2d(x, (3, 2), stride=(2, 1), padding=(1, 1), count_include_pad=True),
         {"kernel": [3, 2], "stride": [2, 1], "padding": [1, 1]})

    # ---- attention: softmax(scale * q @ k^T) @ v (torch 1.13 has no SDPA) ---------------
    def attn(scale):
        return lambda q, k, v: torch.matmul(torch.softmax(scale * torch.matmul(q, k.transpose(-1, -2)), -1), v)

    n = "attention_naive_f64"
    emit(n, "attention", "f64", [normal(n, (2, 2, 5, 4)), normal(n, (2, 2, 6, 4), k=1), normal(n, (2, 2, 6, 3), k=2)],
         attn(0.5), {"scale": 0.5, "impl": "naive"}, folder="attention_f64",
         extra_lines=[("attention_tiled_f64", {"impl": "tiled"})])
    n = "attention_naive_f32"
    emit(n, "attention", "f32", [normal(n, (2, 7, 8), "f32"), normal(n, (2, 9, 8), "f32", k=1),
                                 normal(n, (2, 9, 8), "f32", k=2)],
         attn(8 ** -0.5), {"scale": 8 ** -0.5, "impl": "naive"}, folder="attention_f32",
         extra_lines=[("attention_tiled_f32", {"impl": "tiled"})])

    # ---- image ops: quick_gelu, group_norm, nearest upsampling, bilinear/bicubic resizing ------
    n = "quick_gelu_f64"
    emit(n, "quick_gelu", "f64", [normal(n, (3, 7)) * 2], lambda x: x * torch.sigmoid(1.702 * x))
    n = "group_norm_affine_f64"
    emit(n, "group_norm", "f64", [normal(n, (2, 6, 3, 4)) * 2 + 0.5, 1 + 0.3 * normal(n, (6,), k=1), normal(n, (6,), k=2)],
         lambda x, w, b: F.group_norm(x, 3, w, b, 1e-5), {"groups": 3, "eps": 1e-5, "affine": True})
    n = "group_norm_noaffine_f64"
    emit(n, "group_norm", "f64", [normal(n, (1, 4, 5)) - 1], lambda x: F.group_norm(x, 2, None, None, 1e-6),
         {"groups": 2, "eps": 1e-6, "affine": False})
    n = "group_norm_affine_f32"
    emit(n, "group_norm", "f32", [normal(n, (2, 8, 4, 4), "f32"), (1 + 0.3 * normal(n, (8,), k=1)).astype(np.float32),
                                  normal(n, (8,), "f32", k=2)],
         lambda x, w, b: F.group_norm(x, 4, w, b, 1e-5), {"groups": 4, "eps": 1e-5, "affine": True})
    n = "upsample_nearest2d_f64"
    emit(n, "upsample_nearest2d", "f64", [normal(n, (1, 2, 3, 4))],
         lambda x: F.interpolate(x, scale_factor=2, mode="nearest"), {"factor": 2})
    resize = [  # name, input shape, output size, mode, antialias, dtype
        ("resize_bilinear_up_f64", (1, 2, 5, 7), (9, 12), "bilinear", False, "f64"),
        ("resize_bilinear_down_f64", (1, 2, 13, 11), (5, 4), "bilinear", False, "f64"),
        ("resize_bicubic_up_f64", (1, 2, 5, 7), (9, 12), "bicubic", False, "f64"),
        ("resize_bicubic_down_f64", (2, 1, 13, 11), (5, 4), "bicubic", False, "f64"),
        ("resize_bilinear_aa_down_f64", (1, 2, 17, 13), (6, 5), "bilinear", True, "f64"),
        ("resize_bicubic_aa_down_f64", (1, 2, 17, 13), (6, 5), "bicubic", True, "f64"),
        ("resize_bicubic_aa_up_f64", (1, 1, 4, 5), (7, 9), "bicubic", True, "f64"),
        ("resize_bicubic_aa_mixed_f64", (1, 1, 9, 4), (4, 7), "bicubic", True, "f64"),
        ("resize_bicubic_aa_down_f32", (1, 3, 32, 32), (14, 14), "bicubic", True, "f32"),
    ]
    for n, shape, size, mode, aa, dt in resize:
        emit(n, "resize2d", dt, [normal(n, shape, dt)],
             (lambda size, mode, aa: lambda x: F.interpolate(x, size=size, mode=mode, align_corners=False,
                                                             antialias=aa))(size, mode, aa),
             {"size": list(size), "mode": mode, "antialias": aa})


def main():
    if os.path.isdir(OUT_DIR):
        shutil.rmtree(OUT_DIR)
    os.makedirs(OUT_DIR)
    build()
    lines = [
        "# Generated by tools/golden/ops.py with torch " + torch.__version__ + ", numpy " + np.__version__ + ".",
        "# Do not edit: regenerate with `python3 tools/golden/ops.py` from the repository root.",
        "# <name> op=<op> dtype=<f64|f32> dir=<folder> inputs=<n> grads=<i,...> [key=value ...]",
    ]
    names = set()
    for name, op, dtype, folder, nin, grads, params in CASES:
        assert name not in names, name
        names.add(name)
        fields = [name, f"op={op}", f"dtype={dtype}", f"dir={folder}", f"inputs={nin}", f"grads={fmt(grads)}"]
        fields += [f"{k}={fmt(v)}" for k, v in params.items()]
        lines.append(" ".join(fields))
    with open(os.path.join(OUT_DIR, "manifest.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    total = sum(os.path.getsize(os.path.join(d, x)) for d, _, fs in os.walk(OUT_DIR) for x in fs)
    print(f"wrote {len(CASES)} cases to {os.path.relpath(OUT_DIR, ROOT)} ({total} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
