//! `curves.csv`: the training curves of a folder's recall runs, one line per evaluated step.

use crate::train::eval::LengthAccuracy;
use crate::train::trainer::CurvePoint;
use std::path::Path;

/// One run's curve, by run id.
pub type Curves = Vec<(String, Vec<CurvePoint>)>;

/// Training curves of recall runs: run_id, step, loss, lr, eval_accuracy and reach, the
/// accuracy at longer lengths where it was measured, as `4096:40/40;1048576:31/40` (length:
/// correct/scored), so that each line stays one evaluated step and the file stays a table.
pub const CURVES_FILE: &str = "curves.csv";

pub fn curves_csv(curves: &[(String, Vec<CurvePoint>)]) -> String {
    let mut csv = String::from("run_id,step,loss,lr,eval_accuracy,reach\n");
    for (run_id, curve) in curves {
        for p in curve {
            let acc = p.eval_accuracy.map(|a| a.to_string()).unwrap_or_default();
            let reach = reach_cell(&p.reach);
            csv.push_str(&format!(
                "{run_id},{},{},{},{acc},{reach}\n",
                p.step, p.loss, p.lr
            ));
        }
    }
    csv
}

fn reach_cell(reach: &[LengthAccuracy]) -> String {
    let cells: Vec<String> = reach
        .iter()
        .map(|r| format!("{}:{}/{}", r.seq_len, r.correct, r.scored))
        .collect();
    cells.join(";")
}

/// The lengths of a reach cell that parse; an empty cell has none.
fn parse_reach(cell: &str) -> Vec<LengthAccuracy> {
    cell.split(';')
        .filter_map(|part| {
            let (seq_len, counts) = part.split_once(':')?;
            let (correct, scored) = counts.split_once('/')?;
            Some(LengthAccuracy {
                seq_len: seq_len.parse().ok()?,
                correct: correct.parse().ok()?,
                scored: scored.parse().ok()?,
            })
        })
        .collect()
}

/// The curves already in `out`, kept when a sweep resumes.
pub fn read_curves(out: &Path) -> Curves {
    let text = std::fs::read_to_string(out.join(CURVES_FILE)).unwrap_or_default();
    let mut curves: Vec<(String, Vec<CurvePoint>)> = Vec::new();
    for line in text.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        // Folders from before reach was measured have five columns.
        let (run_id, step, loss, lr, acc, reach) = match cells[..] {
            [run_id, step, loss, lr, acc] => (run_id, step, loss, lr, acc, ""),
            [run_id, step, loss, lr, acc, reach] => (run_id, step, loss, lr, acc, reach),
            _ => continue,
        };
        let point = CurvePoint {
            step: step.parse().unwrap_or(0),
            loss: loss.parse().unwrap_or(f64::NAN),
            lr: lr.parse().unwrap_or(f64::NAN),
            eval_accuracy: acc.parse().ok(),
            reach: parse_reach(reach),
        };
        match curves.last_mut() {
            Some((id, points)) if id == run_id => points.push(point),
            _ => curves.push((run_id.to_owned(), vec![point])),
        }
    }
    curves
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reach_survives_the_round_trip_and_old_files_still_read() {
        let point = |step, reach| CurvePoint {
            step,
            loss: 0.5,
            lr: 1e-3,
            eval_accuracy: Some(1.0),
            reach,
        };
        let reach = vec![
            LengthAccuracy {
                seq_len: 4096,
                correct: 40,
                scored: 40,
            },
            LengthAccuracy {
                seq_len: 1048576,
                correct: 31,
                scored: 40,
            },
        ];
        let curves = vec![(
            "run".to_owned(),
            vec![point(250, Vec::new()), point(500, reach)],
        )];
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CURVES_FILE), curves_csv(&curves)).unwrap();
        assert_eq!(read_curves(dir.path()), curves);
        assert!(curves_csv(&curves).contains(",4096:40/40;1048576:31/40\n"));

        let old = "run_id,step,loss,lr,eval_accuracy\nrun,250,0.5,0.001,1\n";
        std::fs::write(dir.path().join(CURVES_FILE), old).unwrap();
        assert_eq!(
            read_curves(dir.path()),
            vec![("run".to_owned(), vec![point(250, Vec::new())])]
        );
    }
}
