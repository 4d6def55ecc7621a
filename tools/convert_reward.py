#!/usr/bin/env python3
"""Converts the paper's reward checkpoints into the files vgg_score and vgg_train read
(vggflow/clip_rewards.h). Run it where PyTorch is (and transformers; open_clip for HPS text
features); vggflow itself never imports Python.

    # LAION aesthetic predictor v2: OpenAI CLIP ViT-L/14 (a transformers folder, e.g.
    # openai/clip-vit-large-patch14) + the MLP head (sac+logos+ava1-l14-linearMSE.pth)
    tools/convert_reward.py aesthetic --clip DIR --head sac+logos+ava1-l14-linearMSE.pth --out aesthetic.safetensors

    # PickScore: a transformers CLIPModel folder (yuvalkirstain/PickScore_v1); --prompts writes the
    # prompts' text features next to it (a text file, one prompt per line, or the prompt embeddings
    # file of tools/embed_prompts.py: the rows then follow its order, as vgg_train --text-features needs)
    tools/convert_reward.py pickscore --clip DIR --out pickscore.safetensors [--prompts P.txt --text-out T.safetensors]

    # HPSv2.1: an open_clip ViT-H/14 state dict (HPS_v2.1_compressed.pt); text features need open_clip
    tools/convert_reward.py hps --open-clip HPS_v2.1_compressed.pt --out hps.safetensors [--prompts P.txt --text-out T.safetensors]

Every output key is listed against the one the C++ side expects (the tower's transformers or open_clip
names, "aesthetic.layers.{0,2,4,6,7}.*", "logit_scale"); a missing or unexpected key stops the
conversion with its name. Nothing is overwritten without --force.
"""
import argparse
import json
import os
import sys

VIT_H14 = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16, image_size=224,
               patch_size=14, projection_dim=1024, num_channels=3, hidden_act="gelu", layer_norm_eps=1e-5)
VISION_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size",
               "patch_size", "projection_dim", "num_channels", "hidden_act", "layer_norm_eps")


def fail(msg):
    print(f"convert_reward.py: {msg}", file=sys.stderr)
    sys.exit(1)


def tower_keys(cfg):
    """The transformers names of a CLIPVisionModelWithProjection of this config."""
    keys = ["vision_model.embeddings.class_embedding", "vision_model.embeddings.patch_embedding.weight",
            "vision_model.embeddings.position_embedding.weight", "vision_model.pre_layrnorm.weight",
            "vision_model.pre_layrnorm.bias", "vision_model.post_layernorm.weight", "vision_model.post_layernorm.bias",
            "visual_projection.weight"]
    for i in range(cfg["num_hidden_layers"]):
        p = f"vision_model.encoder.layers.{i}."
        for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "layer_norm1",
                  "layer_norm2", "mlp.fc1", "mlp.fc2"):
            keys += [p + m + ".weight", p + m + ".bias"]
    return keys


def load_clip(folder):
    import torch
    from transformers import CLIPModel
    model = CLIPModel.from_pretrained(folder, torch_dtype=torch.float32).eval()
    vc = model.config.vision_config.to_dict()
    cfg = {k: vc[k] for k in VISION_KEYS if k in vc}
    cfg["projection_dim"] = model.config.projection_dim
    sd = {k: v for k, v in model.state_dict().items()
          if (k.startswith("vision_model.") or k.startswith("visual_projection.")) and not k.endswith("position_ids")}
    return model, cfg, sd


def check(got, want, what):
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or extra:
        fail(f"{what}: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected {extra[:5]}")


def save(path, tensors, cfg, force):
    from safetensors.torch import save_file
    if os.path.exists(path) and not force:
        fail(f"{path} exists (use --force to replace it)")
    tmp = path + ".tmp"
    save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, tmp,
              metadata={"config": json.dumps(cfg), "format": "pt"})
    os.replace(tmp, path)
    print(f"wrote {path}: {len(tensors)} tensors", file=sys.stderr)


