#!/usr/bin/env python3
"""Times vgg_bench_gpu's cases in PyTorch on the same GPU and prints one Markdown table.

usage: gpu_compare.py VGG_JSON [--out TORCH_JSON] [--reps 20]

Case names (gemm_<dtype>/M/N/K, ln_modulate_<dtype>/rows/width, softmax_<dtype>/rows/cols) come
from vggflow's JSON. PyTorch runs the eager equivalents (matmul; layer_norm then x*(1+scale)+shift,
unfused as in eager code; softmax) timed with CUDA events: median over --reps timings of a batch of
launches after a warm-up. ratio = vggflow time / PyTorch time (< 1: vggflow is faster). TFLOP/s
for GEMMs (2MNK), GB/s for the memory-bound ops (bytes read + written by a fused kernel).
ln_modulate_fused is vggflow's fused adaLN kernel against the same unfused eager PyTorch code.
"""
import argparse
import json
import statistics
import sys

UNIT_S = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def parse(name):
    # "BM_gemm/bf16/4096/4096/4096/manual_time" -> ("gemm", "bf16", [4096, 4096, 4096])
    parts = name.split("/")
    op = parts[0][3:] if parts[0].startswith("BM_") else parts[0]
    dims = [int(p) for p in parts[2:] if p.isdigit()]
    return op, parts[1], dims


def load_vgg(path):
    data = json.load(open(path))
    out = {}
    for b in data.get("benchmarks", []):
        name = b.get("run_name") or b["name"]
        if b.get("error_occurred"):
            out[name] = None
            continue
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        out[name] = b["real_time"] * UNIT_S[b.get("time_unit", "ns")]
    return data.get("context", {}), out


