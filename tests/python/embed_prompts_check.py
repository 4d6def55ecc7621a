#!/usr/bin/env python3
"""CTest embed_prompts.tiny_encoders: tools/embed_prompts.py on a folder of tiny random text encoders
(two CLIP text towers with projection, a T5 encoder, word-level tokenizers) written here, then the
file's layout: tokens [N + 1, 77 + L, d_T5], pooled [N + 1, 2·proj], the prompt list, the empty prompt
last and equal to a fresh encoding of "". Exit 77 (skipped) without torch, transformers, tokenizers
and safetensors.

    embed_prompts_check.py REPO_ROOT WORK_DIR
"""
import json
import os
import shutil
import subprocess
import sys


def main():
    root, work = sys.argv[1], sys.argv[2]
    try:
        import torch
        from safetensors import safe_open
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import (CLIPTextConfig, CLIPTextModelWithProjection, PreTrainedTokenizerFast, T5Config,
                                  T5EncoderModel)
    except ImportError as e:
        print(f"skipped: {e}")
        sys.exit(77)
    shutil.rmtree(work, ignore_errors=True)
    model = os.path.join(work, "sd3")
    words = ["<pad>", "<unk>", "a", "cat", "dog", "bird", "photo", "of", "</s>"]

    def tokenizer(folder):
        t = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
        t.pre_tokenizer = pre_tokenizers.Whitespace()
        PreTrainedTokenizerFast(tokenizer_object=t, pad_token="<pad>", unk_token="<unk>",
                                eos_token="</s>").save_pretrained(os.path.join(model, folder))

    torch.manual_seed(0)
    for t, e, h in (("tokenizer", "text_encoder", 6), ("tokenizer_2", "text_encoder_2", 8)):
        tokenizer(t)
        cfg = CLIPTextConfig(vocab_size=len(words), hidden_size=h, intermediate_size=16, num_hidden_layers=2,
                             num_attention_heads=2, max_position_embeddings=77, projection_dim=4, eos_token_id=8,
                             pad_token_id=0, bos_token_id=2)
        CLIPTextModelWithProjection(cfg).save_pretrained(os.path.join(model, e))
    tokenizer("tokenizer_3")
    T5EncoderModel(T5Config(vocab_size=len(words), d_model=16, d_kv=4, d_ff=32, num_layers=1,
                            num_heads=2)).save_pretrained(os.path.join(model, "text_encoder_3"))
    prompts = os.path.join(work, "p.txt")
    with open(prompts, "w") as f:
        f.write("a cat\n\na dog\na photo of a bird\n")
    out = os.path.join(work, "prompts.safetensors")
    script = os.path.join(root, "tools", "embed_prompts.py")
    cmd = [sys.executable, script, "--model", model, "--prompts", prompts, "--out", out, "--max-sequence-length", "4",
           "--batch", "3"]
    subprocess.run(cmd, check=True)
    with safe_open(out, "pt") as f:
        tokens, pooled, meta = f.get_tensor("tokens"), f.get_tensor("pooled"), f.metadata()
    assert tuple(tokens.shape) == (4, 81, 16), tokens.shape
    assert tuple(pooled.shape) == (4, 8), pooled.shape
    assert json.loads(meta["prompts"]) == ["a cat", "a dog", "a photo of a bird"], meta
    # CLIP rows are zero-padded from 6 + 8 to 16 columns; T5 rows are not zero
    assert torch.all(tokens[:, :77, 14:] == 0) and torch.any(tokens[:, 77:] != 0)
    # batching does not change the rows: the empty prompt alone gives the last row
    single = os.path.join(work, "empty.txt")
    with open(single, "w") as f:
        f.write("a cat\n")
    out2 = os.path.join(work, "one.safetensors")
    subprocess.run(cmd[:4] + ["--prompts", single, "--out", out2, "--max-sequence-length", "4"], check=True)
    with safe_open(out2, "pt") as f:
        t2 = f.get_tensor("tokens")
    assert torch.allclose(t2[-1], tokens[-1], atol=1e-6) and torch.allclose(t2[0], tokens[0], atol=1e-6)
    # nothing is overwritten without --force
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 1 and "exists" in r.stderr, r.stderr
    print("EMBED_PROMPTS_OK")


if __name__ == "__main__":
    main()
