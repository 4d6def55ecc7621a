#!/usr/bin/env python3
"""The PyTorch peer of vgg_bench_gpu's sd3_step cases: diffusers' SD3Transformer2DModel with the
SD3-medium config (random bf16 weights on the GPU), LoRA r = 8 on attn.to_q/k/v/out.0 through PEFT,
batch 1, 333 text tokens; forward, or forward + backward of sum(out * R) to the adapters. PyTorch
eager, default SDPA backend. Timing: CUDA events around each step after warm-up, the minimum and the
median over --reps steps (the host clock would add Python's launch overhead to both sides alike; the
events measure the queued GPU work, as vgg_bench_gpu does). The mean is the peer of vgg_bench_gpu's
number (Google Benchmark's mean over its 5 iterations); min and median are recorded beside it.

usage: sd3_step_torch.py [--px 512 1024] [--reps 5] [--json OUT]
Prints one line per case: `sd3_step <fwd|train> <px> <ms>`.
"""
import argparse
import json
import statistics
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--px", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--reps", type=int, default=5)  # vgg_bench_gpu's sd3_step runs 5 iterations
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    try:
        import torch
        from diffusers import SD3Transformer2DModel
        from peft import LoraConfig
    except ImportError as e:
        sys.exit(f"sd3_step_torch: {e} (diffusers travels as a wheel: tools/gpu-check --fetch)")
    if not torch.cuda.is_available():
        sys.exit("sd3_step_torch: PyTorch sees no GPU")
    torch.manual_seed(11)
    cfg = dict(sample_size=128, patch_size=2, in_channels=16, num_layers=24, attention_head_dim=64,
               num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
               pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=192)
    with torch.device("cuda"):
        model = SD3Transformer2DModel(**cfg).to(torch.bfloat16)
    model.requires_grad_(False)
    model.add_adapter(LoraConfig(r=8, lora_alpha=8, init_lora_weights="gaussian",
                                 target_modules=["attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0"]))
    adapters = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in adapters:
        p.data = p.data.to(torch.bfloat16)
        p.requires_grad_(True)
    results = {}
    for px in a.px:
        lat = px // 8
        x = torch.randn(1, 16, lat, lat, device="cuda", dtype=torch.bfloat16)
        c = torch.randn(1, 333, 4096, device="cuda", dtype=torch.bfloat16)
        y = torch.randn(1, 2048, device="cuda", dtype=torch.bfloat16)
        t = torch.full((1,), 500.0, device="cuda", dtype=torch.bfloat16)
        R = torch.randn(1, 16, lat, lat, device="cuda", dtype=torch.bfloat16)

        def fwd():
            with torch.no_grad():
                return model(hidden_states=x, encoder_hidden_states=c, pooled_projections=y, timestep=t).sample

        def train():
            out = model(hidden_states=x, encoder_hidden_states=c, pooled_projections=y, timestep=t).sample
            return torch.autograd.grad((out * R).sum(), adapters)

        for name, fn in (("fwd", fwd), ("train", train)):
            fn()
            fn()
            torch.cuda.synchronize()
            times = []
            for _ in range(a.reps):
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                fn()
                e.record()
                torch.cuda.synchronize()
                times.append(s.elapsed_time(e))
            results[f"{name}/{px}"] = {"mean_ms": statistics.mean(times), "min_ms": min(times),
                                        "median_ms": statistics.median(times)}
            print(f"sd3_step {name} {px} mean {statistics.mean(times):.2f} min {min(times):.2f} "
                  f"median {statistics.median(times):.2f}", flush=True)
    if a.json:
        json.dump({"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cases": results},
                  open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
