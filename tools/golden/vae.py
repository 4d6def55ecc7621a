#!/usr/bin/python3
"""Golden file of tests/nn/test_vae.cpp: diffusers' AutoencoderKL decoding path on a tiny random
config, in float64.

How to regenerate (from the repository root), with Debian's python3-torch 1.13 and diffusers
installed in a virtual environment that sees the system packages:

    python3 -m venv --system-site-packages /tmp/vae-venv
    /tmp/vae-venv/bin/pip install "diffusers==0.27.2" "huggingface_hub<0.26"
    /tmp/vae-venv/bin/python tools/golden/vae.py

It writes tests/data/vae/tiny_decoder.safetensors (and tiny_autoencoder_tiny.safetensors, the same for
AutoencoderTiny's decoder with "decoder.layers.*" names, and tiny_encoder.safetensors, the encoding
half: "encoder.*" and "quant_conv.*", images "input.x" [2, 3, 12, 20], noise "input.eps", the scaled
posterior mean "expected.latents" = (mean − shift)·scaling, the scaled sample "expected.sample" =
(mean + exp(logvar/2)·eps − shift)·scaling, and the images' gradients "expected.grad_x" of
<latents, gout> and "expected.grad_x_sample" of <sample, gout>): the decoding half's parameters under diffusers'
names ("post_quant_conv.*", "decoder.*"), the latents "input.z", the output "expected.out" of
z / scaling_factor + shift_factor -> post_quant_conv -> decoder, a fixed cotangent "input.gout" and
the latents' gradient "expected.grad_z"; the config is the metadata "config". Parameters are drawn
N(0, 0.2^2) (norm gains 1 + that) from seed 0, so every term of the decoder matters.
"""
import json
import os

import torch
from diffusers import AutoencoderKL, AutoencoderTiny
from safetensors.torch import save_file

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "vae", "tiny_decoder.safetensors")

CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
    "block_out_channels": [8, 16],
    "layers_per_block": 1,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 4,
    "sample_size": 16,
    "scaling_factor": 1.5305,
}
SHIFT = 0.0609  # SD3's shift_factor (applied here by hand: diffusers 0.27 has no such field)


def main():
    torch.manual_seed(0)
    vae = AutoencoderKL(**CONFIG).double().eval()
    for attn in vae.decoder.mid_block.attentions:  # its softmax "upcast" is .float(): f32 even for f64 inputs
        attn.upcast_softmax = False
    with torch.no_grad():
        for name, p in vae.named_parameters():
            noise = 0.2 * torch.randn_like(p)
            p.copy_(1 + noise if ("norm" in name and name.endswith("weight")) else noise)
    z = torch.randn(2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    out = vae.decoder(vae.post_quant_conv(z / CONFIG["scaling_factor"] + SHIFT))
    gout = torch.randn_like(out)
    (gz,) = torch.autograd.grad([out], [z], [gout])
    tensors = {k: v.detach().contiguous() for k, v in vae.state_dict().items()
               if k.startswith("decoder.") or k.startswith("post_quant_conv.")}
    tensors.update({"input.z": z.detach().contiguous(), "input.gout": gout.contiguous(),
                    "expected.out": out.detach().contiguous(), "expected.grad_z": gz.contiguous()})
    meta = dict(CONFIG, shift_factor=SHIFT, use_post_quant_conv=True)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(tensors, OUT, metadata={"config": json.dumps(meta), "format": "pt"})
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes, {len(tensors)} tensors, out {tuple(out.shape)})")

    # AutoencoderTiny (TAESD-style) decoder: z / scaling_factor + shift_factor -> DecoderTiny
    tiny_cfg = {"in_channels": 3, "out_channels": 3, "encoder_block_out_channels": [8, 8],
                "decoder_block_out_channels": [8, 8], "num_encoder_blocks": [1, 1], "num_decoder_blocks": [2, 1],
                "latent_channels": 4, "upsampling_scaling_factor": 2, "act_fn": "relu", "scaling_factor": 1.5305}
    tiny = AutoencoderTiny(**tiny_cfg).double().eval()
    with torch.no_grad():
        for _, p in tiny.named_parameters():
            p.copy_(0.3 * torch.randn_like(p))
    z = torch.randn(2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    out = tiny.decoder(z / tiny_cfg["scaling_factor"] + SHIFT)
    gout = torch.randn_like(out)
    (gz,) = torch.autograd.grad([out], [z], [gout])
    tensors = {k: v.detach().contiguous() for k, v in tiny.state_dict().items() if k.startswith("decoder.")}
    tensors.update({"input.z": z.detach().contiguous(), "input.gout": gout.contiguous(),
                    "expected.out": out.detach().contiguous(), "expected.grad_z": gz.contiguous()})
    tiny_out = os.path.join(os.path.dirname(OUT), "tiny_autoencoder_tiny.safetensors")
    save_file(tensors, tiny_out, metadata={"config": json.dumps(dict(tiny_cfg, shift_factor=SHIFT)), "format": "pt"})
    print(f"wrote {tiny_out} ({os.path.getsize(tiny_out)} bytes, out {tuple(out.shape)})")

    # AutoencoderKL's encoder (its own draw: the decoder's file above stays as it was)
    torch.manual_seed(1)
    vae = AutoencoderKL(**CONFIG).double().eval()
    for attn in vae.encoder.mid_block.attentions:
        attn.upcast_softmax = False
    with torch.no_grad():
        for name, p in vae.named_parameters():
            noise = 0.2 * torch.randn_like(p)
            p.copy_(1 + noise if ("norm" in name and name.endswith("weight")) else noise)
    x = (2 * torch.rand(2, 3, 12, 20, dtype=torch.float64) - 1).requires_grad_(True)
    dist = vae.encode(x).latent_dist
    eps = torch.randn_like(dist.mean)
    latents = (dist.mean - SHIFT) * CONFIG["scaling_factor"]
    sample = (dist.mean + dist.std * eps - SHIFT) * CONFIG["scaling_factor"]
    gout = torch.randn_like(latents)
    (gx,) = torch.autograd.grad([latents], [x], [gout], retain_graph=True)
    (gxs,) = torch.autograd.grad([sample], [x], [gout])
    tensors = {k: v.detach().contiguous() for k, v in vae.state_dict().items()
               if k.startswith("encoder.") or k.startswith("quant_conv.")}
    tensors.update({"input.x": x.detach().contiguous(), "input.eps": eps.contiguous(), "input.gout": gout.contiguous(),
                    "expected.latents": latents.detach().contiguous(), "expected.sample": sample.detach().contiguous(),
                    "expected.grad_x": gx.contiguous(), "expected.grad_x_sample": gxs.contiguous()})
    enc_out = os.path.join(os.path.dirname(OUT), "tiny_encoder.safetensors")
    meta = dict(CONFIG, shift_factor=SHIFT, use_quant_conv=True)
    save_file(tensors, enc_out, metadata={"config": json.dumps(meta), "format": "pt"})
    print(f"wrote {enc_out} ({os.path.getsize(enc_out)} bytes, latents {tuple(latents.shape)})")


if __name__ == "__main__":
    main()
