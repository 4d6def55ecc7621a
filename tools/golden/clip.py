#!/usr/bin/python3
"""Golden files of tests/nn/test_clip.cpp: transformers' CLIPVisionModelWithProjection on tiny random
configs in float64, an open_clip-layout copy of one of them, and the LAION aesthetic MLP head.

How to regenerate (from the repository root), with Debian's python3-torch 1.13 and transformers in a
virtual environment that sees the system packages:

    python3 -m venv --system-site-packages /tmp/clip-venv
    /tmp/clip-venv/bin/pip install "transformers==4.38.2"
    /tmp/clip-venv/bin/python tools/golden/clip.py

Writes tests/data/clip/:
  tiny_vit_quick_gelu.safetensors  transformers names ("vision_model.*", "visual_projection.weight"),
      the aesthetic head "aesthetic.layers.{0,2,4,6,7}.*" (hidden 32, 16, 8, 4: the real head's
      structure, smaller), "input.pixels", "input.gout", "expected.embeds", "expected.grad_pixels"
      (of <gout, embeds>), "expected.aesthetic" (the head on the L2-normalised embeddings) and
      "expected.grad_pixels_aesthetic" (of the scores' sum); metadata "config" (the vision config).
  tiny_vit_gelu_open_clip.safetensors  a gelu tower's weights in open_clip's layout ("visual.*":
      conv1, class_embedding, positional_embedding, ln_pre, transformer.resblocks.i.{ln_1,
      attn.in_proj_weight/bias, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}, ln_post, proj [D, P])
      plus a text-tower key and logit_scale that the loader must skip; "input.pixels",
      "expected.embeds"; metadata "config".
Parameters are N(0, 0.1^2) (layer-norm gains 1 + that) from seed 0.
"""
import json
import os

import torch
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "clip")


def tower(act):
    cfg = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=28,
               patch_size=7, projection_dim=16, num_channels=3, hidden_act=act, layer_norm_eps=1e-5)
    m = CLIPVisionModelWithProjection(CLIPVisionConfig(**cfg)).double().eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            noise = 0.1 * torch.randn_like(p)
            p.copy_(1 + noise if ("norm" in name or "layrnorm" in name) and name.endswith("weight") else noise)
    return m, cfg


def state(m):
    return {k: v.detach().contiguous() for k, v in m.state_dict().items() if not k.endswith("position_ids")}


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    m, cfg = tower("quick_gelu")
    pixels = torch.randn(2, 3, 28, 28, dtype=torch.float64, requires_grad=True)
    embeds = m(pixel_values=pixels).image_embeds
    gout = torch.randn_like(embeds)
    (gp,) = torch.autograd.grad([embeds], [pixels], [gout], retain_graph=True)
    sizes = [16, 32, 16, 8, 4, 1]
    head = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Dropout(0.2), torch.nn.Linear(32, 16),
                               torch.nn.Dropout(0.2), torch.nn.Linear(16, 8), torch.nn.Dropout(0.1),
                               torch.nn.Linear(8, 4), torch.nn.Linear(4, 1)).double().eval()
    assert [l.in_features for l in head if isinstance(l, torch.nn.Linear)] == sizes[:-1]
    scores = head(embeds / embeds.norm(dim=-1, keepdim=True)).squeeze(-1)
    (gpa,) = torch.autograd.grad([scores.sum()], [pixels])
    t = state(m)
    t.update({f"aesthetic.layers.{k}": v.detach().contiguous() for k, v in head.state_dict().items()})  # the predictor wraps its MLP as .layers
    t.update({"input.pixels": pixels.detach().contiguous(), "input.gout": gout.contiguous(),
              "expected.embeds": embeds.detach().contiguous(), "expected.grad_pixels": gp.contiguous(),
              "expected.aesthetic": scores.detach().contiguous(), "expected.grad_pixels_aesthetic": gpa.contiguous()})
    save_file(t, os.path.join(OUT, "tiny_vit_quick_gelu.safetensors"), metadata={"config": json.dumps(cfg), "format": "pt"})

    m2, cfg2 = tower("gelu")
    pixels2 = torch.randn(1, 3, 28, 28, dtype=torch.float64)
    embeds2 = m2(pixel_values=pixels2).image_embeds
    s = state(m2)
    oc = {"visual.conv1.weight": s["vision_model.embeddings.patch_embedding.weight"],
          "visual.class_embedding": s["vision_model.embeddings.class_embedding"],
          "visual.positional_embedding": s["vision_model.embeddings.position_embedding.weight"],
          "visual.ln_pre.weight": s["vision_model.pre_layrnorm.weight"], "visual.ln_pre.bias": s["vision_model.pre_layrnorm.bias"],
          "visual.ln_post.weight": s["vision_model.post_layernorm.weight"],
          "visual.ln_post.bias": s["vision_model.post_layernorm.bias"],
          "visual.proj": s["visual_projection.weight"].t().contiguous(),
          "token_embedding.weight": torch.zeros(5, 4, dtype=torch.float64), "logit_scale": torch.tensor(4.6, dtype=torch.float64)}
    for i in range(cfg2["num_hidden_layers"]):
        a, b = f"vision_model.encoder.layers.{i}.", f"visual.transformer.resblocks.{i}."
        oc[b + "attn.in_proj_weight"] = torch.cat([s[a + f"self_attn.{n}_proj.weight"] for n in "qkv"]).contiguous()
        oc[b + "attn.in_proj_bias"] = torch.cat([s[a + f"self_attn.{n}_proj.bias"] for n in "qkv"]).contiguous()
        for src, dst in [("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("self_attn.out_proj", "attn.out_proj"),
                         ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")]:
            for w in ("weight", "bias"):
                oc[b + f"{dst}.{w}"] = s[a + f"{src}.{w}"]
    oc.update({"input.pixels": pixels2.contiguous(), "expected.embeds": embeds2.detach().contiguous()})
    save_file(oc, os.path.join(OUT, "tiny_vit_gelu_open_clip.safetensors"), metadata={"config": json.dumps(cfg2), "format": "pt"})
    for f in sorted(os.listdir(OUT)):
        print(f"wrote tests/data/clip/{f} ({os.path.getsize(os.path.join(OUT, f))} bytes)")


if __name__ == "__main__":
    main()
