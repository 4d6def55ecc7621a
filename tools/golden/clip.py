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
  reward_{aesthetic,hps,pickscore}_tiny.safetensors, text_features_tiny.safetensors, tiny_image.png and
      tiny_image_scores.json: reward files as vggflow/clip_rewards.h reads them (f32 weights; the
      HPS/PickScore towers in open_clip's layout), a 32x40 PNG, and the scores torch computes for it
      (CLIP's transform as torchvision does it: bicubic anti-aliased resize, centre crop, normalise).
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
    rewards(m, m2, oc)
    for f in sorted(os.listdir(OUT)):
        print(f"wrote tests/data/clip/{f} ({os.path.getsize(os.path.join(OUT, f))} bytes)")


def write_png(path, rgb):
    """An 8-bit RGB PNG without filters (the C++ reader decodes any standard PNG)."""
    import struct
    import zlib as z
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + bytes(rgb[y].reshape(-1).tolist()) for y in range(h))
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", z.crc32(tag + data) & 0xFFFFFFFF)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", z.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def preprocess(img01, size):
    """CLIP's transform as torchvision does it on tensors: shortest side to size (bicubic, antialias),
    centre crop (Python round), normalise."""
    import torch.nn.functional as F
    h, w = img01.shape[-2:]
    oh, ow = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
    x = F.interpolate(img01, size=(oh, ow), mode="bicubic", align_corners=False, antialias=True)
    top, left = int(round((oh - size) / 2.0)), int(round((ow - size) / 2.0))
    x = x[..., top:top + size, left:left + size]
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073], dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711], dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def rewards(m, m2, oc):
    """Reward files in the layout vggflow/clip_rewards.h reads (f32 weights), a PNG, text features,
    and the scores torch gives for them (f64 compute on the f32-rounded weights)."""
    torch.manual_seed(1)
    rnd = torch.randint(0, 256, (32, 40, 3), dtype=torch.uint8)
    write_png(os.path.join(OUT, "tiny_image.png"), rnd.numpy())
    img01 = rnd.permute(2, 0, 1).unsqueeze(0).double() / 255.0
    f32 = lambda d: {k: v.float().contiguous() for k, v in d.items()}
    heads = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Dropout(0.2), torch.nn.Linear(32, 16),
                                torch.nn.Dropout(0.2), torch.nn.Linear(16, 8), torch.nn.Dropout(0.1),
                                torch.nn.Linear(8, 4), torch.nn.Linear(4, 1)).double().eval()
    a = f32(state(m))
    a.update({f"aesthetic.layers.{k}": v for k, v in f32(heads.state_dict()).items()})
    cfg_a = json.dumps(dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=28,
                            patch_size=7, projection_dim=16, num_channels=3, hidden_act="quick_gelu", layer_norm_eps=1e-5))
    save_file(a, os.path.join(OUT, "reward_aesthetic_tiny.safetensors"), metadata={"config": cfg_a})
    visual = {k: v for k, v in oc.items() if k.startswith("visual.")}
    cfg_g = json.loads(cfg_a)
    cfg_g["hidden_act"] = "gelu"
    save_file(f32(visual), os.path.join(OUT, "reward_hps_tiny.safetensors"), metadata={"config": json.dumps(cfg_g)})
    pick = f32(visual)
    pick["logit_scale"] = torch.tensor(4.6052, dtype=torch.float32)
    save_file(pick, os.path.join(OUT, "reward_pickscore_tiny.safetensors"), metadata={"config": json.dumps(cfg_g)})
    text = torch.randn(3, 16, dtype=torch.float32)
    save_file({"text_features": text}, os.path.join(OUT, "text_features_tiny.safetensors"))
    # the expected scores: weights rounded to f32 as stored, computed in f64
    with torch.no_grad():
        for mod, d in ((m, a), (m2, None)):
            for k, p in mod.state_dict().items():
                if not k.endswith("position_ids"):
                    p.copy_(p.float().double())
        for k, p in heads.state_dict().items():
            p.copy_(p.float().double())
        x = preprocess(img01, 28)
        e = m(pixel_values=x).image_embeds
        aesthetic = heads(e / e.norm(dim=-1, keepdim=True)).item()
        e2 = m2(pixel_values=x).image_embeds
        e2 = e2 / e2.norm(dim=-1, keepdim=True)
        t1 = text[1].double()
        hps = (e2[0] @ (t1 / t1.norm())).item()
        pickscore = float(torch.tensor(4.6052, dtype=torch.float32).double().exp()) * hps
    with open(os.path.join(OUT, "tiny_image_scores.json"), "w") as f:
        json.dump({"aesthetic": aesthetic, "hps_prompt1": hps, "pickscore_prompt1": pickscore}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
