//! `curves.csv`: the training curves of a folder's recall runs, one line per evaluated step.

use crate::train::trainer::CurvePoint;
use std::path::Path;

/// One run's curve, by run id.
pub type Curves = Vec<(String, Vec<CurvePoint>)>;

/// Training curves of recall runs: run_id, step, loss, lr, eval_accuracy.
pub const CURVES_FILE: &str = "curves.csv";

pub fn curves_csv(curves: &[(String, Vec<CurvePoint>)]) -> String {
    let mut csv = String::from("run_id,step,loss,lr,eval_accuracy\n");
    for (run_id, curve) in curves {
        for p in curve {
            let acc = p.eval_accuracy.map(|a| a.to_string()).unwrap_or_default();
            csv.push_str(&format!("{run_id},{},{},{},{acc}\n", p.step, p.loss, p.lr));
        }
    }
    csv
}

/// The curves already in `out`, kept when a sweep resumes.
pub fn read_curves(out: &Path) -> Curves {
    let text = std::fs::read_to_string(out.join(CURVES_FILE)).unwrap_or_default();
    let mut curves: Vec<(String, Vec<CurvePoint>)> = Vec::new();
    for line in text.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        let [run_id, step, loss, lr, acc] = cells[..] else {
            continue;
        };
        let point = CurvePoint {
            step: step.parse().unwrap_or(0),
            loss: loss.parse().unwrap_or(f64::NAN),
            lr: lr.parse().unwrap_or(f64::NAN),
            eval_accuracy: acc.parse().ok(),
        };
        match curves.last_mut() {
            Some((id, points)) if id == run_id => points.push(point),
            _ => curves.push((run_id.to_owned(), vec![point])),
        }
    }
    curves
}
