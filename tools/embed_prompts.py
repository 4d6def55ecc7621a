#!/usr/bin/env python3
"""Precomputes SD3 / SD3.5 prompt embeddings for `vgg_train --pipeline sd3 --prompts FILE`
(vggflow/sd3.h). Run it where PyTorch, transformers and the pipeline's text encoders are; vggflow
itself never imports Python.

    tools/embed_prompts.py --model SD3_FOLDER --prompts prompts/simple_animals.txt --out animals.safetensors
    tools/embed_prompts.py --model SD3_FOLDER --prompts hpd --out hpd.safetensors       # HPDv2 photo + paintings [10:]

SD3's encoding, as diffusers' StableDiffusion3Pipeline.encode_prompt does it (clip_skip none):
  * CLIP-L (text_encoder, tokenizer) and CLIP-G (text_encoder_2, tokenizer_2): 77 tokens, padded to
    max_length and truncated; the penultimate hidden state of each, concatenated ([77, 768 + 1280])
    and zero-padded to T5's width 4096; the projected pooled outputs concatenated ([2048]);
  * T5-XXL (text_encoder_3, tokenizer_3): --max-sequence-length tokens (256), its last hidden state
    ([256, 4096]); zeros when the folder has no text_encoder_3 (or with --no-t5);
  * tokens = [CLIP ; T5] along the sequence: [333, 4096].
The file holds "tokens" [N + 1, T, 4096] and "pooled" [N + 1, 2048] with the empty prompt "" last
(the unconditional branch of classifier-free guidance, encoded like any prompt), and the prompt
texts as the JSON metadata "prompts". The reward models' text features (HPSv2.1, PickScore) come
from tools/convert_reward.py --prompts.

A prompts file has one prompt per line (blank lines skipped); "hpd" takes the HPDv2 benchmark's
photo and paintings prompts from the installed hpsv2 package, entries [10:] of each (the official
VGG-Flow code's training split). Nothing is overwritten without --force.
"""
import argparse
import json
import os
import sys


def fail(msg):
    print(f"embed_prompts.py: {msg}", file=sys.stderr)
    sys.exit(1)


def read_prompts(spec):
    if spec == "hpd":
        try:
            import hpsv2
        except ImportError:
            fail("--prompts hpd needs the hpsv2 package (pip install hpsv2)")
        styles = hpsv2.benchmark_prompts("all")
        return list(styles["photo"][10:]) + list(styles["paintings"][10:])
    if not os.path.isfile(spec):
        fail(f"--prompts: {spec} does not exist (a text file, one prompt per line, or 'hpd')")
    with open(spec, encoding="utf-8") as f:
        prompts = [line.strip() for line in f if line.strip()]
    if not prompts:
        fail(f"--prompts: {spec} holds no prompt")
    return prompts


def encode(texts, parts, max_sequence_length, device, dtype):
    """tokens [B, 77 + L, 4096] and pooled [B, 2048] of texts (the encoding described at the top)."""
    import torch
    hidden, pooled = [], []
    for tok, enc in parts["clip"]:
        ids = tok(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids.to(device)
        out = enc(ids, output_hidden_states=True)
        hidden.append(out.hidden_states[-2])
        pooled.append(out[0])
    clip = torch.cat(hidden, dim=-1)
    t5_width = 4096 if parts["t5"] is None else parts["t5"][1].config.d_model
    clip = torch.nn.functional.pad(clip, (0, t5_width - clip.shape[-1]))
    if parts["t5"] is None:
        t5 = torch.zeros(len(texts), max_sequence_length, t5_width, device=device, dtype=clip.dtype)
    else:
        tok, enc = parts["t5"]
        ids = tok(texts, padding="max_length", max_length=max_sequence_length, truncation=True,
                  add_special_tokens=True, return_tensors="pt").input_ids.to(device)
        t5 = enc(ids)[0]
    return torch.cat([clip, t5.to(clip.dtype)], dim=-2).to(dtype), torch.cat(pooled, dim=-1).to(dtype)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="the diffusers SD3 / SD3.5 folder (text_encoder*, tokenizer*)")
    ap.add_argument("--prompts", required=True, help="a text file (one prompt per line) or 'hpd'")
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-sequence-length", type=int, default=256, help="T5 tokens (diffusers' default 256)")
    ap.add_argument("--no-t5", action="store_true", help="zeros instead of T5 (as a folder without text_encoder_3)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()
    if os.path.exists(a.out) and not a.force:
        fail(f"{a.out} exists (--force to overwrite)")
    if a.max_sequence_length < 1 or a.batch < 1:
        fail("--max-sequence-length and --batch must be >= 1")
    for sub in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"):
        if not os.path.isdir(os.path.join(a.model, sub)):
            fail(f"{os.path.join(a.model, sub)} is missing (an SD3 pipeline folder has it)")
    prompts = read_prompts(a.prompts)
    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, CLIPTextModelWithProjection, T5EncoderModel

    f32 = torch.float32
    parts = {"clip": [], "t5": None}
    for t, e in (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")):
        parts["clip"].append((AutoTokenizer.from_pretrained(os.path.join(a.model, t)),
                              CLIPTextModelWithProjection.from_pretrained(os.path.join(a.model, e), torch_dtype=f32)
                              .to(a.device).eval()))
    if not a.no_t5 and os.path.isdir(os.path.join(a.model, "text_encoder_3")):
        parts["t5"] = (AutoTokenizer.from_pretrained(os.path.join(a.model, "tokenizer_3")),
                       T5EncoderModel.from_pretrained(os.path.join(a.model, "text_encoder_3"), torch_dtype=f32)
                       .to(a.device).eval())
    texts = prompts + [""]
    tokens, pooled = [], []
    with torch.no_grad():
        for i in range(0, len(texts), a.batch):
            t, p = encode(texts[i:i + a.batch], parts, a.max_sequence_length, a.device, f32)
            tokens.append(t.cpu())
            pooled.append(p.cpu())
    tokens, pooled = torch.cat(tokens).contiguous(), torch.cat(pooled).contiguous()
    tmp = a.out + ".tmp"
    save_file({"tokens": tokens, "pooled": pooled}, tmp,
              metadata={"prompts": json.dumps(prompts), "format": "pt",
                        "t5": "none" if parts["t5"] is None else "text_encoder_3"})
    os.replace(tmp, a.out)
    print(f"embed_prompts.py: {len(prompts)} prompts + the empty one -> {a.out} "
          f"(tokens {tuple(tokens.shape)}, pooled {tuple(pooled.shape)})")


if __name__ == "__main__":
    main()
