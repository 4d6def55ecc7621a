"""Makes sure the golden generators run under an interpreter with torch and numpy.

`python3` on PATH may be a pyenv or venv interpreter without Debian's python3-torch and
python3-numpy; require_torch() then re-runs the calling script under /usr/bin/python3.
Call it before importing numpy or torch.
"""
import os
import sys


def require_torch():
    try:
        import numpy  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        system = "/usr/bin/python3"
        if os.path.realpath(sys.executable) != os.path.realpath(system) and os.path.exists(system):
            os.execv(system, [system] + sys.argv)
        raise
