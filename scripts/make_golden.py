#!/usr/bin/env python3
"""Writes the golden checkpoints that tests/checkpoints.rs loads: tiny random HF
`MambaForCausalLM`, `Mamba2ForCausalLM` and `LlamaForCausalLM` models saved with `save_pretrained`, each with the
logits transformers computes for fixed ids and its greedy continuation.

Every fixture is a folder under tests/data/hf/ holding what `save_pretrained` wrote
(config.json, model.safetensors or shards with model.safetensors.index.json), and
tests/data/golden/<fixture>.safetensors with:
    ids        int64   (seq_len,)          the input ids
    logits     float32 (seq_len, vocab)    transformers' fp32 logits for `ids`
    generated  int64   (GENERATED,)        greedy continuation of `ids` (transformers' generate)

The variants cover what loading must honour: tied and untied heads, biases, an explicit
time_step_rank and conv width, Mamba-2 with one and two groups and a clamped Δ, grouped-query attention with an explicit head_dim, a RoPE base
other than the default, and sharded weights. Weights are the HF initialisation plus seeded noise,
so that norms, A_log and D differ from their constant initial values and every tensor matters.

CI does not run this script; the fixtures are committed. To regenerate them (from the repo root;
installs transformers into the torch venv on first use):
    python3 scripts/make_golden.py
"""

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch_venv import reexec_in_venv  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "hf"
GOLDEN = ROOT / "tests" / "data" / "golden"
SEQ_LEN = 12
GENERATED = 6
VOCAB = 48
# Small enough that the sharded variants really split into several files.
SHARD = "20KB"


def variants():
    from transformers import LlamaConfig, Mamba2Config, MambaConfig

    mamba = dict(vocab_size=VOCAB, hidden_size=16, state_size=4, num_hidden_layers=2,
                 pad_token_id=0, bos_token_id=0, eos_token_id=0)
    # 8 heads of 8 over d_inner 64, in SSD chunks of 4 so that 12 tokens cross chunk edges.
    mamba2 = dict(vocab_size=VOCAB, hidden_size=32, num_heads=8, head_dim=8, state_size=8,
                  num_hidden_layers=2, chunk_size=4, pad_token_id=0, bos_token_id=0,
                  eos_token_id=0)
    llama = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                 num_attention_heads=4, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return [
        ("mamba-tied", MambaConfig(**mamba), None),
        ("mamba-untied-biases-sharded",
         MambaConfig(**mamba, use_bias=True, use_conv_bias=False, time_step_rank=3, conv_kernel=3,
                     expand=3, layer_norm_epsilon=1e-3, residual_in_fp32=False,
                     tie_word_embeddings=False),
         SHARD),
        ("llama-mha-tied", LlamaConfig(**llama, tie_word_embeddings=True), None),
        ("llama-gqa-untied-biases-sharded",
         LlamaConfig(**llama, num_key_value_heads=2, head_dim=12, attention_bias=True,
                     mlp_bias=True, rms_norm_eps=1e-5, tie_word_embeddings=False,
                     rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
         SHARD),
        # Appended, so that the fixtures above keep their seeds.
        ("mamba2-tied", Mamba2Config(**mamba2, n_groups=1, tie_word_embeddings=True), None),
        ("mamba2-groups2-untied-biases",
         Mamba2Config(**mamba2, n_groups=2, use_bias=True, conv_kernel=3, layer_norm_epsilon=1e-3,
                      time_step_limit=(0.005, 0.05), tie_word_embeddings=False),
         None),
    ]


def build(config, seed):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return model


def main():
    reexec_in_venv(__file__)
    import torch
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    for folder in (OUT, GOLDEN):
        if folder.exists():
            shutil.rmtree(folder)
    GOLDEN.mkdir(parents=True)
    for seed, (name, config, shard) in enumerate(variants()):
        model = build(config, seed)
        folder = OUT / name
        if shard:
            model.save_pretrained(folder, max_shard_size=shard)
        else:
            model.save_pretrained(folder)
        (folder / "generation_config.json").unlink(missing_ok=True)
        generator = torch.Generator().manual_seed(1000 + seed)
        ids = torch.randint(3, VOCAB, (1, SEQ_LEN), generator=generator)
        with torch.no_grad():
            logits = model(ids).logits[0].float()
            generated = model.generate(ids, max_new_tokens=GENERATED, do_sample=False,
                                       min_new_tokens=GENERATED)[0, SEQ_LEN:]
        save_file({"ids": ids[0].contiguous(), "logits": logits.contiguous(),
                   "generated": generated.contiguous()}, GOLDEN / f"{name}.safetensors")
        files = sorted(p.name for p in folder.iterdir())
        print(f"{name}: {', '.join(files)}")
        print(f"  config: {json.dumps(json.loads((folder / 'config.json').read_text()), sort_keys=True)}")


if __name__ == "__main__":
    main()
