//! `mvt`: the command line. Parses arguments, calls the library, prints errors with context.
//!
//! Exit codes: 0 success, 1 a failure while running, 2 invalid input (suite or arguments).

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use mamba_vs_transformer::device::DeviceSpec;
use mamba_vs_transformer::environment::Environment;
use mamba_vs_transformer::models::checkpoint::{Checkpoint, CheckpointError};
use mamba_vs_transformer::models::lm::Mode;
use mamba_vs_transformer::results::manifest::{Manifest, MANIFEST_FILE};
use mamba_vs_transformer::results::store;
use mamba_vs_transformer::runner::{self, Options};
use mamba_vs_transformer::suite::schema::DType;
use mamba_vs_transformer::suite::{grid, Machine, Plan, Shard, SuiteError};
use mamba_vs_transformer::tasks::{Split, Task, IGNORE};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use tch::Tensor;

#[derive(Parser)]
#[command(
    name = "mvt",
    version,
    about = "Mamba vs Transformer: measured, not argued"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every experiment of a suite and write tables, a manifest and charts.
    #[command(
        after_help = "Example:\n  mvt run experiments/smoke.yaml\n  mvt run experiments/smoke.yaml --out /tmp/smoke --resume"
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
        weights: Option<PathBuf>,
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
struct CheckpointArgs {
    /// A directory with `config.json` and `*.safetensors` (MambaForCausalLM or
    /// LlamaForCausalLM, single file or sharded).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Comma-separated token ids of the prompt.
    #[arg(long, value_delimiter = ',', num_args = 1.., required = true)]
    ids: Vec<i64>,
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    #[arg(long, default_value = "cpu", value_parser = DeviceSpec::parse)]
    device: DeviceSpec,
    /// Compute dtype; `A_log`, `D` and the scan state stay fp32.
    #[arg(long, default_value = "f32", value_parser = by_serde_name::<DType>)]
    dtype: DType,
}

/// Parses a CLI value by the names the suite format uses for it.
fn by_serde_name<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|e| e.to_string())
}

/// Input the user must fix: exits with status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct InvalidInput(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:#}");
            let invalid = error.chain().any(|e| {
                e.is::<SuiteError>() || e.is::<InvalidInput>() || e.is::<CheckpointError>()
            });
            ExitCode::from(if invalid { 2 } else { 1 })
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run {
            suite,
            out,
            resume,
            shard,
        } => run_suite(&suite, out, resume, shard),
        Command::Merge { out, dirs } => merge(&out, &dirs),
        Command::Validate { suite } => {
            let plan = Plan::load(&suite, Machine::current())?;
            println!(
                "{}: valid; {} experiment(s), {} run(s) on {}",
                suite.display(),
                plan.suite.experiments.len(),
                plan.runs.len(),
                mamba_vs_transformer::device::device_name(plan.device)
            );
            Ok(())
        }
        Command::Plot { results } => plot(&results),
        Command::Logits { model, mode, out } => logits(&model, mode, &out),
        Command::Generate { model, max_new } => generate(&model, max_new),
        Command::Worker {
            spec,
            outcome,
            weights,
        } => Ok(runner::worker::serve(&spec, &outcome, weights.as_deref())?),
        Command::Report { results, out } => {
            let out = out.unwrap_or_else(|| results[0].clone());
            let files =
                mamba_vs_transformer::report::write(&results, &out).map_err(|e| match e {
                    mamba_vs_transformer::report::ReportError::NotResults { .. } => {
                        anyhow::Error::from(InvalidInput(e.to_string()))
                    }
                    other => other.into(),
                })?;
            for file in files {
                println!("{}", file.display());
            }
            Ok(())
        }
        Command::Selfcheck { device, fixtures } => selfcheck(device, fixtures.as_deref()),
        Command::Sample {
            task,
            options,
            seq_len,
            seed,
            train,
        } => {
            let split = if train { Split::Train } else { Split::Eval };
            sample(&task, &options, split, seq_len, seed)
        }
        Command::Info { json } => info(json),
    }
}

fn selfcheck(device: DeviceSpec, fixtures: Option<&Path>) -> Result<()> {
    let device = device
        .resolve(Machine::current().cuda_devices)
        .map_err(InvalidInput)?;
    let checks = mamba_vs_transformer::selfcheck::run(device, fixtures);
    for check in &checks {
        let mark = if check.passed { "ok  " } else { "FAIL" };
        println!("{mark}  {}: {}", check.name, check.detail);
    }
    let failed = checks.iter().filter(|c| !c.passed).count();
    println!("{} check(s), {failed} failed", checks.len());
    if failed > 0 {
        bail!("{failed} of {} self-checks failed", checks.len());
    }
    Ok(())
}

