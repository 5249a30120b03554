//! The report as one self-contained HTML page: charts are inlined as SVG, so it opens offline.

use super::markdown::anchor;
use super::Report;
use std::fmt::Write;

const STYLE: &str = "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;\
color:#222}table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid \
#ccc;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f3f3f3}\
.supported{color:#17692a;font-weight:bold}.refuted{color:#b3261e;font-weight:bold}\
.mixed{color:#9a6700;font-weight:bold}.inconclusive{color:#555;font-weight:bold}\
svg{max-width:100%;height:auto}blockquote{color:#444;border-left:4px solid #ccc;margin:0;\
padding-left:1em}";

pub fn render(report: &Report) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>",
        esc(&report.title)
    );
    let _ = write!(h, "<h1>{}</h1>", esc(&report.title));
    for d in &report.descriptions {
        let _ = write!(h, "<p>{}</p>", esc(d));
    }
    let _ = write!(h, "<h2>Provenance</h2><ul>");
    for (label, value) in &report.provenance {
        let _ = write!(h, "<li><b>{}</b>: {}</li>", esc(label), esc(value));
    }
    let _ = write!(h, "</ul>");
    if !report.judgements.is_empty() {
        let _ = write!(h, "<h2>Claims</h2><table><tr><th>claim</th><th>verdict</th><th>why</th><th>evidence</th></tr>");
        for j in &report.judgements {
            let evidence = report
                .sections
                .iter()
                .find(|s| s.claims.contains(&j.id))
                .map(|s| {
                    format!(
                        "<a href=\"#{}\">{}</a>",
                        anchor(&s.experiment),
                        esc(&s.experiment)
                    )
                })
                .unwrap_or_default();
            let v = j.verdict.name();
            let _ = write!(
                h,
                "<tr><td><b>{}</b>: “{}”</td><td class=\"{v}\">{v}</td><td>{}</td><td>{evidence}</td></tr>",
                esc(&j.id),
                esc(&j.claim),
                esc(&j.summary)
            );
        }
        let _ = write!(h, "</table>");
        for j in &report.judgements {
            let v = j.verdict.name();
            let _ = write!(
                h,
                "<h3>{} — <span class=\"{v}\">{v}</span></h3><blockquote>{}</blockquote><ul>",
                esc(&j.id),
                esc(&j.claim)
            );
            for (i, level) in j.levels.iter().enumerate() {
                let headline = if i == 0 { " (the headline)" } else { "" };
                let lv = level.verdict.name();
                let _ = write!(
                    h,
                    "<li><b>{}</b>{headline}: <span class=\"{lv}\">{lv}</span> — {}</li>",
                    esc(&level.name),
                    esc(&level.summary)
                );
            }
            if !j.levels.is_empty() {
                let _ = write!(h, "</ul><p>Per width:</p><ul>");
            }
            for f in &j.findings {
                let source = if f.measured { "measured" } else { "predicted" };
                let fv = f.verdict.name();
                let _ = write!(
                    h,
                    "<li>{} ({source}): <span class=\"{fv}\">{fv}</span> — {}</li>",
                    esc(&f.at),
                    esc(&f.detail)
                );
            }
            let _ = write!(h, "</ul>");
            if let Some(table) = &j.table {
                write_table(&mut h, &table.header, &table.rows);
            }
        }
    }
    for s in &report.sections {
        let _ = write!(
            h,
            "<h2 id=\"{}\">{}</h2><p>{} experiment.</p>",
            anchor(&s.experiment),
            esc(&s.experiment),
            esc(s.kind.name())
        );
        for chart in &s.charts {
            let svg = std::fs::read_to_string(chart).unwrap_or_default();
            // Drop the XML declaration: the SVG sits inside HTML.
            let body = svg.find("<svg").map_or("", |i| &svg[i..]);
            let _ = write!(h, "<div>{body}</div>");
        }
        write_table(&mut h, &s.header, &s.rows);
    }
    let _ = write!(h, "<h2>Runs that did not succeed</h2>");
    if report.failures.is_empty() {
        let _ = write!(h, "<p>None: every run ended <code>ok</code>.</p>");
    } else {
        let _ = write!(
            h,
            "<table><tr><th>experiment</th><th>run</th><th>status</th><th>message</th></tr>"
        );
        for failed in &report.failures {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&failed.experiment),
                esc(&failed.run_id),
                esc(failed.status.name()),
                esc(&failed.message)
            );
        }
        let _ = write!(h, "</table>");
    }
    let _ = writeln!(h, "</body></html>");
    h
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A table of text cells, escaped.
fn write_table(h: &mut String, header: &[String], rows: &[Vec<String>]) {
    let _ = write!(h, "<table><tr>");
    for name in header {
        let _ = write!(h, "<th>{}</th>", esc(name));
    }
    let _ = write!(h, "</tr>");
    for row in rows {
        let _ = write!(h, "<tr>");
        for value in row {
            let _ = write!(h, "<td>{}</td>", esc(value));
        }
        let _ = write!(h, "</tr>");
    }
    let _ = write!(h, "</table>");
}
