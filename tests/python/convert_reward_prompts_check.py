#!/usr/bin/env python3
"""tools/convert_reward.py --prompts reads the prompt list of a text file or of a prompt embeddings
file (its "prompts" metadata, in row order); a file without it is refused in one line. Needs no torch.

    convert_reward_prompts_check.py REPO PROMPTS.safetensors WORKDIR
"""
import json
import os
import subprocess
import sys

repo, embeddings, work = sys.argv[1:4]
sys.path.insert(0, os.path.join(repo, "tools"))
import convert_reward as cr  # noqa: E402  (imports torch only in main)

os.makedirs(work, exist_ok=True)
assert cr.read_prompts(embeddings) == ["a cat", "a dog", "a bird"], cr.read_prompts(embeddings)
txt = os.path.join(work, "p.txt")
with open(txt, "w", encoding="utf-8") as f:
    f.write("a fox\n\n  an owl  \n")
assert cr.read_prompts(txt) == ["a fox", "an owl"]
# a safetensors file without the metadata: one line naming it, exit 1
bare = os.path.join(work, "bare.safetensors")
header = json.dumps({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
with open(bare, "wb") as f:
    f.write(len(header).to_bytes(8, "little") + header + b"\0\0\0\0")
child = f"import sys; sys.path.insert(0, {os.path.join(repo, 'tools')!r}); import convert_reward as c; c.read_prompts({bare!r})"
p = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
assert p.returncode == 1 and p.stderr.count("\n") == 1 and "bare.safetensors has no 'prompts' metadata" in p.stderr, p
print("CONVERT_REWARD_PROMPTS_OK")
