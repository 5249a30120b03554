#!/usr/bin/env python3
"""A PyTorch twin of `attention-pilot` (experiments/induction_recipe.yaml, issue #30 section 5):
the Mamba paper's attention baseline for induction heads, trained by PyTorch on the same token
stream with the same recipe, so that its learning curve can be put beside ours.

The model is our hybrid family with pattern `A` (src/models/hybrid.rs, transformer.rs,
backbone.rs, residual.rs, norm.rs), written here in plain PyTorch modules under our parameter
names (HF transformers' Llama has no layer without an MLP):
    embedding  backbone.embeddings.weight (V, d), N(0, 0.02²); the LM head is this matrix (tied)
    layer i    h ← h + Attn(RMSNorm(h)), the residual carried in fp32
               backbone.layers.i.norm.weight          (d,) ones, ε 1e-5
               backbone.layers.i.mixer.{q,k,v,o}_proj.weight (d, d) N(0, 0.02²), no biases
               attention: 8 heads of 16, RoPE (rotate-half, θ 10,000, positions from 0),
               softmax(QKᵀ/√16 + causal mask) V by scaled_dot_product_attention
    final      backbone.norm_f.weight (d,) ones, ε 1e-5; logits = RMSNorm(h) · Eᵀ
V·d + n·(d + 4d²) + d = 133,504 parameters at V 16, d 128, n 2.

The weights are drawn as `mvt` draws them: `torch.manual_seed(seed)`, then `randn · 0.02` in
the order tch creates the variables (the embedding, then each layer's q, k, v, o), from the
same libtorch generator, so both start from the same weights. Checked against `mvt run` of
this model for one step at lr 1e-3, seed 0: the same step-1 loss to the last bit
(3.0735182762145996), the same held-out accuracy, and weights after the first Adam update
within 1e-8 of ours (Adam's rounding: ours updates the moments with lerp).

The data is src/tasks/induction.rs over src/rng.rs (SplitMix64), ported exactly: training batch
`s` (0-based) comes from `train_seed(seed, s)`, evaluation batch i from `eval_seed(seed, i)`,
example j of a batch from `Rng::for_item(batch_seed, j)`.

The recipe is src/train/trainer.rs's at `attention-pilot`'s settings: Adam (β 0.9/0.999, ε
1e-8, no weight decay), a constant rate, no warm-up, no clipping, batch 8 at 256 tokens,
cross-entropy over the positions whose target is not -100 (the final token), and every 250
steps (and at the last) the accuracy of the argmax on 6 evaluation batches (48 sequences).
Each curve point's loss is the mean training loss since the previous point. `--out` writes
curves.csv's first five columns (run_id, step, loss, lr, eval_accuracy; no reach column).

Usage (from the repo root; runs itself in the torch venv that scripts/env.sh provisions):
    python3 scripts/twin_attention.py --lr 1e-3 --steps 500 --out /tmp/twin.csv
    python3 scripts/twin_attention.py --check-sample --seq-len 16 --seed 0 [--train]
The second prints an example in `mvt sample`'s format, for a diff against
    mvt sample --task induction_heads --seq-len 16 --seed 0 [--train]
"""

import argparse
import math
import os
import time
from decimal import Decimal
from pathlib import Path

from torch_venv import reexec_in_venv

if __name__ == "__main__":
    reexec_in_venv(__file__)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

IGNORE = -100

# src/rng.rs: SplitMix64 (Steele, Lea & Flood 2014), in u64 arithmetic.
MASK64 = (1 << 64) - 1
GOLDEN_GAMMA = 0x9E3779B97F4A7C15


class Rng:
    """src/rng.rs's `Rng`, draw for draw."""

    def __init__(self, seed):
        self.state = seed & MASK64

    @classmethod
    def for_item(cls, seed, index):
        mixer = cls(seed ^ ((GOLDEN_GAMMA * (index + 1)) & MASK64))
        return cls(mixer.next_u64())

    def next_u64(self):
        self.state = (self.state + GOLDEN_GAMMA) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def range(self, lo, hi):
        """Uniform in [lo, hi), by rejection as ours."""
        span = hi - lo
        zone = MASK64 - MASK64 % span
        while True:
            x = self.next_u64()
            if x < zone:
                return lo + x % span