def read_prompts(path):
    """The prompt texts of a text file (one per line) or of a prompt embeddings file's "prompts"
    metadata (tools/embed_prompts.py), so the text features follow the embeddings' row order."""
    if not os.path.isfile(path):
        fail(f"--prompts: {path} does not exist")
    if path.endswith(".safetensors"):
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        meta = header.get("__metadata__") or {}
        if "prompts" not in meta:
            fail(f"--prompts: {path} has no 'prompts' metadata (a prompt embeddings file from tools/embed_prompts.py)")
        prompts = json.loads(meta["prompts"])
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            fail(f"--prompts: {path}: metadata 'prompts' is not a list of strings")
    else:
        with open(path, encoding="utf-8") as f:
            prompts = [l.strip() for l in f if l.strip()]
    if not prompts:
        fail(f"{path} holds no prompts")
    return prompts


def text_features(args, encode):
    if not args.prompts:
        return
    if not args.text_out:
        fail("--prompts needs --text-out FILE.safetensors")
    import torch
    from safetensors.torch import save_file
    prompts = read_prompts(args.prompts)
    with torch.no_grad():
        t = torch.cat([encode(prompts[i:i + 32]) for i in range(0, len(prompts), 32)])
    if os.path.exists(args.text_out) and not args.force:
        fail(f"{args.text_out} exists (use --force to replace it)")
    save_file({"text_features": t.float().contiguous()}, args.text_out, metadata={"prompts": json.dumps(prompts)})
    print(f"wrote {args.text_out}: {len(prompts)} prompts", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reward", choices=["aesthetic", "pickscore", "hps"])
    ap.add_argument("--clip", help="transformers CLIP folder (aesthetic: ViT-L/14; pickscore: PickScore_v1)")
    ap.add_argument("--head", help="aesthetic: the MLP head's .pth")
    ap.add_argument("--open-clip", help="hps: the open_clip state dict (.pt)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompts", help="a text file (one prompt per line) or a prompt embeddings file "
                    "(tools/embed_prompts.py, its prompts in row order): write their text features")
    ap.add_argument("--text-out")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    import torch

    if args.reward in ("aesthetic", "pickscore"):
        if not args.clip:
            fail(f"{args.reward} needs --clip DIR")
        model, cfg, sd = load_clip(args.clip)
        check(sd, tower_keys(cfg), args.clip)
        if args.reward == "aesthetic":
            if not args.head:
                fail("aesthetic needs --head FILE.pth")
            head = torch.load(args.head, map_location="cpu")
            head = head.get("state_dict", head)
            want = [f"layers.{i}.{w}" for i in (0, 2, 4, 6, 7) for w in ("weight", "bias")]
            check(head, want, args.head)
            if head["layers.0.weight"].shape[1] != cfg["projection_dim"]:
                fail(f"{args.head}: the head takes {head['layers.0.weight'].shape[1]} features, the tower gives {cfg['projection_dim']}")
            sd.update({f"aesthetic.{k}": head[k] for k in want})
        else:
            sd["logit_scale"] = model.logit_scale.detach().reshape(())
            text_features(args, lambda p: model.get_text_features(
                **__import__("transformers").CLIPTokenizer.from_pretrained(args.clip)(p, padding="max_length", truncation=True,
                                                                                     max_length=77, return_tensors="pt")))
        save(args.out, sd, cfg, args.force)
    else:
        if not args.open_clip:
            fail("hps needs --open-clip FILE.pt")
        ck = torch.load(args.open_clip, map_location="cpu")
        ck = ck.get("state_dict", ck)
        ck = {k[7:] if k.startswith("module.") else k: v for k, v in ck.items()}
        visual = {k: v for k, v in ck.items() if k.startswith("visual.")}
        cfg = dict(VIT_H14)
        want = ["visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding", "visual.ln_pre.weight",
                "visual.ln_pre.bias", "visual.ln_post.weight", "visual.ln_post.bias", "visual.proj"]
        for i in range(cfg["num_hidden_layers"]):
            p = f"visual.transformer.resblocks.{i}."
            want += [p + "attn.in_proj_weight", p + "attn.in_proj_bias"]
            want += [p + m + w for m in ("ln_1", "ln_2", "attn.out_proj", "mlp.c_fc", "mlp.c_proj") for w in (".weight", ".bias")]
        check(visual, want, args.open_clip)
        if args.prompts:
            import open_clip
            model, _, _ = open_clip.create_model_and_transforms("ViT-H-14", pretrained=None)
            model.load_state_dict(ck)
            tok = open_clip.get_tokenizer("ViT-H-14")
            text_features(args, lambda p: model.encode_text(tok(p)))
        save(args.out, visual, cfg, args.force)


if __name__ == "__main__":
    main()
