//! `mechanism.csv`: what each trained Mamba's Δ implies for its memory (`train::mechanism`),
//! one line per run and layer, beside the reach the run measured.

use crate::train::mechanism::LayerMechanism;

pub const MECHANISM_FILE: &str = "mechanism.csv";

/// One run's layer.
#[derive(Debug, Clone, PartialEq)]
pub struct MechanismRow {
    pub run_id: String,
    pub experiment: String,
    pub model: String,
    pub seed: u64,
    pub lr: f64,
    pub steps: i64,
    /// The longest length its final evaluation cleared (`analysis::reach`); `None` when it
    /// did not learn the task.
    pub measured_reach: Option<i64>,
    pub layer: LayerMechanism,
}

const HEADER: &str = "run_id,experiment,model,seed,lr,steps,measured_reach,layer,\
delta_noise_p10,delta_noise_p50,delta_noise_p90,delta_trigger_p50,delta_answer_p50,\
half_life_p10,half_life_p50,half_life_p90,writer_half_life,writer_retention_2p20\n";

pub fn mechanism_csv(rows: &[MechanismRow]) -> String {
    let mut csv = String::from(HEADER);
    for r in rows {
        let m = &r.layer;
        let reach = r.measured_reach.map_or(String::new(), |l| l.to_string());
        csv.push_str(&format!(
            "{},{},{},{},{},{},{reach},{},{:.4e},{:.4e},{:.4e},{:.4e},{:.4e},{:.4e},{:.4e},{:.4e},{:.4e},{:.4e}\n",
            r.run_id,
            r.experiment,
            r.model,
            r.seed,
            r.lr,
            r.steps,
            m.layer,
            m.delta_noise.p10,
            m.delta_noise.p50,
            m.delta_noise.p90,
            m.delta_trigger.p50,
            m.delta_answer.p50,
            m.half_life.p10,
            m.half_life.p50,
            m.half_life.p90,
            m.writer_half_life,
            m.writer_retention_far,
        ));
    }
    csv
}