# src/tasks/mod.rs: training seeds below EVAL_SEED_BASE, evaluation seeds at or above it.
EVAL_SEED_BASE = 1 << 62


def train_seed(run_seed, step):
    return Rng.for_item(run_seed, step).next_u64() % EVAL_SEED_BASE


def eval_seed(run_seed, index):
    return EVAL_SEED_BASE + Rng.for_item(run_seed ^ 0x5EED, index).next_u64() % EVAL_SEED_BASE


def induction_example(vocab_size, seq_len, seed):
    """src/tasks/induction.rs: tokens from [0, V − 1), the special token V − 1 at a random
    position below seq_len − 2 and at the end; the one target, at the end, is the token that
    followed the first special one. Training and evaluation examples are alike."""
    rng = Rng(seed)
    special = vocab_size - 1
    inputs = [rng.range(0, special) for _ in range(seq_len)]
    at = rng.range(0, seq_len - 2)
    inputs[at] = special
    target = inputs[at + 1]
    inputs[-1] = special
    targets = [IGNORE] * seq_len
    targets[-1] = target
    return inputs, targets


def task_batch(vocab_size, seq_len, batch_size, seed):
    """`Task::batch`: example j from its own generator derived from `seed`; (batch, seq_len)
    int64 inputs and targets."""
    examples = [
        induction_example(vocab_size, seq_len, Rng.for_item(seed, j).next_u64())
        for j in range(batch_size)
    ]
    inputs = torch.tensor([e[0] for e in examples], dtype=torch.int64)
    targets = torch.tensor([e[1] for e in examples], dtype=torch.int64)
    return inputs, targets


def print_sample(vocab_size, seq_len, seed):
    """One example in `mvt sample`'s format (src/main.rs `sample`), character for character."""
    inputs, targets = induction_example(vocab_size, seq_len, seed)
    scored = sum(t != IGNORE for t in targets)
    print(
        f"induction_heads (vocab {vocab_size}), seq_len {seq_len}, seed {seed}: "
        f"{len(inputs)} tokens, {scored} scored; · = ignored (-100)"
    )
    per_line = 20
    width = len(str(max(vocab_size, len(inputs)))) + 1

    def row(values):
        return "".join(f"{'·' if v == IGNORE else v:>{width}}" for v in values)

    for start in range(0, len(inputs), per_line):
        end = min(start + per_line, len(inputs))
        print()
        print(f"position {row(range(start, end))}")
        print(f"inputs   {row(inputs[start:end])}")
        print(f"targets  {row(targets[start:end])}")


class RmsNorm(nn.Module):
    """src/models/norm.rs: y = x / sqrt(mean(x²) + ε) · w, normalised in fp32."""

    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        rms = torch.rsqrt(x32.square().mean(-1, keepdim=True) + self.eps)
        return (x32 * rms).to(x.dtype) * self.weight


def drawn(*shape):
    """tch's `Init::Randn { mean: 0, stdev: 0.02 }`: randn · 0.02 from the global generator."""
    return nn.Parameter(torch.randn(*shape) * 0.02 + 0.0)


class Linear(nn.Module):
    """tch's `nn::linear` without a bias: weight (d_out, d_in), y = x Wᵀ. Our own rather than
    `nn.Linear`, whose constructor would draw from the generator before our draw."""

    def __init__(self, d_in, d_out):
        super().__init__()
        self.weight = drawn(d_out, d_in)

    def forward(self, x):
        return F.linear(x, self.weight)


class Embedding(nn.Module):
    """Our `token_embedding`: (V, d) from N(0, 0.02²), also the tied LM head."""

    def __init__(self, vocab_size, d_model):
        super().__init__()
        self.weight = drawn(vocab_size, d_model)

    def forward(self, ids):
        return F.embedding(ids, self.weight)


