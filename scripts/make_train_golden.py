#!/usr/bin/env python3
"""Writes the training fixtures that tests/train_parity.rs replays: tiny random HF
`MambaForCausalLM`, `Mamba2ForCausalLM` and `LlamaForCausalLM` models trained for a few steps
by PyTorch (transformers' torch paths, `torch.optim.Adam`/`AdamW`,
`torch.nn.utils.clip_grad_norm_`) exactly as `mvt`'s trainer trains (src/train/trainer.rs,
optimizer.rs, schedule.rs):
    loss   cross-entropy of the fp32 logits over the positions whose target is not -100, mean
           (from the logits themselves, not transformers' shifted `labels` loss);
    decay  two parameter groups: our exemptions (`decay_exemption`: names ending in A_log or D,
           tensors of fewer than 2 dimensions, names containing "embed") get weight decay 0;
           a tied head is the embedding, one parameter;
    adam   betas (0.9, 0.999), eps 1e-8; `adam` couples the decay as an L2 term, `adam_w`
           decouples it (the spellings of our `Optimizer` enum);
    clip   the global norm of every gradient, when the recipe sets one;
    lr     linear warm-up, peak·(s+1)/warmup at 0-based step s < warmup, then constant.

Every fixture is a folder tests/data/train/<name>/ holding:
    config.json, model.safetensors   the initial weights, as `save_pretrained` writes them
    batches.safetensors  inputs, targets  int64 (steps, batch, seq_len); -100 where unscored
    recipe.json          optimizer, lr, weight_decay, warmup_steps, grad_clip (or null), steps
    expected.safetensors loss  float32 (steps,)  each step's loss, before that step's update;
                         and every parameter after the last step, under its HF name

Mamba trains on induction heads (the loss on the final token only, as
src/tasks/induction.rs); Mamba-2 and Llama on MQAR-shaped sequences with several scored
positions each. transformers runs its torch paths: the script refuses to run where mamba_ssm,
causal_conv1d, mambapy or kernels is installed, which transformers would use instead.

The script stops unless each fixture can tell a correct trainer from a wrong one:
  - every variable moves by more than ten times the test's tolerance (mamba_ssm's fp32 one);
  - a float64 twin (transformers' Mamba still rounds a few inputs of its scan to float32)
    ends within a quarter of the tolerance of the float32 run, so training does not amplify
    rounding and a correct trainer's own rounding fits;
  - clipping clips in at least three steps of four;
  - trained without clipping, without warm-up, without decay, with decay on every parameter,
    or with the other decay coupling, the weights or losses leave the tolerance.

CI does not run this script; the fixtures are committed. To regenerate them (from the repo root;
installs transformers into the torch venv on first use):
    python3 scripts/make_train_golden.py
"""

import copy
import importlib.util
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_golden import build  # noqa: E402
from torch_venv import reexec_in_venv  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "train"
IGNORE = -100
VOCAB = 16
BATCH = 4
SEQ_LEN = 32
STEPS = 12
BETAS = (0.9, 0.999)
EPS = 1e-8
# tests/train_parity.rs holds the fp32 result to mamba_ssm's fp32 tolerance; the float64 twin
# must sit within this share of it, so that a correct trainer has room for its own rounding.
RTOL, ATOL = 6e-4, 2e-3
CONDITIONED = 0.25
# Packages whose kernels transformers would use instead of its torch paths.
KERNEL_PACKAGES = ("mamba_ssm", "causal_conv1d", "mambapy", "kernels")


def configs():
    from transformers import LlamaConfig, Mamba2Config, MambaConfig

    ids = dict(vocab_size=VOCAB, pad_token_id=0, bos_token_id=0, eos_token_id=0)
    # d_inner 32 in 4 heads of 8, SSD chunks of 8: 32 tokens cross three chunk edges.
    mamba2 = Mamba2Config(**ids, hidden_size=16, num_heads=4, head_dim=8, state_size=8,
                          n_groups=1, num_hidden_layers=2, chunk_size=8,
                          tie_word_embeddings=False)
    mamba = MambaConfig(**ids, hidden_size=16, state_size=4, num_hidden_layers=2)
    # No pad token: transformers' Llama gives its embedding `padding_idx = pad_token_id`, and
    # PyTorch then drops that row's gradient from the lookup; every token here is real data,
    # and our embedding (like mamba_ssm's and HF Mamba's) has no padding row.
    llama = LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32,
                        num_hidden_layers=2, num_attention_heads=2, pad_token_id=None,
                        bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
    return mamba, mamba2, llama


def recipe(optimizer, lr, weight_decay, warmup_steps, grad_clip):
    return dict(optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                warmup_steps=warmup_steps, grad_clip=grad_clip, steps=STEPS)