/// Builds the task from its name and NAME=VALUE options, with the suite format's names.
fn parse_task(name: &str, options: &[String]) -> Result<Task, InvalidInput> {
    let mut fields = serde_json::Map::new();
    fields.insert("task".into(), serde_json::Value::String(name.to_owned()));
    for option in options {
        let (key, value) = option
            .split_once('=')
            .ok_or_else(|| InvalidInput(format!("--set `{option}`: expected NAME=VALUE")))?;
        let value = serde_json::from_str(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
        fields.insert(key.to_owned(), value);
    }
    serde_json::from_value(serde_json::Value::Object(fields))
        .map_err(|e| InvalidInput(format!("task `{name}`: {e}")))
}

fn sample(name: &str, options: &[String], split: Split, seq_len: i64, seed: u64) -> Result<()> {
    let task = parse_task(name, options)?;
    let example = task
        .example_for(split, seq_len, seed)
        .map_err(|e| InvalidInput(e.to_string()))?;
    println!(
        "{} (vocab {}), seq_len {seq_len}, seed {seed}: {} tokens, {} scored; · = ignored (-100)",
        task.name(),
        task.vocab_size(),
        example.inputs.len(),
        example.targets.iter().filter(|t| **t != IGNORE).count()
    );
    const PER_LINE: usize = 20;
    let width = task
        .vocab_size()
        .max(example.inputs.len() as i64)
        .to_string()
        .len()
        + 1;
    let cell = |v: i64| {
        if v == IGNORE {
            format!("{:>width$}", "·")
        } else {
            format!("{v:>width$}")
        }
    };
    for start in (0..example.inputs.len()).step_by(PER_LINE) {
        let end = (start + PER_LINE).min(example.inputs.len());
        let row = |values: &[i64]| values.iter().map(|v| cell(*v)).collect::<String>();
        let positions: Vec<i64> = (start as i64..end as i64).collect();
        println!();
        println!("position {}", row(&positions));
        println!("inputs   {}", row(&example.inputs[start..end]));
        println!("targets  {}", row(&example.targets[start..end]));
    }
    Ok(())
}

/// The checkpoint on its device, and the prompt as a (1, seq_len) tensor of valid ids.
fn load_checkpoint(args: &CheckpointArgs) -> Result<(Checkpoint, Tensor)> {
    let device = args
        .device
        .resolve(Machine::current().cuda_devices)
        .map_err(InvalidInput)?;
    let checkpoint = Checkpoint::load(&args.checkpoint, device, args.dtype.kind())
        .with_context(|| format!("loading checkpoint `{}`", args.checkpoint.display()))?;
    let vocab = checkpoint.config.vocab_size();
    if let Some(bad) = args.ids.iter().find(|&&id| !(0..vocab).contains(&id)) {
        return Err(InvalidInput(format!(
            "token id {bad} is out of range: this checkpoint's vocabulary is 0..{vocab}"
        ))
        .into());
    }
    let ids = Tensor::from_slice(&args.ids).unsqueeze(0).to_device(device);
    Ok((checkpoint, ids))
}

fn logits(args: &CheckpointArgs, mode: Mode, out: &Path) -> Result<()> {
    let (checkpoint, ids) = load_checkpoint(args)?;
    let logits = tch::no_grad(|| checkpoint.model.logits(&ids, mode))
        .squeeze_dim(0)
        .to_kind(tch::Kind::Float)
        .to_device(tch::Device::Cpu);
    logits
        .write_npy(out)
        .with_context(|| format!("writing `{}`", out.display()))?;
    eprintln!(
        "{} logits {:?} ({} mode) → {}",
        checkpoint.config.family().name(),
        logits.size(),
        mode.name(),
        out.display()
    );
    Ok(())
}

fn generate(args: &CheckpointArgs, max_new: i64) -> Result<()> {
    if max_new < 0 {
        return Err(InvalidInput(format!("--max-new must be ≥ 0, not {max_new}")).into());
    }
    let (checkpoint, ids) = load_checkpoint(args)?;
    let new = tch::no_grad(|| checkpoint.model.generate_greedy(&ids, max_new));
    let new = Vec::<i64>::try_from(new.squeeze_dim(0).to_device(tch::Device::Cpu))?;
    println!(
        "{}",
        new.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
    );
    Ok(())
}

fn run_suite(
    suite_path: &Path,
    out: Option<PathBuf>,
    resume: bool,
    shard: Option<Shard>,
) -> Result<()> {
    let plan = Plan::load(suite_path, Machine::current())?;
    let out_dir = out.unwrap_or_else(|| {
        let name = match shard {
            Some(s) => format!("{}.shard-{}of{}", plan.suite.name, s.index, s.count),
            None => plan.suite.name.clone(),
        };
        Path::new("results").join(name)
    });
    eprintln!(
        "suite `{}`: {} run(s) on {} → {}",
        plan.suite.name,
        plan.runs.len(),
        mamba_vs_transformer::device::device_name(plan.device),
        out_dir.display()
    );
    let options = Options {
        suite_path: suite_path.to_owned(),
        out_dir: out_dir.clone(),
        resume,
        worker: std::env::current_exe().context("cannot find the mvt binary to start runs")?,
        shard,
    };
    let summary = runner::run(&plan, &options)?;

    let table = store::read_frame(&out_dir)?;
    let shown = [
        "experiment",
        "model",
        "d_model",
        "seq_len",
        "batch",
        "status",
        "latency_median_s",
        "tokens_per_s",
    ];
    if let Ok(view) = table.select(shown) {
        std::env::set_var("POLARS_FMT_MAX_ROWS", "40");
        println!("{view}");
    }
    eprintln!(
        "{} run(s): {} ran, {} resumed, {} failed; results in {} ({} chart file(s))",
        summary.planned,
        summary.ran,
        summary.skipped,
        summary.failed,
        out_dir.display(),
        summary.charts.len()
    );
    if summary.failed > 0 {
        bail!(
            "{} run(s) failed; their rows in {} say why (status, message)",
            summary.failed,
            out_dir.join(store::CSV_FILE).display()
        );
    }
    Ok(())
}

fn merge(out: &Path, dirs: &[PathBuf]) -> Result<()> {
    let summary = runner::merge::merge(out, dirs).map_err(|e| match e {
        runner::merge::MergeError::Run(run) => anyhow::Error::from(run),
        invalid => InvalidInput(invalid.to_string()).into(),
    })?;
    for conflict in &summary.conflicts {
        eprintln!("conflict: {conflict}");
    }
    eprintln!(
        "{} of {} planned run(s) in {} ({} duplicate row(s), {} conflict(s), {} chart file(s))",
        summary.rows,
        summary.planned,
        out.display(),
        summary.duplicates,
        summary.conflicts.len(),
        summary.charts.len()
    );
    Ok(())
}

fn plot(results: &Path) -> Result<()> {
    let manifest_path = results.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| {
        InvalidInput(format!(
            "`{}` is not a results folder ({e} reading {MANIFEST_FILE})",
            results.display()
        ))
    })?;
    let manifest: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("cannot parse `{}`", manifest_path.display()))?;
    let runs = grid::expand(&manifest.resolved_suite, &manifest.device);
    let plan = Plan {
        device: tch::Device::Cpu,
        runs,
        suite: manifest.resolved_suite,
    };
    let mut rows = store::read_rows(results)?;
    let files = runner::write_analysis(&plan, results, &mut rows)?;
    for file in &files {
        println!("{}", file.display());
    }
    Ok(())
}

fn info(json: bool) -> Result<()> {
    let env = Environment::collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&env)?);
        return Ok(());
    }
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".to_owned());
    println!("mvt               {}", env.mvt_version);
    println!("tch               {}", env.tch_version);
    println!("libtorch          {}", or_none(&env.libtorch_version));
    println!("libtorch CUDA     {}", or_none(&env.libtorch_cuda));
    if let Some(dir) = &env.libtorch_dir {
        println!("libtorch lib      {}", dir.display());
    }
    println!(
        "CUDA available    {} ({} device(s))",
        env.cuda_available, env.cuda_devices
    );
    for (i, name) in env.gpu_names.iter().enumerate() {
        println!("  cuda:{i}          {name}");
    }
    if let Some(cudnn) = env.cudnn_version {
        println!("cuDNN             {cudnn}");
    }
    println!(
        "CPU               {} ({} cores)",
        env.cpu_model, env.cpu_cores
    );
    println!("torch threads     {}", env.torch_threads);
    println!("OS                {}", env.os);
    Ok(())
}