class Rotary(nn.Module):
    """RoPE, rotate-half convention (src/models/transformer.rs `Rotary`)."""

    def __init__(self, head_dim, theta):
        super().__init__()
        # θ_i = base^(−2i/d), i = 0 … d/2 − 1 (RoFormer Eq. 15), computed as ours.
        exponents = torch.arange(0, head_dim, 2, dtype=torch.float32)
        self.register_buffer("inv_freq", (exponents * (-math.log(theta) / head_dim)).exp(), persistent=False)

    def forward(self, x):
        # x: (batch, heads, seq_len, head_dim), first position 0.
        seq_len = x.shape[2]
        positions = torch.arange(0, seq_len, dtype=torch.float32)
        freqs = torch.outer(positions, self.inv_freq)  # (seq_len, head_dim / 2)
        angles = torch.cat([freqs, freqs], -1)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        half = x.shape[3] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * cos + rotated * sin


class Attention(nn.Module):
    """Causal multi-head self-attention with RoPE, no biases (our `Attention`)."""

    def __init__(self, d_model, head_dim, theta):
        super().__init__()
        self.n_heads, self.head_dim = d_model // head_dim, head_dim
        width = self.n_heads * head_dim
        # Drawn in tch's order: q, k, v, o.
        self.q_proj = Linear(d_model, width)
        self.k_proj = Linear(d_model, width)
        self.v_proj = Linear(d_model, width)
        self.o_proj = Linear(width, d_model)
        self.rotary = Rotary(head_dim, theta)

    def split_heads(self, x):
        # (batch, seq_len, width) → (batch, heads, seq_len, head_dim)
        batch, seq_len, _ = x.shape
        return x.view(batch, seq_len, self.n_heads, self.head_dim).transpose(1, 2)

    def forward(self, hidden):
        batch, seq_len, _ = hidden.shape
        q = self.rotary(self.split_heads(self.q_proj(hidden)))
        k = self.rotary(self.split_heads(self.k_proj(hidden)))
        v = self.split_heads(self.v_proj(hidden))
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=seq_len > 1)
        merged = attn.transpose(1, 2).contiguous().view(batch, seq_len, -1)
        return self.o_proj(merged)


class Layer(nn.Module):
    """src/models/residual.rs `PreNorm` with our hybrid's names: h + mixer(norm(h)), the
    residual in fp32 (`residual_in_fp32`, the hybrid's default)."""

    def __init__(self, d_model, head_dim, theta, eps):
        super().__init__()
        self.norm = RmsNorm(d_model, eps)
        self.mixer = Attention(d_model, head_dim, theta)

    def forward(self, hidden):
        normed = self.norm(hidden.to(self.norm.weight.dtype))
        return hidden.float() + self.mixer(normed)


class Backbone(nn.Module):
    def __init__(self, vocab_size, d_model, n_layers, head_dim, theta, eps):
        super().__init__()
        self.embeddings = Embedding(vocab_size, d_model)
        self.layers = nn.ModuleList(Layer(d_model, head_dim, theta, eps) for _ in range(n_layers))
        self.norm_f = RmsNorm(d_model, eps)


class AttentionLm(nn.Module):
    """src/models/backbone.rs `Backbone` around attention-only layers, the head tied."""

    def __init__(self, vocab_size=16, d_model=128, n_layers=2, head_dim=16, theta=10_000.0, eps=1e-5):
        super().__init__()
        self.backbone = Backbone(vocab_size, d_model, n_layers, head_dim, theta, eps)

    def forward(self, ids):
        # ids (batch, seq_len) → logits (batch, seq_len, vocab_size)
        hidden = self.backbone.embeddings(ids)
        for layer in self.backbone.layers:
            hidden = layer(hidden)
        head = self.backbone.embeddings.weight
        return self.backbone.norm_f(hidden).to(head.dtype).matmul(head.t())


def expected_params(vocab_size, d_model, n_layers):
    """Embedding, per layer a norm and q, k, v, o (d × d each), the final norm; tied head."""
    return vocab_size * d_model + n_layers * (d_model + 4 * d_model * d_model) + d_model


def loss_of(logits, targets):
    """src/train/trainer.rs `loss`: mean cross-entropy of the fp32 logits over the positions
    whose target is not -100."""
    vocab = logits.shape[-1]
    return F.cross_entropy(logits.float().reshape(-1, vocab), targets.reshape(-1), ignore_index=IGNORE)