def fixtures():
    mamba, mamba2, llama = configs()
    # The clipping norm sits below every step's gradient norm at these rates, so it clips.
    clipped = dict(weight_decay=0.1, warmup_steps=3, grad_clip=0.2)
    return [
        # The Mamba paper's synthetic-task recipe (Adam, no decay, no warm-up, no clipping),
        # at a rate ten times the paper's 1e-3 so that 12 steps move the weights far beyond
        # the test's tolerance.
        ("mamba-induction-adam", mamba, "induction",
         recipe("adam", 1e-2, 0.0, 0, None)),
        ("mamba-induction-adamw", mamba, "induction", recipe("adam_w", 1e-2, **clipped)),
        ("mamba2-mqar-adamw", mamba2, "mqar", recipe("adam_w", 1e-2, **clipped)),
        ("llama-mqar-adamw", llama, "mqar", recipe("adam_w", 1e-2, **clipped)),
        # Adam's coupled (L2) decay, which only this fixture exercises.
        ("llama-mqar-adam-l2", llama, "mqar", recipe("adam", 1e-2, **clipped)),
    ]


def induction(generator):
    """One induction-heads sequence (src/tasks/induction.rs): random tokens below the special
    token V − 1, which appears once somewhere and again at the end; the last position must
    predict the token that followed its first appearance."""
    import torch

    special = VOCAB - 1
    inputs = torch.randint(0, special, (SEQ_LEN,), generator=generator)
    at = int(torch.randint(0, SEQ_LEN - 2, (1,), generator=generator))
    inputs[at] = special
    inputs[-1] = special
    targets = torch.full((SEQ_LEN,), IGNORE)
    targets[-1] = inputs[at + 1]
    return inputs, targets


def mqar(generator, pairs=4):
    """One MQAR-shaped sequence (src/tasks/mqar.rs, with uniform instead of power-law gaps):
    `pairs` key-value pairs (keys from [1, V/2), values from [V/2, V)), then random tokens in
    which each key appears once more; the target at that position is its value."""
    import torch

    keys = 1 + torch.randperm(VOCAB // 2 - 1, generator=generator)[:pairs]
    values = VOCAB // 2 + torch.randperm(VOCAB // 2, generator=generator)[:pairs]
    inputs = torch.randint(0, VOCAB, (SEQ_LEN,), generator=generator)
    inputs[0:2 * pairs:2] = keys
    inputs[1:2 * pairs:2] = values
    queries = 2 * pairs + torch.randperm(SEQ_LEN - 2 * pairs, generator=generator)[:pairs]
    inputs[queries] = keys
    targets = torch.full((SEQ_LEN,), IGNORE)
    targets[queries] = values
    return inputs, targets


def batches(task, seed):
    import torch

    generator = torch.Generator().manual_seed(seed)
    example = {"induction": induction, "mqar": mqar}[task]
    pairs = [example(generator) for _ in range(STEPS * BATCH)]
    shape = (STEPS, BATCH, SEQ_LEN)
    inputs = torch.stack([p[0] for p in pairs]).reshape(shape)
    targets = torch.stack([p[1] for p in pairs]).reshape(shape)
    return inputs, targets


def decay_exempt(name, param):
    """src/train/optimizer.rs's `decay_exemption`."""
    leaf = name.rsplit(".", 1)[-1]
    return leaf in ("A_log", "D") or param.dim() < 2 or "embed" in name


def learning_rate(peak, step, warmup):
    """src/train/schedule.rs's `learning_rate` with a constant rate after warm-up."""
    return peak * (step + 1) / warmup if step < warmup else peak


def train(model, inputs, targets, rcp, exempt=decay_exempt):
    """Trains `model` in place; returns each step's loss and gradient norm before clipping."""
    import torch
    import torch.nn.functional as F

    # named_parameters() lists a tied head once, under the embedding's name.
    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if not exempt(n, p)],
         "weight_decay": rcp["weight_decay"]},
        {"params": [p for n, p in named if exempt(n, p)], "weight_decay": 0.0},
    ]
    kind = {"adam": torch.optim.Adam, "adam_w": torch.optim.AdamW}[rcp["optimizer"]]
    optimizer = kind(groups, lr=rcp["lr"], betas=BETAS, eps=EPS, foreach=False)
    model.train()
    losses, norms = [], []
    for step in range(rcp["steps"]):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(rcp["lr"], step, rcp["warmup_steps"])
        optimizer.zero_grad(set_to_none=True)
        logits = model(input_ids=inputs[step], use_cache=False).logits.float()
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), targets[step].reshape(-1),
                               ignore_index=IGNORE, reduction="mean")
        loss.backward()
        missing = [n for n, p in named if p.grad is None]
        assert not missing, f"parameters without a gradient: {missing}"
        params = [p for _, p in named]
        if rcp["grad_clip"] is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, rcp["grad_clip"])
        else:
            norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        optimizer.step()
        losses.append(loss.item())
        norms.append(float(norm))
    return losses, norms


