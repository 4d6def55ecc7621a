#!/usr/bin/env python3
"""Times the PyTorch peers of vgg_bench_cpu's cases on the CPU and writes them as JSON.

The case list comes from vgg_bench_cpu itself (its JSON output, --cases-from) or from
--case NAME arguments, so both sides always run the same shapes. Case names:
  matmul/MxKxN, bmm/BxMxKxN, softmax/RxC, layer_norm/RxD,
  attention_naive/BxHxSxD, attention_tiled/BxHxSxD
(a trailing "/real_time" or an aggregate suffix such as "_median" is ignored).

Torch 1.13 has no F.scaled_dot_product_attention, so both attention cases are timed
against softmax(q @ k^T * scale) @ v. Each case: warm-up (at least 3 calls and 0.1 s),
then --reps samples of N calls each, N chosen so a sample lasts about --min-time
seconds; the reported time is the median over the samples of (sample time / N),
measured with time.perf_counter under torch.no_grad().
"""
import argparse
import json
import math
import os
import re
import statistics
import sys
import time

OPS = ("matmul", "bmm", "softmax", "layer_norm", "attention_naive", "attention_tiled", "attention_jvp_fused",
       "attention_jvp_composed", "mmdit_fwd", "mmdit_step")
ARITY = {"matmul": 3, "bmm": 4, "softmax": 2, "layer_norm": 2, "attention_naive": 4, "attention_tiled": 4,
         "attention_jvp_fused": 4, "attention_jvp_composed": 4,
         "mmdit_fwd": 3, "mmdit_step": 3}


def parse_case(name):
    """'matmul/256x256x256/real_time' -> ('matmul', [256, 256, 256]); ValueError when malformed."""
    parts = name.split("/")
    if len(parts) < 2 or parts[0] not in OPS:
        raise ValueError(f"unknown benchmark case '{name}' (ops: {', '.join(OPS)})")
    dims_s = re.sub(r"_(mean|median|stddev|cv)$", "", parts[1])
    try:
        dims = [int(d) for d in dims_s.split("x")]
    except ValueError:
        raise ValueError(f"bad shape in benchmark case '{name}'") from None
    if len(dims) != ARITY[parts[0]] or any(d <= 0 for d in dims):
        raise ValueError(f"benchmark case '{name}': {parts[0]} takes {ARITY[parts[0]]} positive dims")
    return parts[0], dims


def case_key(name):
    op, dims = parse_case(name)
    return op + "/" + "x".join(str(d) for d in dims)


def cases_from_vgg_json(path):
    with open(path) as f:
        data = json.load(f)
    seen, out = set(), []
    for b in data.get("benchmarks", []):
        key = case_key(b.get("run_name") or b["name"])
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out


def make_fn(torch, op, dims):
    F = torch.nn.functional
    g = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float32)

    if op == "matmul":
        m, k, n = dims
        a, b = randn(m, k), randn(k, n)
        return lambda: torch.mm(a, b)
    if op == "bmm":
        bt, m, k, n = dims
        a, b = randn(bt, m, k), randn(bt, k, n)
        return lambda: torch.bmm(a, b)
    if op == "softmax":
        r, c = dims
        x = randn(r, c)
        return lambda: torch.softmax(x, -1)
    if op == "layer_norm":
        r, d = dims
        x, w, b = randn(r, d), randn(d), randn(d)
        return lambda: F.layer_norm(x, (d,), w, b, 1e-5)
    if op in ("mmdit_fwd", "mmdit_step"):
        return make_mmdit_fn(torch, op == "mmdit_step", dims, randn)
    # attention_naive / attention_tiled: torch 1.13 has one peer for both
    bsz, h, s, d = dims
    q, k, v = randn(bsz, h, s, d), randn(bsz, h, s, d), randn(bsz, h, s, d)
    scale = 1.0 / math.sqrt(d)

    def attn(q, k, v):
        return torch.matmul(torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scale, -1), v)

    if op.startswith("attention_jvp"):
        # forward mode along tangents of q, k, v: functorch.jvp over the math attention (torch 1.13;
        # torch.func.jvp in 2.x), the only PyTorch path for an attention JVP
        import functorch
        tq, tk, tv = randn(bsz, h, s, d), randn(bsz, h, s, d), randn(bsz, h, s, d)
        return lambda: functorch.jvp(attn, (q, k, v), (tq, tk, tv))[1]
    return lambda: attn(q, k, v)