@torch.no_grad()
def evaluate(model, args):
    """Accuracy of the argmax on `eval_batches` evaluation batches, over scored positions."""
    correct = scored = 0
    for i in range(args.eval_batches):
        inputs, targets = task_batch(args.vocab_size, args.seq_len, args.batch_size, eval_seed(args.seed, i))
        predictions = model(inputs).argmax(-1)
        mask = targets != IGNORE
        correct += int((predictions.eq(targets) & mask).sum())
        scored += int(mask.sum())
    return correct / scored if scored else 0.0


def rust_float(x):
    """An f64 as Rust's `Display` writes it (our curves.csv): the shortest round-trip digits,
    never an exponent, no `.0` on whole numbers."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    text = format(Decimal(repr(float(x))), "f")
    return text[:-2] if text.endswith(".0") else text


def write_curve(path, run_id, points):
    """curves.csv's columns, rewritten whole and atomically at each point."""
    lines = ["run_id,step,loss,lr,eval_accuracy"]
    lines += [f"{run_id},{s},{rust_float(l)},{rust_float(lr)},{rust_float(a)}" for s, l, lr, a in points]
    partial = Path(f"{path}.partial")
    partial.write_text("\n".join(lines) + "\n")
    os.replace(partial, path)


def train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = AttentionLm(
        args.vocab_size, args.d_model, args.n_layers, args.head_dim, args.rope_theta, args.norm_eps
    )
    n_params = sum(p.numel() for p in model.parameters())
    print(f"parameters: {n_params:,}")
    assert n_params == expected_params(args.vocab_size, args.d_model, args.n_layers), n_params
    if (args.vocab_size, args.d_model, args.n_layers) == (16, 128, 2):
        assert n_params == 133_504, n_params
    optimizer = torch.optim.Adam(
        model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, foreach=False
    )
    run_id = f"twin-attention.lr{rust_float(args.lr)}.s{args.seed}"
    points, since, total, step_s = [], 0, 0.0, []
    for step in range(args.steps):
        start = time.perf_counter()
        seed = train_seed(args.seed, step)
        inputs, targets = task_batch(args.vocab_size, args.seq_len, args.batch_size, seed)
        loss = loss_of(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step_s.append(time.perf_counter() - start)
        total += loss.item()
        since += 1
        done = step + 1
        if done % args.eval_every != 0 and done < args.steps:
            continue
        accuracy = evaluate(model, args)
        points.append((done, total / since, args.lr, accuracy))
        recent = sorted(step_s[-since:])
        print(
            f"step {done}/{args.steps}, loss {total / since:.4f}, accuracy {accuracy:.3f}, "
            f"{recent[len(recent) // 2] * 1e3:.1f} ms/step (median of {since})",
            flush=True,
        )
        since, total = 0, 0.0
        if args.out:
            write_curve(args.out, run_id, points)
    step_s.sort()
    print(
        f"{args.steps} steps, {args.threads} thread(s): median {step_s[len(step_s) // 2] * 1e3:.1f} ms/step, "
        f"mean {sum(step_s) / len(step_s) * 1e3:.1f} ms/step (data, forward, backward and Adam; "
        f"evaluations excluded)"
    )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="curves.csv-style file, rewritten at each evaluation")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--eval-batches", type=int, default=6)
    parser.add_argument("--vocab-size", type=int, default=16)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--head-dim", type=int, default=16)
    parser.add_argument("--rope-theta", type=float, default=10_000.0)
    parser.add_argument("--norm-eps", type=float, default=1e-5)
    parser.add_argument("--check-sample", action="store_true",
                        help="print the example of --seed at --seq-len as `mvt sample` does, and exit")
    parser.add_argument("--train", action="store_true",
                        help="with --check-sample: a training example (for induction heads the "
                        "same as an evaluation one)")
    args = parser.parse_args()
    if args.check_sample:
        print_sample(args.vocab_size, args.seq_len, args.seed)
        return
    train(args)


if __name__ == "__main__":
    main()
