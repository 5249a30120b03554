//! `mvt`: the command line. Parses arguments, calls the library, prints errors with context.
//!
//! Exit codes: 0 success, 1 a failure while running, 2 invalid input (suite or arguments).

mod cli;

use anyhow::{bail, Context, Result};
use clap::Parser;
use cli::{CheckpointArgs, Cli, Command};
use mamba_vs_transformer::device::DeviceSpec;
use mamba_vs_transformer::environment::Environment;
use mamba_vs_transformer::models::checkpoint::{Checkpoint, CheckpointError};
use mamba_vs_transformer::models::lm::Mode;
use mamba_vs_transformer::report::{self, ReportError};
use mamba_vs_transformer::results::folder::FolderError;
use mamba_vs_transformer::results::run_specs::RUNS_FILE;
use mamba_vs_transformer::results::{store, ResultsFolder};
use mamba_vs_transformer::runner::{self, Options};
use mamba_vs_transformer::suite::{Machine, Plan, Shard, SuiteError};
use mamba_vs_transformer::tasks::{Split, Task, IGNORE};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tch::Tensor;

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
                e.is::<SuiteError>()
                    || e.is::<InvalidInput>()
                    || e.is::<CheckpointError>()
                    || e.is::<FolderError>()
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
            reuse,
        } => run_suite(&suite, out, resume, shard, reuse),
        Command::Merge { out, dirs } => merge(&out, &dirs),
        Command::Validate { suite } => {
            let plan = Plan::load(&suite, Machine::current())?;
            for warning in &plan.warnings {
                eprintln!("warning: {}: {warning}", suite.display());
            }
            println!(
                "{}: valid; {} experiment(s), {} run(s) on {}",
                suite.display(),
                plan.suite.experiments.len(),
                plan.runs.len(),
                plan.device
            );
            Ok(())
        }
        Command::Plot { results } => plot(&results),
        Command::Mechanism { results } => {
            let folder = ResultsFolder::open(&results)?;
            for file in runner::mechanism::write_mechanism(&folder)? {
                println!("{}", file.display());
            }
            Ok(())
        }
        Command::Logits { model, mode, out } => logits(&model, mode, &out),
        Command::Generate { model, max_new } => generate(&model, max_new),
        Command::Worker {
            spec,
            outcome,
            weights,
            checkpoint,
        } => {
            let keep = runner::recall::Keep {
                checkpoint: checkpoint.as_deref(),
                weights: weights.as_deref(),
            };
            Ok(runner::worker::serve(&spec, &outcome, &keep)?)
        }
        Command::Report { results, out } => {
            let out = out.unwrap_or_else(|| results[0].clone());
            let files = report::write(&results, &out).map_err(|e| match e {
                ReportError::NotResults(folder) => anyhow::Error::from(folder),
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
    reuse: Vec<PathBuf>,
) -> Result<()> {
    let plan = Plan::load(suite_path, Machine::current())?;
    for warning in &plan.warnings {
        eprintln!("warning: {}: {warning}", suite_path.display());
    }
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
        plan.device,
        out_dir.display()
    );
    let options = Options {
        suite_path: suite_path.to_owned(),
        out_dir: out_dir.clone(),
        resume,
        worker: std::env::current_exe().context("cannot find the mvt binary to start runs")?,
        shard,
        reuse,
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
    let mut folder = ResultsFolder::open(results)?;
    if folder.save_runs_if_missing()? {
        eprintln!(
            "{} had no {RUNS_FILE}; saved the run specs its suite expands to",
            results.display()
        );
    }
    let plots = &folder.manifest.resolved_suite.plots;
    let files = runner::write_analysis(plots, &folder.runs, results, &mut folder.rows)?;
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
