#!/usr/bin/python3
"""PyTorch golden files for vggflow's AdamW (tests/nn/test_optim.cpp, suite GoldenAdamW).

How to regenerate (from the repository root):

    python3 tools/golden/adamw.py          # Debian's python3-torch 1.13.1 + python3-numpy

(If `python3` on PATH is another interpreter without torch, the script re-runs itself under
/usr/bin/python3.) The script wipes and rewrites tests/data/optim/adamw/. It is deterministic:
inputs come from a NumPy generator with a fixed seed; no torch RNG is used.

The run: three parameter groups, each stepped by torch.optim.AdamW (foreach=False, the
per-tensor path) for STEPS steps. Before every step the gradients are set from files, each
group's gradients are clipped with torch.nn.utils.clip_grad_norm_ over that group alone (when
the group's max_grad_norm > 0), and every group's lr is set to base_lr * lr_factor[step].
One parameter has no gradient at one step (torch skips it: no decay, no moment update, its
step count does not advance).

Files in tests/data/optim/adamw/ (all .npy, float64 or float32 as the parameter):
    init.<group>.<param>.npy        the parameter before the first step
    grad<k>.<group>.<param>.npy     its gradient before step k (k = 0, 1, ...); absent = none
    after<k>.<group>.<param>.npy    the parameter after step k
    exp_avg.<group>.<param>.npy     torch's first moment after the last step
    exp_avg_sq.<group>.<param>.npy  torch's second moment after the last step
and manifest.txt, one record per line (floats written with repr(), exact round trip):
    steps <n>
    lr_factor <f0>,<f1>,...
    group <name> lr=<x> beta1=<x> beta2=<x> eps=<x> weight_decay=<x> max_grad_norm=<x>
    param <group> <name> <f32|f64> <d0,d1,...>
    nograd <k> <group> <param>
    norm <k> <group> <total grad norm before clipping, as torch computed it> clipped=<0|1>
    step <group> <param> <torch's step count after the last step>
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import system_python  # noqa: E402

system_python.require_torch()
import numpy as np
import torch

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT_DIR = os.path.join(ROOT, "tests", "data", "optim", "adamw")

torch.manual_seed(0)
torch.set_num_threads(1)

STEPS = 3
LR_FACTOR = [1.0, 0.75, 0.5]
# name, hyper-parameters, params (name, dtype, shape, gradient scale)
GROUPS = [
    ("a", dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, max_grad_norm=1.0),
     [("w0", "f64", (3, 4), 1.0), ("w1", "f64", (5,), 2.0)]),
    ("b", dict(lr=3e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2, max_grad_norm=0.0),
     [("x", "f32", (2, 3), 0.5), ("y", "f32", (7,), 1e-3)]),
    ("c", dict(lr=5e-3, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=1e-4, max_grad_norm=0.3),
     [("z", "f32", (4, 2), 1.0)]),
]
NOGRAD = {(1, "a", "w1")}  # (step, group, param) without a gradient


def fmt(v):
    return repr(float(v))


def main():
    if os.path.isdir(OUT_DIR):
        shutil.rmtree(OUT_DIR)
    os.makedirs(OUT_DIR)
    rng = np.random.default_rng(20240607)
    lines = [f"steps {STEPS}", "lr_factor " + ",".join(fmt(f) for f in LR_FACTOR)]

    def save(name, a):
        np.save(os.path.join(OUT_DIR, name + ".npy"), np.ascontiguousarray(a))

    torch_groups, tensors = [], {}
    for gname, hp, params in GROUPS:
        lines.append(f"group {gname} " + " ".join(f"{k}={fmt(v)}" for k, v in hp.items()))
        ts = []
        for pname, dt, shape, _ in params:
            lines.append(f"param {gname} {pname} {dt} " + ",".join(str(d) for d in shape))
            a = rng.standard_normal(shape).astype(np.float64 if dt == "f64" else np.float32)
            save(f"init.{gname}.{pname}", a)
            t = torch.from_numpy(a.copy()).requires_grad_(True)
            tensors[(gname, pname)] = t
            ts.append(t)
        torch_groups.append(dict(params=ts, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                                 weight_decay=hp["weight_decay"]))
    opt = torch.optim.AdamW(torch_groups, foreach=False)

    for k in range(STEPS):
        for gi, (gname, hp, params) in enumerate(GROUPS):
            opt.param_groups[gi]["lr"] = hp["lr"] * LR_FACTOR[k]
            for pname, dt, shape, scale in params:
                t = tensors[(gname, pname)]
                if (k, gname, pname) in NOGRAD:
                    t.grad = None
                    lines.append(f"nograd {k} {gname} {pname}")
                    continue
                g = (scale * rng.standard_normal(shape)).astype(np.float64 if dt == "f64" else np.float32)
                save(f"grad{k}.{gname}.{pname}", g)
                t.grad = torch.from_numpy(g.copy())
            ps = [tensors[(gname, p[0])] for p in params]
            if hp["max_grad_norm"] > 0:
                norm = float(torch.nn.utils.clip_grad_norm_(ps, hp["max_grad_norm"]))
                clipped = hp["max_grad_norm"] / (norm + 1e-6) < 1.0
            else:
                gs = [p.grad for p in ps if p.grad is not None]
                norm = float(torch.norm(torch.stack([torch.norm(g) for g in gs])))
                clipped = False
            lines.append(f"norm {k} {gname} {fmt(norm)} clipped={int(clipped)}")
        opt.step()
        for (gname, pname), t in tensors.items():
            save(f"after{k}.{gname}.{pname}", t.detach().numpy())

    for (gname, pname), t in tensors.items():
        st = opt.state[t]
        save(f"exp_avg.{gname}.{pname}", st["exp_avg"].numpy())
        save(f"exp_avg_sq.{gname}.{pname}", st["exp_avg_sq"].numpy())
        lines.append(f"step {gname} {pname} {int(st['step'].item())}")

    with open(os.path.join(OUT_DIR, "manifest.txt"), "w") as f:
        f.write("# AdamW golden run written by tools/golden/adamw.py (torch " + torch.__version__ + ")\n")
        f.write("\n".join(lines) + "\n")
    total = sum(os.path.getsize(os.path.join(OUT_DIR, n)) for n in os.listdir(OUT_DIR))
    print(f"wrote {len(os.listdir(OUT_DIR))} files ({total} bytes) to {OUT_DIR}")


if __name__ == "__main__":
    main()
