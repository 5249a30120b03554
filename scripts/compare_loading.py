#!/usr/bin/env python3
"""Times loading a checkpoint as a new user meets it: `mvt generate` on a ~130M-parameter f32
checkpoint against the same command on a tiny one (the difference is what the weights cost),
and transformers' `from_pretrained` plus one forward on the same folder, per family (Mamba,
Mamba-2, Llama). Prints each family's ratio; issue #18 asks for at most 2x.

The checkpoints are random, made once with transformers' `save_pretrained` under
$MVT_CACHE/loading/ (about 1.6 GB for the three). Each command runs once to warm the page
cache, then `--repeats` times; the medians are compared. Run it on an idle machine.

Usage (from the repo root; installs `transformers` into the torch venv on first use):
    python3 scripts/compare_loading.py [--repeats 3] [--threads 2] [--mvt PATH]
"""

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

from torch_venv import reexec_in_venv

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("MVT_CACHE", Path.home() / ".cache" / "mvt")) / "loading"
PROMPT = [510, 1017, 310]


def configs():
    """(family, big config, tiny config): the big ones at mamba-130m's and a comparable size."""
    from transformers import LlamaConfig, Mamba2Config, MambaConfig

    return [
        (
            "mamba",
            MambaConfig(hidden_size=768, num_hidden_layers=24, vocab_size=50280),
            MambaConfig(hidden_size=64, num_hidden_layers=2, vocab_size=1024),
        ),
        (
            "mamba2",
            Mamba2Config(hidden_size=768, num_hidden_layers=24, vocab_size=50280,
                         num_heads=24, head_dim=64, n_groups=1, state_size=128),
            Mamba2Config(hidden_size=64, num_hidden_layers=2, vocab_size=1024,
                         num_heads=2, head_dim=64, n_groups=1, state_size=16),
        ),
        (
            "llama",
            LlamaConfig(hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                        num_attention_heads=12, num_key_value_heads=12, vocab_size=50280,
                        tie_word_embeddings=True),
            LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=4, vocab_size=1024),
        ),
    ]


def save(config, folder):
    """A random model of `config` saved as transformers saves it (f32 safetensors)."""
    import torch
    from transformers import AutoModelForCausalLM

    if (folder / "config.json").exists():
        return
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(folder)


def params(folder):
    from safetensors import safe_open

    total = 0
    for file in folder.glob("*.safetensors"):
        with safe_open(file, "pt") as f:
            for name in f.keys():
                n = 1
                for size in f.get_slice(name).get_shape():
                    n *= size
                total += n
    return total


def time_mvt(mvt, folder, threads, repeats):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    command = [mvt, "generate", "--checkpoint", str(folder),
               "--ids", ",".join(map(str, PROMPT)), "--max-new", "1"]
    samples = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        if i > 0:  # the first run warms the page cache
            samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def time_transformers(folder, threads, repeats):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    ids = torch.tensor([PROMPT])
    samples = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        with torch.no_grad():
            model(ids)
        if i > 0:
            samples.append(time.perf_counter() - start)
        del model
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    default_mvt = Path(os.environ.get("CARGO_TARGET_DIR", CACHE.parent / "target")) / "release" / "mvt"
    parser.add_argument("--mvt", default=str(default_mvt))
    args = parser.parse_args()
    if not Path(args.mvt).exists():
        raise SystemExit(f"no mvt binary at {args.mvt}; build it with `cargo build --release` first")
    print("family,params,mvt_big_s,mvt_tiny_s,mvt_weights_s,transformers_s,ratio")
    for family, big, tiny in configs():
        big_dir, tiny_dir = CACHE / f"{family}-big", CACHE / f"{family}-tiny"
        save(big, big_dir)
        save(tiny, tiny_dir)
        mvt_big = time_mvt(args.mvt, big_dir, args.threads, args.repeats)
        mvt_tiny = time_mvt(args.mvt, tiny_dir, args.threads, args.repeats)
        hf = time_transformers(big_dir, args.threads, args.repeats)
        weights = mvt_big - mvt_tiny
        print(f"{family},{params(big_dir)},{mvt_big:.3f},{mvt_tiny:.3f},{weights:.3f},{hf:.3f},"
              f"{weights / hf:.2f}", flush=True)


if __name__ == "__main__":
    reexec_in_venv(Path(__file__))
    main()