def ablations(rcp):
    """The recipe without each of its parts, or with a part done wrong: a trainer that
    got that part wrong would train like this."""
    other = {"adam": "adam_w", "adam_w": "adam"}[rcp["optimizer"]]
    wrong = []
    if rcp["grad_clip"] is not None:
        wrong.append(("without clipping", dict(rcp, grad_clip=None), decay_exempt))
    if rcp["warmup_steps"]:
        wrong.append(("without warm-up", dict(rcp, warmup_steps=0), decay_exempt))
    if rcp["weight_decay"]:
        wrong += [
            ("without decay", dict(rcp, weight_decay=0.0), decay_exempt),
            ("decaying every parameter", rcp, lambda name, param: False),
            (f"as {other}", dict(rcp, optimizer=other), decay_exempt),
        ]
    return wrong


def worst_excess(got, want, share):
    """max(|got − want| − share·(atol + rtol·|want|)): ≤ 0 when within that share."""
    return float(((got - want).abs() - share * (ATOL + RTOL * want.abs())).max())


def check_kernels_absent():
    found = [p for p in KERNEL_PACKAGES if importlib.util.find_spec(p) is not None]
    if found:
        sys.exit(f"{', '.join(found)} installed: transformers would train with their kernels "
                 "instead of its torch paths; run this script in a venv without them")


def main():
    reexec_in_venv(__file__)
    import torch
    from safetensors.torch import save_file

    check_kernels_absent()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    for seed, (name, config, task, rcp) in enumerate(fixtures()):
        model = build(config, 100 + seed).float()
        twin = copy.deepcopy(model).double()
        folder = OUT / name
        model.save_pretrained(folder)
        (folder / "generation_config.json").unlink(missing_ok=True)
        initial = {n: p.detach().clone() for n, p in model.named_parameters()}
        inputs, targets = batches(task, 200 + seed)
        save_file({"inputs": inputs.contiguous(), "targets": targets.contiguous()},
                  folder / "batches.safetensors")
        (folder / "recipe.json").write_text(json.dumps(rcp, indent=2) + "\n")

        losses, norms = train(model, inputs, targets, rcp)
        twin_losses, _ = train(twin, inputs, targets, rcp)
        final = {n: p.detach().contiguous() for n, p in model.named_parameters()}
        save_file({"loss": torch.tensor(losses, dtype=torch.float32), **final},
                  folder / "expected.safetensors")

        # The fixture must test something (see the module's docstring).
        if rcp["grad_clip"] is not None:
            clipped = sum(n > rcp["grad_clip"] for n in norms)
            assert clipped >= 0.75 * len(norms), f"{name}: clipped {clipped} of {len(norms)}"
        moved = min(worst_excess(final[n], initial[n], 10.0) for n in final)
        assert moved > 0, f"{name}: a variable moved less than 10 times the tolerance"
        twin_final = dict(twin.named_parameters())
        drift = max(worst_excess(final[n].double(), twin_final[n].detach(), CONDITIONED)
                    for n in final)
        loss_drift = worst_excess(torch.tensor(losses, dtype=torch.float64),
                                  torch.tensor(twin_losses, dtype=torch.float64), CONDITIONED)
        assert drift <= 0 and loss_drift <= 0, f"{name}: float32 and float64 training diverge"

        size = sum(p.stat().st_size for p in folder.iterdir())
        print(f"{name}: {size / 1024:.0f} KiB, {sum(p.numel() for p in final.values())} parameters")
        print(f"  recipe: {json.dumps(rcp)}")
        print(f"  loss: {' '.join(f'{v:.3f}' for v in losses)}")
        print(f"  gradient norm: {' '.join(f'{v:.2f}' for v in norms)}")
        largest = max((final[n] - initial[n]).abs().max().item() for n in final)
        apart = max((final[n].double() - twin_final[n].detach()).abs().max().item()
                    for n in final)
        loss_apart = max(abs(a - b) for a, b in zip(losses, twin_losses))
        print(f"  largest move of a weight {largest:.3g}; float32 against float64: "
              f"weights {apart:.1e}, losses {loss_apart:.1e} apart at most")

        # Each part of the recipe must show: a trainer that skipped it would fail the test.
        for what, wrong_rcp, exempt in ablations(rcp):
            other = build(config, 100 + seed).float()
            wrong_losses, _ = train(other, inputs, targets, wrong_rcp, exempt)
            apart = max(max(worst_excess(p.detach(), final[n], 1.0)
                            for n, p in other.named_parameters()),
                        worst_excess(torch.tensor(wrong_losses), torch.tensor(losses), 1.0))
            assert apart > 0, f"{name}: training {what} stays within the tolerance"
            print(f"  {what}: beyond the tolerance by {apart:.2e}")


if __name__ == "__main__":
    main()
