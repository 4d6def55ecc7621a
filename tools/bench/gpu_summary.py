#!/usr/bin/env python3
"""Collects tools/gpu-check's results into one table and summary.json.

usage: gpu_summary.py --logs DIR --gpu NAME --commit SHA [--json OUT]

Reads from DIR: gtest_*.json (the cuda tests), bench_gpu_torch.json (gpu_compare.py: vggflow and
PyTorch seconds per case), bench_gpu.json (vgg_bench_gpu's rates), sd3_vgg.json and sd3_torch.json
(the SD3-medium step and its diffusers + PEFT peer). Writes
{date, gpu, commit, cuda_tests_passed, cuda_tests_failed, failed_tests, cases: [{case, vggflow_ms, peer,
peer_ms, speed, rate}]} with speed = peer_ms / vggflow_ms (above 1: vggflow is faster).
"""
import argparse
import datetime
import glob
import json
import os

UNIT_S = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def load(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None


def tests(logs):
    passed, failed, names = 0, 0, []
    for f in sorted(glob.glob(os.path.join(logs, "gtest_*.json"))):
        d = load(f)
        if not d:
            continue
        for suite in d.get("testsuites", []):
            for t in suite.get("testsuite", []):
                if t.get("result") == "SKIPPED" or t.get("status") == "NOTRUN":
                    continue
                if t.get("failures"):
                    failed += 1
                    names.append(f"{suite['name']}.{t['name']}")
                else:
                    passed += 1
    return passed, failed, names


def bench_rates(logs):
    """case name -> (seconds, rate string) from vgg_bench_gpu's JSON (medians)"""
    out = {}
    for fname in ("bench_gpu.json", "sd3_vgg.json"):
        d = load(os.path.join(logs, fname))
        for b in (d or {}).get("benchmarks", []):
            if b.get("error_occurred"):
                continue
            if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
                continue
            name = b.get("run_name") or b["name"]
            rate = ""
            for k in ("TFLOP/s", "GB/s"):
                if k in b:  # the counters are already in their units
                    rate = f"{b[k]:.1f} {k}" if k == "TFLOP/s" else f"{b[k]:.0f} {k}"
            out[name] = (b["real_time"] * UNIT_S[b.get("time_unit", "ns")], rate)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--logs", required=True)
    ap.add_argument("--gpu", default="")
    ap.add_argument("--commit", default="")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    passed, failed, failed_names = tests(a.logs)
    rates = bench_rates(a.logs)
    cases = []
    torch_cases = (load(os.path.join(a.logs, "bench_gpu_torch.json")) or {}).get("cases", {})
    for name, r in torch_cases.items():
        base = name.split(" vs ")[0]
        peer = "PyTorch eager" + (f" ({name.split(' vs ')[1]})" if " vs " in name else "")
        tv, tt = r.get("vggflow_s"), r.get("torch_s")
        cases.append({"case": base.replace("BM_", "").replace("/manual_time", ""), "vggflow_ms": tv * 1e3 if tv else None,
                      "peer": peer, "peer_ms": tt * 1e3 if tt else None,
                      "speed": round(tt / tv, 3) if tv and tt else None, "rate": rates.get(base, (0, ""))[1]})
    sd3 = (load(os.path.join(a.logs, "sd3_torch.json")) or {}).get("cases", {})
    for name, (tv, rate) in rates.items():
        if not name.startswith("BM_sd3_step"):
            continue
        parts = name.split("/")  # BM_sd3_step/train/1024/iterations:5/manual_time
        key = f"{parts[1]}/{parts[2]}"
        peer = sd3.get(key, {})
        tt = peer.get("mean_ms", peer.get("min_ms"))  # like for like: both sides' mean of 5 steps
        cases.append({"case": f"sd3_step {key}", "vggflow_ms": tv * 1e3, "peer": "diffusers + PEFT, PyTorch eager",
                      "peer_ms": tt, "speed": round(tt / (tv * 1e3), 3) if tt else None, "rate": rate})
    s = {"date": datetime.date.today().isoformat(), "gpu": a.gpu, "commit": a.commit, "cuda_tests_passed": passed,
         "cuda_tests_failed": failed, "failed_tests": failed_names, "cases": cases}
    if a.json:
        json.dump(s, open(a.json, "w"), indent=1)
    print(f"cuda tests: {passed} passed, {failed} failed" + (f" ({', '.join(failed_names)})" if failed_names else ""))
    print("| case | vggflow ms | peer | peer ms | speed (peer/vggflow) | vggflow rate |")
    print("|---|---|---|---|---|---|")
    for c in cases:
        f = lambda v: f"{v:.3f}" if isinstance(v, (int, float)) else "n/a"  # noqa: E731
        print(f"| {c['case']} | {f(c['vggflow_ms'])} | {c['peer']} | {f(c['peer_ms'])} | "
              f"{c['speed'] if c['speed'] is not None else 'n/a'} | {c['rate']} |")


if __name__ == "__main__":
    main()
