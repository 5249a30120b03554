//! The report as Markdown, with charts linked relative to the report's folder.

use super::Report;
use std::fmt::Write;
use std::path::Path;

pub fn render(report: &Report, out: &Path) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", report.title);
    for d in &report.descriptions {
        let _ = writeln!(md, "{d}\n");
    }
    let _ = writeln!(md, "## Provenance\n");
    for (label, value) in &report.provenance {
        let _ = writeln!(md, "- **{label}**: {value}");
    }
    if !report.judgements.is_empty() {
        let _ = writeln!(md, "\n## Claims\n");
        let _ = writeln!(
            md,
            "| claim | verdict | why | evidence |\n| --- | --- | --- | --- |"
        );
        for j in &report.judgements {
            let evidence = report
                .sections
                .iter()
                .find(|s| s.claims.contains(&j.id))
                .map(|s| format!("[{}](#{})", s.experiment, anchor(&s.experiment)))
                .unwrap_or_default();
            let _ = writeln!(
                md,
                "| **{}**: “{}” | **{}** | {} | {} |",
                j.id,
                cell(&j.claim),
                j.verdict.name(),
                cell(&j.summary),
                evidence
            );
        }
        for j in &report.judgements {
            let _ = writeln!(md, "\n### {} — {}\n", j.id, j.verdict.name());
            let _ = writeln!(md, "> {}\n", j.claim);
            for (i, level) in j.levels.iter().enumerate() {
                let headline = if i == 0 { " (the headline)" } else { "" };
                let _ = writeln!(
                    md,
                    "- **{}**{headline}: **{}** — {}",
                    level.name,
                    level.verdict.name(),
                    level.summary
                );
            }
            if !j.levels.is_empty() {
                let _ = writeln!(md, "\nPer width:\n");
            }
            for f in &j.findings {
                let source = if f.measured { "measured" } else { "predicted" };
                let _ = writeln!(
                    md,
                    "- {} ({source}): **{}** — {}",
                    f.at,
                    f.verdict.name(),
                    f.detail
                );
            }
            if let Some(table) = &j.table {
                let _ = writeln!(md, "\n| {} |", table.header.join(" | "));
                let _ = writeln!(md, "|{}", " --- |".repeat(table.header.len()));
                for row in &table.rows {
                    let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
                    let _ = writeln!(md, "| {} |", cells.join(" | "));
                }
            }
        }
    }
    for s in &report.sections {
        let _ = writeln!(md, "\n## {}\n", s.experiment);
        let _ = writeln!(
            md,
            "<a id=\"{}\"></a>{} experiment.\n",
            anchor(&s.experiment),
            s.kind.name()
        );
        for chart in &s.charts {
            let shown = relative(chart, out);
            let _ = writeln!(md, "![{}]({shown})\n", shown);
        }
        let _ = writeln!(md, "| {} |", s.header.join(" | "));
        let _ = writeln!(md, "|{}", " --- |".repeat(s.header.len()));
        for row in &s.rows {
            let _ = writeln!(
                md,
                "| {} |",
                row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
            );
        }
    }
    let _ = writeln!(md, "\n## Runs that did not succeed\n");
    if report.failures.is_empty() {
        let _ = writeln!(md, "None: every run ended `ok`.");
    } else {
        let _ = writeln!(
            md,
            "| experiment | run | status | message |\n| --- | --- | --- | --- |"
        );
        for failed in &report.failures {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                failed.experiment,
                failed.run_id,
                failed.status.name(),
                cell(&failed.message)
            );
        }
    }
    md
}

/// Text safe inside a table cell: one line, pipes escaped, long messages cut.
fn cell(text: &str) -> String {
    let one_line = text.replace('\n', " ").replace('|', "\\|");
    if one_line.chars().count() > 300 {
        format!("{}…", one_line.chars().take(300).collect::<String>())
    } else {
        one_line
    }
}

pub(super) fn anchor(name: &str) -> String {
    format!(
        "experiment-{}",
        name.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    )
}

/// `path` relative to `base` when it lies under it (or beside it), else as given.
fn relative(path: &Path, base: &Path) -> String {
    let (Ok(p), Ok(b)) = (path.canonicalize(), base.canonicalize()) else {
        return path.display().to_string();
    };
    if let Ok(rest) = p.strip_prefix(&b) {
        return rest.display().to_string();
    }
    let mut up = String::new();
    let mut ancestor = b.as_path();
    while let Some(parent) = ancestor.parent() {
        up.push_str("../");
        if let Ok(rest) = p.strip_prefix(parent) {
            return format!("{up}{}", rest.display());
        }
        ancestor = parent;
    }
    path.display().to_string()
}
