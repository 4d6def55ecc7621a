#!/usr/bin/env python3
"""safetensors interoperability between our C++ reader/writer and the reference Python package.

    safetensors_interop.py VGG_ST_CHECK WORKDIR [--venv DIR]

VGG_ST_CHECK is the vgg_st_check binary (tools/st_check.cpp); WORKDIR receives the files.
(a) `vgg_st_check write` saves fixed content (listed in tools/st_check.cpp); the reference parser
    (`safetensors.deserialize`, the Rust implementation) must accept the file, and every tensor's
    dtype, shape and bytes must match what this script recomputes. Tensors numpy can represent are
    also read through `safe_open(framework="np")`, the path `safetensors.numpy.load_file` takes;
    bf16 (which numpy lacks) is decoded from its raw bytes. The data start must be 8-byte aligned.
(b) `safetensors.numpy.save_file` writes fixed content (f32, f64, f16 incl. subnormal/inf/nan, i64,
    i32, u8, i8, i16, bool, 0-dim, zero-size, metadata) and `vgg_st_check verify` checks it; a bf16
    file is written with `safetensors.serialize_file` where the installed version allows it and
    checked with `vgg_st_check verify-bf16`.

Exit 0 on success, 1 on a mismatch (with a message), 77 when the package cannot be had. When
`import safetensors` fails, the script tries once to make a virtual environment (--venv, default
WORKDIR/pyvenv) that inherits the system packages, pip-installs safetensors and numpy into it, and
re-runs itself there.
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys

SKIP = 77
REEXEC_MARK = "VGG_ST_INTEROP_REEXEC"


def skip(reason):
    print(f"SKIP: python safetensors package not available ({reason})")
    sys.exit(SKIP)


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def ensure_package(venv):
    """Returns when numpy and safetensors import; otherwise re-executes under a venv that has them."""
    try:
        import numpy  # noqa: F401
        import safetensors  # noqa: F401
        import safetensors.numpy  # noqa: F401
        return
    except ImportError as e:
        first_error = str(e)
    if os.environ.get(REEXEC_MARK):
        skip(f"still missing inside {venv}: {first_error}")
    py = os.path.join(venv, "bin", "python")
    probe = [py, "-c", "import numpy, safetensors, safetensors.numpy"]

    def works():
        try:
            return os.path.exists(py) and subprocess.run(probe, capture_output=True, timeout=60).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False

    if not works():
        print(f"{first_error}; installing safetensors into {venv}", flush=True)
        try:
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv],
                           check=True, capture_output=True, timeout=120)
            subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--timeout", "20",
                            "--retries", "1", "safetensors", "numpy"], check=True, capture_output=True, timeout=120)
        except subprocess.CalledProcessError as e:
            shutil.rmtree(venv, ignore_errors=True)
            tail = (e.stderr or b"").decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            skip(f"{' '.join(map(str, e.cmd[:4]))} failed: {tail[0]}")
        except (OSError, subprocess.SubprocessError) as e:
            shutil.rmtree(venv, ignore_errors=True)
            skip(f"cannot make {venv}: {e}")
        if not works():
            skip(f"{venv} was made but cannot import safetensors")
    env = dict(os.environ, **{REEXEC_MARK: "1"})
    sys.stdout.flush()
    os.execve(py, [py, os.path.abspath(__file__)] + sys.argv[1:], env)


def run_tool(tool, *args, expect_rc=0):
    r = subprocess.run([tool, *args], capture_output=True, text=True, timeout=120)
    if r.returncode != expect_rc:
        fail(f"{os.path.basename(tool)} {' '.join(args)} exited {r.returncode} (expected {expect_rc}): "
             f"{(r.stderr or r.stdout).strip()}")
    return r


def expected_cpp_content(np):
    """What `vgg_st_check write` saves: name -> (safetensors dtype, numpy array or bf16 bits)."""
    i6 = np.arange(6, dtype=np.float64)
    f32 = (i6 * 0.5 - 1).astype(np.float32).reshape(2, 3)
    bf16_values = (i6 * 0.25 - 0.5).astype(np.float32).reshape(3, 2)  # exact in bf16
    bf16_bits = (bf16_values.view(np.uint32) >> 16).astype(np.uint16)
    return {
        "f32": ("F32", f32),
        "f32_t": ("F32", np.ascontiguousarray(f32.T)),
        "f64": ("F64", np.arange(4, dtype=np.float64) / 3.0),
        "bf16": ("BF16", bf16_bits),
        "i32": ("I32", np.arange(5, dtype=np.int32) - 2),
        "i64": ("I64", np.array([[-(1 << 40), 7], [(1 << 53) + 1, -1]], dtype=np.int64)),
        "bool": ("BOOL", np.array([True, False, False, True])),
        "scalar": ("F32", np.array(3.5, dtype=np.float32)),
        "empty": ("F32", np.zeros((0, 3), dtype=np.float32)),
    }


def check_cpp_file(np, safetensors, path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    if (8 + n) % 8:
        fail(f"{path}: data section starts at {8 + n}, not a multiple of 8")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    if list(header) != sorted(header):
        fail(f"{path}: header keys are not sorted: {list(header)}")
    want = expected_cpp_content(np)
    want_md = {"producer": "vgg_st_check", "note": "σ ✓"}
    if header.get("__metadata__") != want_md:
        fail(f"{path}: __metadata__ is {header.get('__metadata__')!r}, expected {want_md!r}")
    try:
        got = dict(safetensors.deserialize(data))  # the reference (Rust) parser validates the whole file
    except Exception as e:  # noqa: BLE001
        fail(f"{path}: the reference parser rejects the file: {e}")
    if sorted(got) != sorted(want):
        fail(f"{path}: tensors {sorted(got)}, expected {sorted(want)}")
    for name, (dtype, arr) in want.items():
        info = got[name]
        if info["dtype"] != dtype or list(info["shape"]) != list(arr.shape):
            fail(f"{path}: tensor '{name}' is {info['dtype']}{list(info['shape'])}, expected {dtype}{list(arr.shape)}")
        if bytes(info["data"]) != arr.tobytes():
            fail(f"{path}: tensor '{name}' bytes differ: {bytes(info['data']).hex()} vs {arr.tobytes().hex()}")
    with safetensors.safe_open(path, framework="np") as f:
        if (f.metadata() or {}) != want_md:
            fail(f"{path}: safe_open metadata {f.metadata()!r}, expected {want_md!r}")
        for name, (dtype, arr) in want.items():
            if dtype == "BF16":
                continue
            t = f.get_tensor(name)
            if t.dtype != arr.dtype or t.shape != arr.shape or not np.array_equal(t, arr):
                fail(f"{path}: safe_open gives '{name}' = {t!r}, expected {arr!r}")
    print(f"ok: the reference package reads {len(want)} tensors + metadata written by vgg_st_check")


def python_content(np):
    """What `vgg_st_check verify` expects (see tools/st_check.cpp)."""
    f16_bits = np.array([0x0000, 0x8000, 0x3C00, 0x0001, 0x7BFF, 0x7C00, 0xFC00, 0x3555, 0x7E00], dtype=np.uint16)
    return {
        "f32": ((np.arange(6, dtype=np.float64) - 2.5) * 0.75).astype(np.float32).reshape(2, 3),
        "f64": np.arange(3, dtype=np.float64) / 7.0,
        "f16": f16_bits.view(np.float16),
        "i64": np.array([[-(1 << 40), 7], [(1 << 53) + 1, -1]], dtype=np.int64),
        "i32": np.array([-5, 0, 5], dtype=np.int32),
        "u8": np.array([0, 200, 255], dtype=np.uint8),
        "i8": np.array([-128, 127], dtype=np.int8),
        "i16": np.array([-32768, 32767], dtype=np.int16),
        "bool": np.array([True, False, True]),
        "scalar": np.array(-1.25, dtype=np.float64),
        "empty": np.zeros((2, 0), dtype=np.float32),
    }


def write_bf16(np, safetensors, path):
    """Writes bf16 [2, 2] bits 3f80 c000 3e80 7f80 through the package; False when this version cannot."""
    bits = np.array([[0x3F80, 0xC000], [0x3E80, 0x7F80]], dtype=np.uint16)
    try:
        if hasattr(safetensors, "TensorSpec"):  # newer versions take raw pointers
            spec = safetensors.TensorSpec(dtype="bfloat16", shape=bits.shape, data_ptr=bits.ctypes.data,
                                          data_len=bits.nbytes)
            safetensors.serialize_file({"bf16": spec}, path)
        else:  # older versions take bytes
            safetensors.serialize_file({"bf16": {"dtype": "bfloat16", "shape": list(bits.shape),
                                                 "data": bits.tobytes()}}, path)
    except Exception as e:  # noqa: BLE001
        print(f"note: this safetensors version cannot write bf16 from Python ({e}); bf16 load check skipped")
        return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tool")
    ap.add_argument("workdir")
    ap.add_argument("--venv")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    ensure_package(args.venv or os.path.join(args.workdir, "pyvenv"))
    import numpy as np
    import safetensors
    from safetensors.numpy import save_file

    print(f"python {sys.version.split()[0]} ({sys.executable}), numpy {np.__version__}, "
          f"safetensors {safetensors.__version__}")
    tool = os.path.abspath(args.tool)
    run_tool(tool, expect_rc=2)  # usage error

    # (a) C++ writes, the reference reads
    cpp_file = os.path.join(args.workdir, "from_cpp.safetensors")
    run_tool(tool, "write", cpp_file)
    check_cpp_file(np, safetensors, cpp_file)

    # (b) the reference writes, C++ reads
    py_file = os.path.join(args.workdir, "from_python.safetensors")
    save_file(python_content(np), py_file, metadata={"producer": "safetensors_interop.py", "format": "np"})
    print(run_tool(tool, "verify", py_file).stdout.strip())
    bf16_file = os.path.join(args.workdir, "from_python_bf16.safetensors")
    if write_bf16(np, safetensors, bf16_file):
        print(run_tool(tool, "verify-bf16", bf16_file).stdout.strip())

    # the C++ check does catch a difference: the C++-written file is not the Python content
    r = run_tool(tool, "verify", cpp_file, expect_rc=1)
    if "mismatch" not in r.stderr:
        fail(f"vgg_st_check verify on the wrong file said: {r.stderr.strip()}")
    for p in (cpp_file, py_file, bf16_file):
        if os.path.exists(p):
            os.remove(p)
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