def make_mmdit_fn(torch, train, dims, randn):
    """The tiny MMDiT of tools/golden/mmdit_ref.py (the f64 parity reference) in f32:
    forward only, or forward + backward of sum(out * R) to every parameter."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden"))
    import mmdit_ref as ref
    b, s, t = dims
    cfg = dict(ref.TINY, qk_norm=False)
    P = {n: ref.param_value(n, shp, cfg).float().requires_grad_(n != "pos_embed.pos_embed")
         for n, shp in ref.param_shapes(cfg)}
    params = [p for p in P.values() if p.requires_grad]
    x, c, y = randn(b, 1, s, s), randn(b, t, 64), randn(b, 64)
    ts, R = torch.full((b,), 500.0), randn(b, 1, s, s)

    def fwd():
        return ref.forward(P, cfg, x, ts, c, y, lambda n, v: None)

    def step():
        with torch.enable_grad():
            out = fwd()
            return torch.autograd.grad((out * R).sum(), params, allow_unused=True)

    return step if train else fwd


def time_fn(fn, min_time, reps):
    t0 = time.perf_counter()
    n = 0
    while n < 3 or time.perf_counter() - t0 < 0.1:
        fn()
        n += 1
    est = (time.perf_counter() - t0) / n
    iters = max(1, math.ceil(min_time / max(est, 1e-9)))
    samples = []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(iters):
            fn()
        samples.append((time.perf_counter() - t) / iters)
    return samples, iters


def blas_libs():
    """Shared objects with 'blas' in their name mapped into this process (after a matmul)."""
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split()[-1] if len(line.split()) >= 6 else ""
                if "blas" in os.path.basename(p).lower() or "mkl" in os.path.basename(p).lower():
                    libs.add(os.path.realpath(p))
    except OSError:
        pass
    return sorted(libs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases-from", metavar="VGG_JSON", help="vgg_bench_cpu --benchmark_format=json output")
    ap.add_argument("--case", action="append", default=[], help="a case name (repeatable)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads (default: nproc)")
    ap.add_argument("--min-time", type=float, default=0.2, help="seconds per sample (default 0.2)")
    ap.add_argument("--reps", type=int, default=5, help="samples per case; the median is reported (default 5)")
    ap.add_argument("--out", help="write the JSON here instead of stdout")
    ap.add_argument("--label", default="", help="a note stored in the JSON context (e.g. the thread settings)")
    a = ap.parse_args()
    if a.threads < 1 or a.reps < 1 or not a.min_time > 0:
        ap.error("--threads and --reps must be >= 1 and --min-time > 0")

    try:
        cases = (cases_from_vgg_json(a.cases_from) if a.cases_from else []) + [case_key(c) for c in a.case]
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        print(f"torch_cpu_ops.py: {e}", file=sys.stderr)
        return 2
    if not cases:
        print("torch_cpu_ops.py: no cases (give --cases-from or --case)", file=sys.stderr)
        return 2

    try:
        import torch
    except ImportError as e:
        print(f"torch_cpu_ops.py: cannot import torch ({e}); install python3-torch", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)

    results = []
    with torch.no_grad():
        for key in cases:
            op, dims = parse_case(key)
            fn = make_fn(torch, op, dims)
            samples, iters = time_fn(fn, a.min_time, a.reps)
            results.append({"name": key, "op": op, "dims": dims, "median_s": statistics.median(samples),
                            "min_s": min(samples), "samples_s": samples, "iters_per_sample": iters})
            del fn
    out = {
        "context": {
            "torch_version": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "torch_parallel_backend": next((line.split(":", 1)[1].strip()
                                            for line in torch.__config__.parallel_info().splitlines()
                                            if line.startswith("ATen parallel backend")), "?"),
            "blas_libs": blas_libs(),
            "python": sys.version.split()[0],
            "label": a.label or f"torch threads {torch.get_num_threads()}, "
                                 f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}",
            "min_time_s": a.min_time,
            "reps": a.reps,
        },
        "benchmarks": results,
    }
    text = json.dumps(out, indent=1)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
