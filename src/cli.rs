//! The command line's definitions: every subcommand, its arguments and its help. `main.rs`
//! carries them out.

use clap::{Parser, Subcommand};
use mamba_vs_transformer::device::DeviceSpec;
use mamba_vs_transformer::models::lm::Mode;
use mamba_vs_transformer::spec::DType;
use mamba_vs_transformer::suite::Shard;
use std::path::PathBuf;
use std::str::FromStr;

#[derive(Parser)]
#[command(
    name = "mvt",
    version,
    about = "Mamba vs Transformer: measured, not argued"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run every experiment of a suite and write tables, a manifest and charts.
    #[command(
        after_help = "Example:\n  mvt run experiments/smoke.yaml\n  mvt run experiments/smoke.yaml --out /tmp/smoke --resume\n  mvt run experiments/claims.yaml --resume --reuse results/induction_extrapolation"
    )]
    Run {
        /// The YAML suite.
        suite: PathBuf,
        /// Results folder [default: results/<suite name>].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Keep the rows already in the results folder and run only what is missing.
        #[arg(long)]
        resume: bool,
        /// Run only shard I of N (0-based), the N shards given about equal estimated work, e.g.
        /// on a cluster `--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`; then `mvt merge`.
        #[arg(long, value_parser = Shard::from_str)]
        shard: Option<Shard>,
        /// A results folder whose finished runs of the same spec (say, trained models) are
        /// adopted instead of run again; repeatable, the first folder with a run wins.
        #[arg(long, value_name = "DIR")]
        reuse: Vec<PathBuf>,
    },
    /// Combine the results folders of a suite's shards (or repeated sweeps) into one.
    #[command(
        after_help = "Example:\n  mvt merge results/crossover results/crossover.shard-0of4 results/crossover.shard-1of4 ..."
    )]
    Merge {
        /// The merged results folder to write.
        out: PathBuf,
        /// Results folders of the same suite.
        #[arg(required = true, num_args = 1..)]
        dirs: Vec<PathBuf>,
    },
    /// Check a suite without running it: every problem, with its line and column.
    #[command(after_help = "Example:\n  mvt validate experiments/smoke.yaml")]
    Validate { suite: PathBuf },
    /// Re-render every chart of a results folder from its stored table.
    #[command(after_help = "Example:\n  mvt plot results/smoke")]
    Plot { results: PathBuf },
    /// Probe every trained Mamba of a results folder that kept its weights (induction heads):
    /// Δ per layer on noise, at the trigger and at the answer, each channel's half-life, and
    /// the reach each run measured, written as `mechanism.csv` in the folder.
    #[command(after_help = "Example:\n  mvt mechanism results/amd_epyc/induction_recipe")]
    Mechanism { results: PathBuf },
    /// Logits of a local HF checkpoint for given ids, written as a float32 NumPy file of shape
    /// (seq_len, vocab): to check a port against PyTorch.
    #[command(
        after_help = "Example:\n  mvt logits --checkpoint ~/models/mamba-130m-hf --ids 510,1017,310 --out logits.npy\n  mvt logits --checkpoint DIR --ids 1,2,3 --mode step --out step.npy"
    )]
    Logits {
        #[command(flatten)]
        model: CheckpointArgs,
        /// `parallel` (one forward), `step` (token by token from the state or KV cache) or
        /// `chunked` (2048-token chunks, each continuing from the state).
        #[arg(long, default_value = "parallel", value_parser = by_serde_name::<Mode>)]
        mode: Mode,
        /// Where to write the `.npy` file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Greedy decoding in step mode from a local HF checkpoint; prints the new ids.
    #[command(
        after_help = "Example:\n  mvt generate --checkpoint ~/models/mamba-130m-hf --ids 510,1017,310 --max-new 20"
    )]
    Generate {
        #[command(flatten)]
        model: CheckpointArgs,
        /// How many tokens to generate.
        #[arg(long)]
        max_new: i64,
    },
    /// Measure one run spec and write its outcome (started by `mvt run`, once per run).
    #[command(hide = true)]
    Worker {
        spec: PathBuf,
        outcome: PathBuf,
        /// Where a recall run with `train.save_weights` writes its trained weights.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// The folder of a recall run's training checkpoint, which it resumes from.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Write report.md and a self-contained report.html for one or more results folders: the
    /// claims and their verdicts, each experiment's charts and table, and every failed run.
    #[command(
        after_help = "Example:\n  mvt report results/crossover_cpu --out results/crossover_cpu\n  mvt report results/claims results/induction_extrapolation --out /tmp/report"
    )]
    Report {
        #[arg(required = true, num_args = 1..)]
        results: Vec<PathBuf>,
        /// Folder for report.md and report.html [default: the first results folder].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check this machine: every scan against the CPU reference, both models against their CPU
    /// twins in f32 and reduced precision, in every mode, and the golden checkpoints.
    #[command(
        after_help = "Example:\n  mvt selfcheck --device cuda --fixtures tests/data\n\nExits 1 when a check fails."
    )]
    Selfcheck {
        /// `cpu`, `cuda`, `cuda:N` or `auto`.
        #[arg(long, default_value = "auto", value_parser = DeviceSpec::parse)]
        device: DeviceSpec,
        /// The `tests/data` folder with the golden checkpoints; skipped when absent.
        #[arg(long)]
        fixtures: Option<PathBuf>,
    },
    /// Print one example of a recall task: its inputs and targets, token ids, aligned.
    #[command(
        after_help = "Tasks and their options (--set NAME=VALUE):\n  mqar               vocab_size (8192), num_kv_pairs (required), power_a (0.01), random_non_queries (true)\n  selective_copying  vocab_size (16), n_tokens (16)\n  induction_heads    vocab_size (16)\n  copying            alphabet (26)\n  phonebook          alphabet (26), name_len (4), number_len (10); --seq-len is the number of entries\n\nExample:\n  mvt sample --task mqar --set num_kv_pairs=4 --set vocab_size=64 --seq-len 32 --seed 0"
    )]
    Sample {
        /// mqar, selective_copying, induction_heads, copying or phonebook.
        #[arg(long)]
        task: String,
        /// A task option, NAME=VALUE; repeat for several.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        options: Vec<String>,
        #[arg(long)]
        seq_len: i64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// A training example instead of an evaluation one (they differ for copying with
        /// min_len, whose training strings vary in length).
        #[arg(long)]
        train: bool,
    },
    /// Show versions, devices, CPU and threads.
    #[command(after_help = "Example:\n  mvt info\n  mvt info --json")]
    Info {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct CheckpointArgs {
    /// A directory with `config.json` and `*.safetensors` (MambaForCausalLM or
    /// LlamaForCausalLM, single file or sharded).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Comma-separated token ids of the prompt.
    #[arg(long, value_delimiter = ',', num_args = 1.., required = true)]
    pub ids: Vec<i64>,
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    #[arg(long, default_value = "cpu", value_parser = DeviceSpec::parse)]
    pub device: DeviceSpec,
    /// Compute dtype; `A_log`, `D` and the scan state stay fp32.
    #[arg(long, default_value = "f32", value_parser = by_serde_name::<DType>)]
    pub dtype: DType,
}

/// Parses a CLI value by the names the suite format uses for it.
fn by_serde_name<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|e| e.to_string())
}
