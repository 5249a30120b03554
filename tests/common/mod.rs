//! Helpers shared by the integration tests. Each test crate uses the ones it needs.

#![allow(dead_code)]

use std::sync::Mutex;

/// libtorch has one global generator, and tests run on parallel threads: a seeded draw holds
/// this lock from `manual_seed` to its last sample, so the same seed gives the same tensors.
static GLOBAL_RNG: Mutex<()> = Mutex::new(());

/// Runs `draw` right after seeding libtorch's generator with `seed`, with no other test drawing.
pub fn seeded<T>(seed: i64, draw: impl FnOnce() -> T) -> T {
    let _guard = GLOBAL_RNG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    tch::manual_seed(seed);
    draw()
}

/// `mvt ARGS` in `cwd`, run to completion.
pub fn mvt(args: &[&str], cwd: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_mvt"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("mvt runs")
}

/// The rows a results folder holds so far (none before the first is written).
pub fn rows(results: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(results.join("rows.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect()
}

/// What a finished command printed, stdout then stderr.
pub fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