def torch_time(op, dt, d, reps):
    import torch
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[dt]
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(1)
    if op == "gemm":
        torch.backends.cuda.matmul.allow_tf32 = False  # vggflow's f32 GEMM is full f32
        a = torch.randn(d[0], d[2], device=dev, dtype=dtype, generator=g)
        b = torch.randn(d[2], d[1], device=dev, dtype=dtype, generator=g)
        fn = lambda: a @ b  # noqa: E731
    elif op in ("ln_modulate", "ln_modulate_fused"):  # PyTorch eager is unfused either way
        B = 2
        x = torch.randn(B, d[0] // B, d[1], device=dev, dtype=dtype, generator=g)
        scale = torch.randn(B, 1, d[1], device=dev, dtype=dtype, generator=g)
        shift = torch.randn(B, 1, d[1], device=dev, dtype=dtype, generator=g)
        fn = lambda: torch.nn.functional.layer_norm(x, (d[1],), eps=1e-6) * (1 + scale) + shift  # noqa: E731
    elif op in ("gated_residual", "gated_residual_fused"):  # eager: mul then add
        B = 2
        x = torch.randn(B, d[0] // B, d[1], device=dev, dtype=dtype, generator=g)
        y = torch.randn(B, d[0] // B, d[1], device=dev, dtype=dtype, generator=g)
        gate = torch.randn(B, 1, d[1], device=dev, dtype=dtype, generator=g)
        fn = lambda: x + gate * y  # noqa: E731
    elif op.startswith("attention"):  # d = [B·H, S, d]; peer: SDPA under the backend in op
        BH, S, hd = d
        q, k, v = (torch.randn(2, BH // 2, S, hd, device=dev, dtype=dtype, generator=g) for _ in range(3))
        backend = op.split(":")[1] if ":" in op else None
        from torch.nn.attention import SDPBackend, sdpa_kernel
        backends = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                    "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}
        sdpa = torch.nn.functional.scaled_dot_product_attention
        if op.startswith("attention_fwd_bwd"):
            q, k, v = (t.requires_grad_() for t in (q, k, v))
            go = torch.randn_like(q)

            def fn():
                with sdpa_kernel(backends[backend]):
                    torch.autograd.grad(sdpa(q, k, v), (q, k, v), go)
        else:
            def fn():
                with sdpa_kernel(backends[backend]):
                    sdpa(q, k, v)
        try:
            fn()
        except RuntimeError:  # the backend does not take this shape or dtype
            return None
    elif op in ("lora_fwd_bwd", "lora_fwd_bwd:compile", "linear_fwd_bwd"):  # d = [M, D, r]
        M, D = d[0], d[1]
        x = torch.randn(M, D, device=dev, dtype=dtype, generator=g, requires_grad=True)
        w = torch.randn(D, D, device=dev, dtype=dtype, generator=g)
        go = torch.randn(M, D, device=dev, dtype=dtype, generator=g)
        if op == "linear_fwd_bwd":
            fn = lambda: torch.autograd.grad(x @ w.t(), (x,), go)  # noqa: E731
        else:
            a = torch.randn(d[2], D, device=dev, dtype=dtype, generator=g, requires_grad=True)
            b = torch.randn(D, d[2], device=dev, dtype=dtype, generator=g, requires_grad=True)

            def lora(x, a, b):  # peft's LoRA layer: base, then B(A(x))·scaling
                return x @ w.t() + (x @ a.t()) @ b.t() * 2.0
            f = torch.compile(lora) if op.endswith(":compile") else lora
            fn = lambda: torch.autograd.grad(f(x, a, b), (x, a, b), go)  # noqa: E731
    elif op in ("adamw", "adamw_fused"):  # d = [elements, tensors]; adamw: torch's per-tensor loop
        n, count = d
        sizes = [n // count + (1 if i < n % count else 0) for i in range(count)]
        ps = [torch.randn(k, device=dev, dtype=dtype, generator=g).requires_grad_() for k in sizes]
        for p in ps:
            p.grad = torch.randn_like(p)
        opt = torch.optim.AdamW(ps, lr=1e-4, foreach=False, fused=(op == "adamw_fused"))
        fn = opt.step
    elif op == "copy":
        x = torch.randn(d[0], d[1], device=dev, dtype=dtype, generator=g)
        fn = lambda: x.clone()  # noqa: E731
    elif op == "bcast_mul":
        x = torch.randn(2, d[0] // 2, d[1], device=dev, dtype=dtype, generator=g)
        sc = torch.randn(2, 1, d[1], device=dev, dtype=dtype, generator=g)
        fn = lambda: x * sc  # noqa: E731
    elif op == "permute":
        x = torch.randn(2, d[0] // 2, d[1] // 64, 64, device=dev, dtype=dtype, generator=g)
        fn = lambda: x.permute(0, 2, 1, 3).contiguous()  # noqa: E731
    elif op == "cast":
        x = torch.randn(d[0], d[1], device=dev, dtype=torch.bfloat16, generator=g)
        fn = lambda: x.float()  # noqa: E731
    elif op == "col_sum":
        x = torch.randn(2, d[0] // 2, d[1], device=dev, dtype=dtype, generator=g)
        fn = lambda: x.sum(1, keepdim=True)  # noqa: E731
    elif op == "row_sum":
        x = torch.randn(d[0], d[1], device=dev, dtype=dtype, generator=g)
        fn = lambda: x.sum(1, keepdim=True)  # noqa: E731
    elif op == "softmax":
        x = torch.randn(d[0], d[1], device=dev, dtype=dtype, generator=g)
        fn = lambda: torch.softmax(x, 1)  # noqa: E731
    else:
        return None
    fn()
    torch.cuda.synchronize()
    inner = 10
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(inner):
            fn()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) * 1e-3 / inner)
    return statistics.median(times)


def rate(op, dt, d, t):
    if t is None:
        return ""
    if op == "gemm":
        return f"{2.0 * d[0] * d[1] * d[2] / t * 1e-12:.1f} TFLOP/s"
    if op.startswith("attention"):
        f = 4.0 * d[0] * d[1] * d[1] * d[2] * (3.5 if op.startswith("attention_fwd_bwd") else 1.0)
        return f"{f / t * 1e-12:.1f} TFLOP/s"
    if op.startswith(("lora", "linear")):
        return f"{4.0 * d[0] * d[1] * d[1] / t * 1e-12:.1f} TFLOP/s"
    if op.startswith("adamw"):
        return f"{7.0 * d[0] * 4 / t * 1e-9:.0f} GB/s"
    size = 4 if dt == "f32" else 2
    if op == "cast":
        return f"{6.0 * d[0] * d[1] / t * 1e-9:.0f} GB/s"
    if op in ("col_sum", "row_sum"):
        return f"{1.0 * d[0] * d[1] * size / t * 1e-9:.0f} GB/s"
    if op.startswith("gated_residual"):
        return f"{3.0 * d[0] * d[1] * size / t * 1e-9:.0f} GB/s"
    return f"{2.0 * d[0] * d[1] * size / t * 1e-9:.0f} GB/s"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("vgg_json")
    ap.add_argument("--out", default="")
    ap.add_argument("--reps", type=int, default=20)
    a = ap.parse_args()
    try:
        import torch
    except ImportError:
        sys.exit("gpu_compare: PyTorch is not importable here")
    if not torch.cuda.is_available():
        sys.exit("gpu_compare: PyTorch sees no GPU")
    ctx, vgg = load_vgg(a.vgg_json)
    rows, raw = [], {}
    for name, tv in vgg.items():
        op, dt, d = parse(name)
        if op == "sd3_step":  # its peer is tools/bench/sd3_step_torch.py (diffusers + PEFT)
            continue
        # the PyTorch peers of a case: AdamW against torch's per-tensor loop and its fused kernel
        peers = [(op, "")]
        if op == "adamw":
            peers = [(op, ""), ("adamw_fused", " vs fused=True")]
        elif op.startswith("attention"):  # every SDPA backend that takes the shape
            peers = [(f"{op}:{b}", f" vs SDPA {b}") for b in ("flash", "efficient", "cudnn", "math")]
        elif op == "lora_fwd_bwd":
            peers = [(op, " vs eager 3-GEMM"), (op + ":compile", " vs torch.compile")]
        for peer, label in peers:
            tt = torch_time(peer, dt, d, a.reps)
            raw[name + label] = {"vggflow_s": tv, "torch_s": tt}
            speed = f"{tt / tv:.2f}" if tv and tt else "n/a"
            rows.append(f"| {op} {dt} {'x'.join(map(str, d))}{label} | {tv * 1e3 if tv else float('nan'):.3f} | "
                        f"{tt * 1e3 if tt else float('nan'):.3f} | {speed} | {rate(op, dt, d, tv)} | "
                        f"{rate(peer, dt, d, tt)} |")
    gpu = torch.cuda.get_device_name(0)
    print(f"GPU: {gpu} (vggflow context: {ctx.get('gpu', '?')}); PyTorch {torch.__version__}\n")
    print("| case | vggflow ms | PyTorch ms | speed vs PyTorch (PyTorch ms / vggflow ms) | vggflow rate | PyTorch rate |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    if a.out:
        json.dump({"gpu": gpu, "torch": torch.__version__, "cases": raw}, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
