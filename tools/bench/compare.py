#!/usr/bin/env python3
"""Merges vgg_bench_cpu's JSON and torch_cpu_ops.py's JSON into one Markdown table.

usage: compare.py VGG_JSON TORCH_JSON [--threads N]

vggflow's time per case is the median aggregate when the run used repetitions, else the
mean over its iteration runs; PyTorch's is the median of its samples. Both are wall-clock.
ratio = vggflow / PyTorch (< 1: vggflow is faster). GFLOP/s is given for matmul, bmm and
attention (attention counts the two matmuls, 4*B*H*S*S*D, not the softmax).
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_cpu_ops import case_key, parse_case  # noqa: E402

UNIT_S = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def load_vgg(path):
    with open(path) as f:
        data = json.load(f)
    medians, iters, errors, order = {}, {}, {}, []
    for b in data.get("benchmarks", []):
        key = case_key(b.get("run_name") or b["name"])
        if key not in order:
            order.append(key)
        if b.get("error_occurred"):
            errors[key] = b.get("error_message", "error")
            continue
        t = b["real_time"] * UNIT_S[b.get("time_unit", "ns")]
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[key] = t
        else:
            iters.setdefault(key, []).append(t)
    times = {k: medians.get(k, sum(iters[k]) / len(iters[k]) if k in iters else None) for k in order}
    return data.get("context", {}), order, times, errors


def flops(op, d):
    if op == "matmul":
        return 2.0 * d[0] * d[1] * d[2]
    if op == "bmm":
        return 2.0 * d[0] * d[1] * d[2] * d[3]
    if op.startswith("attention"):
        return 4.0 * d[0] * d[1] * d[2] * d[2] * d[3]
    if op.startswith("mmdit"):  # the tiny config: matmuls + attention of one forward (x3 for a step)
        b, s, t = d
        D, L, ni = 128.0, 4.0, (s // 2) ** 2
        n = ni + t
        f = 24 * ni * D * D * L + 24 * t * D * D * (L - 1) + 6 * t * D * D + 4 * n * n * D * (L - 1) + 4 * ni * n * D
        f += 2 * ni * 4 * D + 2 * t * 64 * D + 2 * ni * D * 4
        return f * b * (3.0 if op == "mmdit_step" else 1.0)
    return None


def shape_str(op, d):
    if op == "matmul":
        return f"[{d[0]},{d[1]}]@[{d[1]},{d[2]}]"
    if op == "bmm":
        return f"[{d[0]},{d[1]},{d[2]}]@[{d[0]},{d[2]},{d[3]}]"
    if op.startswith("attention"):
        return f"B{d[0]} H{d[1]} S{d[2]} D{d[3]}"
    if op.startswith("mmdit"):
        return f"tiny, B{d[0]}, {d[1]}x{d[1]} px, {d[2]} text tokens"
    return "[" + ",".join(str(x) for x in d) + "]"


def fmt_time(t):
    if t is None:
        return "-"
    if t < 1e-3:
        return f"{t * 1e6:.1f} us"
    if t < 1.0:
        return f"{t * 1e3:.2f} ms"
    return f"{t:.3f} s"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def deb_version(pkg):
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True, timeout=10)
        return r.stdout.strip() if r.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vgg_json")
    ap.add_argument("torch_json", nargs="+", help="one or more runs of torch_cpu_ops.py; the fastest per case is used")
    ap.add_argument("--threads", type=int, default=None, help="thread count both sides were asked to use")
    ap.add_argument("--title", default="CPU ops: vggflow vs PyTorch")
    a = ap.parse_args()
    try:
        vctx, order, vtimes, verrors = load_vgg(a.vgg_json)
        truns = []
        for path in a.torch_json:
            with open(path) as f:
                truns.append(json.load(f))
        tdata = truns[0]
    except (OSError, ValueError, KeyError) as e:
        print(f"compare.py: {e}", file=sys.stderr)
        return 2
    tctx = tdata.get("context", {})
    ttimes = {}
    for run in truns:
        for b in run.get("benchmarks", []):
            t = b["median_s"]
            ttimes[b["name"]] = min(t, ttimes.get(b["name"], t))

    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    deb = deb_version("python3-torch")
    print(f"# {a.title}\n")
    print(f"- CPU: {cpu_model()}, nproc {nproc}, load average after the run {load}")
    print(f"- threads: {a.threads if a.threads else '?'} "
          f"(vggflow OpenMP {vctx.get('omp_max_threads', '?')}, OpenBLAS {vctx.get('openblas_threads', '?')}; "
          f"torch {tctx.get('torch_threads', '?')}, {tctx.get('torch_parallel_backend', '?')})")
    print(f"- OpenBLAS (vggflow): {vctx.get('openblas_config', '?')}")
    print(f"- PyTorch: {tctx.get('torch_version', '?')}" + (f" (Debian python3-torch {deb})" if deb else "") +
          f", python {tctx.get('python', '?')}, BLAS {', '.join(tctx.get('blas_libs', [])) or '?'}")
    if len(truns) > 1:
        print(f"- PyTorch time per case: the fastest of {len(truns)} runs with different thread settings: " +
              "; ".join(r.get("context", {}).get("label", "?") for r in truns))
    print(f"- timing: wall clock, median of {tctx.get('reps', '?')} samples of >= {tctx.get('min_time_s', '?')} s "
          f"each, f32, no grad (mmdit_step: with grad); Google Benchmark library build: {vctx.get('library_build_type', '?')}")
    print("- ratio = vggflow / PyTorch (< 1: vggflow faster); mmdit cases run the PyTorch reference model of "
          "tools/golden/mmdit_ref.py; both attention cases are compared with "
          "torch's softmax(q@k^T*scale)@v\n")

    print("| op | shape | vggflow | PyTorch | ratio | vggflow GFLOP/s | PyTorch GFLOP/s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for key in order:
        op, dims = parse_case(key)
        vt, tt = vtimes.get(key), ttimes.get(key)
        fl = flops(op, dims)
        ratio = f"{vt / tt:.2f}" if vt and tt else "-"
        vg = f"{fl / vt / 1e9:.1f}" if fl and vt else "-"
        tg = f"{fl / tt / 1e9:.1f}" if fl and tt else "-"
        vcell = f"error: {verrors[key]}" if key in verrors else fmt_time(vt)
        print(f"| {op} | {shape_str(op, dims)} | {vcell} | {fmt_time(tt)} | {ratio} | {vg} | {tg} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
