"""CTest train.presets_and_rates: checks the run folders vgg_train wrote (argument: their parent)."""
import json
import sys

d = sys.argv[1]
c = {r: json.load(open(f"{d}/{r}/config.json")) for r in ("refl", "pmp", "paper", "nu0")}
# -1 resolves to the method's paper rate, and the value net's to --lr
assert c["refl"]["lr"] == 1e-4 and c["refl"]["lr_value"] == 1e-4, c["refl"]
assert c["pmp"]["lr"] == 1e-4, c["pmp"]
assert c["nu0"]["lr"] == 5e-4 and c["nu0"]["lr_value"] == 0, c["nu0"]
# the preset under the flags
p = c["paper"]
assert p["preset"] == "paper" and p["guidance"] == 5.0 and p["eval_per_prompt"] == 64 and p["ckpt_every"] == 20, p
assert p["steps"] == 1 and p["batch"] == 2 and p["bins"] == 2, p
assert c["refl"]["preset"] == "none" and c["refl"]["guidance"] == 4.0, c["refl"]
# nu frozen at zero: its boundary term is exactly 0; the samples' out-of-range fraction is logged
m = json.loads(open(f"{d}/nu0/metrics.jsonl").readline())
assert m["loss_boundary"] == 0.0 and 0 <= m["x1_out_of_range"] <= 1, m
# DRaFT-K with a random K in [1, 3] of 4 steps: the graph starts at step 4 - K
assert 1 <= json.loads(open(f"{d}/paper/metrics.jsonl").readline())["graph_step"] <= 3
print("TRAIN_PRESETS_OK")
