"""CTest compare_report.synthetic: tools/compare-report on run folders written here, with curves
whose matched-reward readings and bootstrap intervals are known (argv: the script, a work folder)."""
import json
import os
import re
import shutil
import subprocess
import sys

script, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
runs = os.path.join(work, "runs")
# reward and FD to base at updates 0, 20, 40 (the same for both seeds)
curves = {"vggflow": ([5.0, 6.0, 7.0], [50.0, 70.0, 90.0]), "refl": ([5.0, 5.5, 6.5], [50.0, 60.0, 100.0])}
for m, (rew, fd) in curves.items():
    for s in (0, 1):
        d = os.path.join(runs, f"{m}-s{s}")
        os.makedirs(d)
        cfg = {"steps": 40, "batch": 8, "sample_steps": 20, "guidance": 4.0, "rank": 8, "lr": 5e-4, "beta": 300.0,
               "eta": "t2", "bins": 2, "eval_per_prompt": 16, "reward": "aesthetic", "am_times": 4}
        json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
        with open(os.path.join(d, "metrics.jsonl"), "w") as f:
            for i, st in enumerate((0, 20, 40)):
                per = [rew[i] + 0.1 * (p - 4.5) + 0.05 * s for p in range(10)]  # mean rew[i] + 0.05 s
                ev = {"reward": rew[i], "gold": rew[i] - 0.5, "fb_accuracy": 0.9, "diversity": 0.2 + 0.01 * i,
                      "fd_base": fd[i], "fd_real": 100.0, "near_white": 0.05, "fd_base_floor": 50.0,
                      "fd_real_floor": 40.0, "reward_per_prompt": per, "gold_per_prompt": [x - 0.5 for x in per],
                      "fd_base_per_prompt": [fd[i]] * 10, "diversity_per_prompt": [0.2 + 0.01 * i] * 10,
                      "pixel_diversity_per_prompt": [0.3] * 10,
                      "reference": {"real": {"fd_base": 180.0, "diversity": 0.42, "pixel_diversity": 0.32},
                                    "collapsed": {"fd_base": 235.0, "diversity": 0.0, "pixel_diversity": 0.0}}}
                if st > 0:
                    for k in range(st - 19, st + 1):
                        f.write(json.dumps({"step": k, "update_s": 1.0, "reward": rew[i]}) + "\n")
                f.write(json.dumps({"step": st, "eval": ev, "elapsed_s": 60.0 * (i + 1)}) + "\n")
out = os.path.join(work, "page", "results.md")
os.makedirs(os.path.dirname(out))
r = subprocess.run([script, "--runs", runs, "--out", out, "--methods", "vggflow refl", "--seeds", "0 1"],
                   capture_output=True, text=True)
assert r.returncode == 0, r.stderr
page = open(out).read()
# matched reward: levels 5.375, 5.75, 6.125 between the base's 5.0 and the lower best (ReFL's 6.5)
assert "reward 5.375: FD / gold / diversity" in page and "reward 6.125" in page, page
assert "| VGG-Flow | 57.5 / 4.875 / 0.204 | 65.0 / 5.250 / 0.208 | 72.5 / 5.625 / 0.211 |" in page, page
assert "| ReFL | 57.5 / 4.875 / 0.208 | 70.0 / 5.250 / 0.213 | 85.0 / 5.625 / 0.216 |" in page, page
# bootstrap: the final reward's grand mean (7.025 and 6.525) inside its interval, which is not a point
row = next(l for l in page.splitlines() if l.startswith("| VGG-Flow | 7.025 ["))
lo, hi = map(float, re.match(r"\| VGG-Flow \| 7\.025 \[([0-9.]+), ([0-9.]+)\]", row).groups())
assert lo < 7.025 < hi and hi - lo < 0.5, row
assert "| ReFL | 6.525 [" in page and "| real (reference) |" in page and "| collapsed (reference) |" in page, page
print("COMPARE_REPORT_OK")
