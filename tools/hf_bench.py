#!/usr/bin/env python3
"""The `./peft bench` LLaMA preset, run with Hugging Face transformers + peft on PyTorch, for side-by-side ratios.

Optional developer tool: it needs torch, transformers and peft in a Python environment (they are not part of the
peft4j build or tests). Prints lines in the same format as `./peft bench`:

    lora-qv-train median_ms=... tokens_per_s=... peak_rss_mb=...

Usage: python3 tools/hf_bench.py [--threads N] [--steps N] [--warmup N] [--only a,b]
Run it right before or after `./peft bench --only base-forward,lora-qv-train,full-ft-train` on the same machine,
with the same OMP_WAIT_POLICY, and compare the medians.
"""
import argparse
import os
import resource
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

HIDDEN, LAYERS, HEADS, INTERMEDIATE, VOCAB, BATCH, SEQ = 512, 4, 8, 1376, 8000, 4, 128


def model():
    torch.manual_seed(42)
    cfg = LlamaConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                      num_key_value_heads=HEADS, intermediate_size=INTERMEDIATE, vocab_size=VOCAB,
                      max_position_embeddings=2048, tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).float()


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def line(name, times, extra=""):
    med = statistics.median(times)
    print(f"{name} median_ms={med:.1f} tokens_per_s={BATCH * SEQ / med * 1000:.0f} peak_rss_mb={peak_rss_mb():.0f} "
          f"min_ms={min(times):.1f} max_ms={max(times):.1f}{extra}", flush=True)


def forward(ids, steps, warmup):
    m = model().eval()
    times = []
    with torch.no_grad():
        for i in range(-warmup, steps):
            t0 = time.perf_counter()
            m(input_ids=ids)
            if i >= 0:
                times.append((time.perf_counter() - t0) * 1000)
    line("base-forward", times)


def train(name, ids, steps, warmup):
    m = model()
    if name == "lora-qv-train":
        m = get_peft_model(m, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"],
                                         task_type="CAUSAL_LM"))
    m.train()
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    times, fwd, bwd, op = [], [], [], []
    for i in range(-warmup, steps):
        t0 = time.perf_counter()
        loss = m(input_ids=ids, labels=ids).loss
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        if i >= 0:
            times.append((t3 - t0) * 1000)
            fwd.append((t1 - t0) * 1000)
            bwd.append((t2 - t1) * 1000)
            op.append((t3 - t2) * 1000)
    line(name, times, f" fwd_ms={statistics.median(fwd):.1f} bwd_ms={statistics.median(bwd):.1f} "
                      f"opt_ms={statistics.median(op):.1f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--only", default="base-forward,lora-qv-train,full-ft-train")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    import transformers
    import peft
    print(f"# hf bench torch={torch.__version__} transformers={transformers.__version__} peft={peft.__version__} "
          f"threads={a.threads} OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')} "
          f"attn={model().config._attn_implementation}", flush=True)
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(42))
    for name in a.only.split(","):
        if name == "base-forward":
            forward(ids, a.steps, a.warmup)
        else:
            train(name, ids, a.steps, a.warmup)


if __name__ == "__main__":
    main()
