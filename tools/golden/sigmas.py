#!/usr/bin/python3
"""Prints the FlowMatchEulerDiscreteScheduler σ schedule for n steps, computed the way diffusers
does (float32 training table in torch, float64 numpy linspace, shift again, float32), to check
vggflow/schedule.cpp (tests/nn/test_mmdit.cpp, FlowSchedule.*).

    python3 tools/golden/sigmas.py 20 [shift]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import system_python  # noqa: E402

system_python.require_torch()
import numpy as np  # noqa: E402
import torch  # noqa: E402


def schedule(n, shift=3.0, train=1000):
    t = torch.from_numpy(np.linspace(1, train, train, dtype=np.float32)[::-1].copy()).to(torch.float32)
    table = t / train
    table = shift * table / (1 + (shift - 1) * table)
    smax, smin = table[0].item(), table[-1].item()
    ts = np.linspace(smax * train, smin * train, n)
    s = ts / train
    s = shift * s / (1 + (shift - 1) * s)
    s = torch.from_numpy(s).to(torch.float32)
    return torch.cat([s, torch.zeros(1)]).tolist()


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    shift = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    print(", ".join("%.9g" % v for v in schedule(n, shift)))
