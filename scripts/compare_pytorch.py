#!/usr/bin/env python3
"""Times the Mamba mixer as PyTorch users run it on a CPU today against `mvt`, on identical
shapes in one run, and prints the ratio.

The PyTorch path is HF transformers' `MambaMixer` without the CUDA kernels (its
`slow_forward`, a sequential scan in torch ops). `mvt` runs its own mixer through a temporary
suite. Both use the same thread count, f32, batch 1, d_model 768 (d_inner 1536, N 16).

Usage (from the repo root; installs `transformers` into the torch venv on first use):
    python3 scripts/compare_pytorch.py [--lengths 256 1024 4096] [--threads 2] [--repeats 5]
"""

import argparse
import csv
import subprocess
import tempfile
import time
from pathlib import Path

from torch_venv import reexec_in_venv

ROOT = Path(__file__).resolve().parent.parent


def time_pytorch(lengths, threads, repeats, warmup):
    import torch
    from transformers import MambaConfig
    from transformers.models.mamba.modeling_mamba import MambaMixer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = MambaConfig(hidden_size=768, state_size=16, expand=2, conv_kernel=4)
    mixer = MambaMixer(config, layer_idx=0).eval()
    medians = {}
    for length in lengths:
        x = torch.randn(1, length, 768)
        samples = []
        with torch.no_grad():
            for i in range(warmup + repeats):
                start = time.perf_counter()
                mixer(x)
                if i >= warmup:
                    samples.append(time.perf_counter() - start)
        samples.sort()
        medians[length] = samples[len(samples) // 2]
    return medians


def time_mvt(lengths, threads, repeats, warmup):
    suite = f"""
name: compare-pytorch
description: The Mamba mixer at d_model 768, timed for scripts/compare_pytorch.py.
device: cpu
threads: {threads}
models:
  mamba: {{ family: mamba, d_state: 16, d_conv: 4, expand: 2 }}
experiments:
  - name: mixer
    kind: speed
    pass: forward
    component: mixer
    models: [mamba]
    grid: {{ d_model: [768], seq_len: [{", ".join(map(str, lengths))}] }}
    warmup: {warmup}
    repeats: {repeats}
"""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "suite.yaml"
        path.write_text(suite)
        out = Path(tmp) / "out"
        subprocess.run([ROOT / "scripts" / "mvt", "run", path, "--out", out], check=True,
                       stdout=subprocess.DEVNULL)
        with open(out / "results.csv") as f:
            rows = list(csv.DictReader(f))
    return {int(r["seq_len"]): (float(r["latency_median_s"]), r["scan"]) for r in rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    reexec_in_venv(__file__)
    ours = time_mvt(args.lengths, args.threads, args.repeats, args.warmup)
    theirs = time_pytorch(args.lengths, args.threads, args.repeats, args.warmup)
    print(f"Mamba mixer forward, d_model 768, batch 1, f32, {args.threads} threads, median of {args.repeats}")
    print(f"{'L':>6}  {'HF MambaMixer (s)':>18}  {'mvt (s)':>10}  {'mvt scan':>10}  {'speed-up':>8}")
    for length in args.lengths:
        (mine, scan), hf = ours[length], theirs[length]
        print(f"{length:>6}  {hf:>18.4f}  {mine:>10.4f}  {scan:>10}  {hf / mine:>7.1f}x")


if __name__ == "__main__":
    main()
