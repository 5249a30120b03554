//! Helpers shared by the integration tests.

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
