//! One comparison point in one process (the worker side): every model of the point is built,
//! warmed up and given its calls per sample (the same sample duration for all), then all are
//! timed in interleaved rounds
//! ([`crate::measure::paired`]). A model that fails to build, warm up or scale is its run's
//! failure, and the others are still measured: paired among themselves where two or more
//! remain, alone where one does. Peak memory is not measured here: it is the whole process's,
//! which the models share.

use super::execute::{
    failure, guarded, pass_of, prepare, sampling_of, Measurement, Outcome, PairedStats, Prepared,
};
use crate::measure::paired::{
    equal_sample_durations, interleaved, Contender, PairedSampling, MIN_ROUNDS,
};
use crate::measure::timing::{calibrate, sample, warm_up, Calibration};
use crate::spec::RunSpec;
use tch::Device;

/// Rounds at most, however fast the passes: past this a ratio's interval no longer narrows
/// in any way that matters.
const MAX_ROUNDS: usize = 10_000;

/// The outcome of every run of the point `specs` (in their order), measured on `device`.
pub fn measure_point(specs: &[RunSpec], device: Device) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; specs.len()];
    let prepared: Vec<Option<Prepared>> = specs
        .iter()
        .zip(outcomes.iter_mut())
        .map(|(spec, outcome)| match guarded(|| prepare(spec, device)) {
            Ok(prepared) => Some(prepared),
            Err(message) => {
                *outcome = Some(failure(message));
                None
            }
        })
        .collect();

    // Each survivor's pass, warm and calibrated: (run index, tokens per call, contender).
    let mut ready: Vec<(usize, i64, Contender)> = Vec::new();
    let mut calibrations: Vec<Calibration> = Vec::new();
    for (i, prepared) in prepared.iter().enumerate() {
        let Some(prepared) = prepared else { continue };
        let spec = &specs[i];
        let sampling = sampling_of(spec, device);
        let scaled = guarded(|| {
            let (mut pass, tokens) = pass_of(spec, prepared)?;
            warm_up(device, sampling, &mut *pass);
            let calibration = calibrate(device, sampling.min_sample_s, &mut *pass);
            Ok((pass, tokens, calibration))
        });
        match scaled {
            Ok((pass, tokens, calibration)) => {
                calibrations.push(calibration);
                ready.push((
                    i,
                    tokens,
                    Contender {
                        calls_per_sample: calibration.calls,
                        pass,
                    },
                ));
            }
            Err(message) => outcomes[i] = Some(failure(message)),
        }
    }
    // A suite's `min_sample_s: 0` asks for one call a sample: nothing to equalise.
    let one_call_each = specs
        .first()
        .is_some_and(|spec| sampling_of(spec, device).min_sample_s <= 0.0);
    let calls = if one_call_each {
        vec![1; calibrations.len()]
    } else {
        equal_sample_durations(&calibrations)
    };
    for ((_, _, contender), calls) in ready.iter_mut().zip(calls) {
        contender.calls_per_sample = calls;
    }

    let measured = match ready.len() {
        0 => Vec::new(),
        1 => alone(specs, device, ready),
        _ => in_rounds(specs, device, ready),
    };
    for (i, outcome) in measured {
        outcomes[i] = Some(outcome);
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| failure("the point reported nothing for this run".into())))
        .collect()
}

/// The one model left of a point, timed on its own as an unpaired run is (without memory).
fn alone(
    specs: &[RunSpec],
    device: Device,
    mut ready: Vec<(usize, i64, Contender)>,
) -> Vec<(usize, Outcome)> {
    let (i, tokens, mut contender) = ready.remove(0);
    let repeats = specs[i].repeats;
    let timed = guarded(|| {
        Ok(sample(
            device,
            repeats,
            contender.calls_per_sample,
            &mut *contender.pass,
        ))
    });
    let outcome = match timed {
        Ok(timing) => Outcome::Measured(Measurement {
            timing,
            memory: None,
            tokens_per_call: tokens,
            threads: i64::from(tch::get_num_threads()),
            pairing: None,
            note: None,
        }),
        Err(message) => failure(message),
    };
    vec![(i, outcome)]
}

/// Two or more models in interleaved rounds, their ratios to the point's baseline (or, when
/// the baseline failed, to the first model left).
fn in_rounds(
    specs: &[RunSpec],
    device: Device,
    ready: Vec<(usize, i64, Contender)>,
) -> Vec<(usize, Outcome)> {
    let first = &specs[ready[0].0];
    let pairing = first
        .paired
        .clone()
        .expect("a paired point's runs are paired");
    let baseline = ready
        .iter()
        .position(|(i, _, _)| specs[*i].model == pairing.baseline)
        .unwrap_or(0);
    let sampling = PairedSampling {
        min_rounds: MIN_ROUNDS,
        target_rel_ci: pairing.target_rel_ci,
        max_time_s: pairing.max_time_s,
        max_rounds: MAX_ROUNDS,
        // Each of the point's processes gets its own order of rounds.
        seed: first.seed ^ (pairing.process as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    };
    let (index, tokens): (Vec<usize>, Vec<i64>) = ready.iter().map(|(i, t, _)| (*i, *t)).unzip();
    let mut contenders: Vec<Contender> = ready.into_iter().map(|(_, _, c)| c).collect();
    let timed = guarded(|| Ok(interleaved(device, &mut contenders, baseline, sampling)));
    let paired_with = specs[index[baseline]].run_id.clone();
    match timed {
        Ok(paired) => (0..index.len())
            .map(|k| {
                let measurement = Measurement {
                    timing: paired.timings[k],
                    memory: None,
                    tokens_per_call: tokens[k],
                    threads: i64::from(tch::get_num_threads()),
                    pairing: Some(PairedStats {
                        paired_with: paired_with.clone(),
                        ratio: paired.ratios[k],
                        rounds: paired.rounds,
                        stopped_by: paired.stop,
                        processes: 1,
                        round_times_s: paired.round_times_s[k].clone(),
                    }),
                    note: None,
                };
                (index[k], Outcome::Measured(measurement))
            })
            .collect(),
        // A failure in the rounds cannot be put on one model: every one of them says it.
        Err(message) => index
            .iter()
            .map(|&i| (i, failure(format!("during the paired rounds: {message}"))))
            .collect(),
    }
}
