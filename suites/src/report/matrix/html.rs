//! The matrix as one static HTML page (no server, no outside resource): the same content as
//! REPORT.md. The feature summary fits a 1400 px screen and becomes one card per feature on
//! a phone; the case table scrolls inside its own box, with its header and case column
//! sticky, filtered by area and outcome by a few lines of script (without script every row
//! shows). Every cell's full record is in its tooltip.

use std::fmt::Write;
use std::path::Path;

use super::{compact, relative, shorten, Mark, Matrix, Section};
use crate::case::Area;
use crate::outcome::Outcome;
use crate::probes::Answer;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Escapes text and turns Markdown code spans (`x`) into `<code>`.
fn esc_code(s: &str) -> String {
    let mut o = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(o, "<code>{}</code>", esc(part));
        } else {
            o.push_str(&esc(part));
        }
    }
    o
}

const STYLE: &str = "
:root { --line: #d0d0d0; --head: #f3f3f3; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; padding: 1em 1.5em; color: #222;
  max-width: 1600px; }
h1 { font-size: 1.45em; margin: .2em 0 .3em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
h3 { font-size: 1.05em; }
p.intro { margin: 0 0 .8em; max-width: 75em; }
table { border-collapse: separate; border-spacing: 0; }
th, td { border: 1px solid var(--line); border-width: 0 1px 1px 0; padding: 3px 6px;
  vertical-align: top; background: #fff; }
tr > :first-child { border-left-width: 1px; } thead tr:first-child > * { border-top-width: 1px; }
th { background: var(--head); text-align: left; }
code { font-family: ui-monospace, monospace; font-size: .92em; overflow-wrap: anywhere; }
.wide { overflow-x: auto; max-width: 100%; }
/* The summary: one row per feature, fits a laptop screen. */
table.summary { width: 100%; table-layout: fixed; }
table.summary th.feature { width: 30%; }
table.summary td { text-align: center; white-space: nowrap; font-size: 1.1em; }
table.summary td.feature { text-align: left; white-space: normal; font-size: 1em; font-weight: 600; }
table.summary .k { display: none; }
td.works { background: #e3f5e1; } td.quirk { background: #fff1c2; }
td.missing { background: #ececec; } td.broken { background: #f9c9c4; }
td.untested { background: #e8eefc; } td.none { color: #999; }
sup a { text-decoration: none; }
.legend { display: flex; flex-wrap: wrap; gap: .3em 1.2em; margin: .5em 0; padding: 0;
  list-style: none; font-size: .92em; }
.legend li { white-space: nowrap; }
.legend .swatch.pass { background: #e3f5e1; } .legend .swatch.fail { background: #f9c9c4; }
.legend .swatch.unsupported { background: #e6e6e6; } .legend .swatch.skipped { background: #fff4c2; }
.legend .swatch.error { background: #ffd9a8; } .legend .swatch.norep { background: #f2d7f5; }
.legend .swatch.works { background: #e3f5e1; } .legend .swatch.quirk { background: #fff1c2; }
.legend .swatch.missing { background: #ececec; } .legend .swatch.broken { background: #f9c9c4; }
.legend .swatch.untested { background: #e8eefc; }
.legend .swatch { display: inline-block; min-width: 1.6em; text-align: center;
  border: 1px solid var(--line); margin-right: .3em; }
ol.notes { font-size: .9em; padding-left: 2em; margin-top: .4em; }
ol.notes li { margin: .15em 0; }
/* A phone: each feature becomes a card, its kernels wrap. */
@media (max-width: 720px) {
  body { padding: .6em; }
  .legend li { white-space: normal; }
  table.summary, table.summary tbody, table.summary tr, table.summary td { display: block;
    width: auto; }
  table.summary thead { display: none; }
  table.summary tr { border: 1px solid var(--line); margin-bottom: .5em; padding: .2em; }
  table.summary td { display: inline-block; border: 0; margin: 2px; padding: 2px 5px; }
  table.summary td.feature { display: block; }
  table.summary .k { display: inline; font-size: .8em; color: #444; margin-right: .2em; }
  /* Every other table scrolls in its own box rather than widening the page. */
  table:not(.summary) { display: block; overflow-x: auto; max-width: 100%; }
  div.cases table { display: table; }
  pre, svg { max-width: 100%; }
  /* Long reasons (a tc command line, a path) break anywhere rather than widen the page. */
  ol, ul { overflow-wrap: anywhere; }
}
/* The case table: scrolls in its own box; header row and case column stay visible. */
.filters { display: flex; flex-wrap: wrap; gap: .4em 1.2em; align-items: center;
  margin: .4em 0 .6em; }
.filters fieldset { border: 1px solid var(--line); padding: .2em .6em; margin: 0; }
div.cases { overflow: auto; max-height: 80vh; border: 1px solid var(--line); }
div.cases table { border-spacing: 0; }
div.cases thead th { position: sticky; top: 0; z-index: 2; }
div.cases .case { position: sticky; left: 0; z-index: 1; font-family: ui-monospace, monospace;
  white-space: nowrap; background: #fafafa; }
div.cases thead th.case { z-index: 3; background: var(--head); }
div.cases tr.areahead th { position: sticky; top: 0; }
td.pass { background: #e3f5e1; } td.fail { background: #f9c9c4; font-weight: bold; }
td.unsupported { background: #e6e6e6; } td.skipped { background: #fff4c2; }
td.error { background: #ffd9a8; } td.norep { background: #f2d7f5; }
.fact { font-size: .85em; color: #333; } .common { font-size: .85em; color: #555;
  min-width: 18em; }
pre { background: #f6f6f6; padding: .5em; overflow-x: auto; white-space: pre-wrap; }
.yes { color: #176317; } .no { color: #a01010; font-weight: bold; } .blocked { color: #8a6d00; }
ul.changes > li { margin: .4em 0; } ul.changes ul { margin: .1em 0; }
.behaviour { font-weight: 600; }
";

/// Shows only the case rows of the chosen areas and outcome.
const SCRIPT: &str = "
(function () {
  var form = document.getElementById('filters');
  if (!form) return;
  form.hidden = false;
  function apply() {
    var areas = {};
    form.querySelectorAll('input[name=area]').forEach(function (i) { areas[i.value] = i.checked; });
    var outcome = form.querySelector('select[name=outcome]').value;
    document.querySelectorAll('div.cases tbody tr').forEach(function (tr) {
      var show = areas[tr.dataset.area] !== false;
      if (outcome === 'differs') show = show && tr.dataset.differs === '1';
      else if (outcome) show = show && (' ' + tr.dataset.outcomes + ' ').indexOf(' ' + outcome + ' ') >= 0;
      tr.hidden = !show;
    });
  }
  form.addEventListener('change', apply);
  apply();
})();
";

pub fn render(m: &Matrix, base: &Path) -> String {
    render_with(m, base, &[])
}

/// The page with `extra` sections appended after the matrix's own.
pub fn render_with(m: &Matrix, base: &Path, extra: &[Section]) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>zccheck compatibility matrix</title><style>{STYLE}</style></head><body>\n\
         <h1>zccheck compatibility matrix</h1>\n<p class=\"intro\">Can a program rely on \
         zero-copy networking on kernel X, and what behaves differently there? One row per \
         feature, one column per kernel (oldest first), derived by <code>zccheck matrix</code> \
         from {} reports; every mark traces back to the cases and probes of the report its \
         column links to. Regenerate with <code>cargo run -p zccheck-vm -- matrix</code>.</p>\n",
        m.columns.len()
    );
    summary(m, &mut o);
    kernels(m, base, &mut o);
    changes(m, &mut o);
    probes(m, &mut o);
    cases(m, base, &mut o);
    notes(m, &mut o);
    // Sections other parts of zccheck append (benchmarks) go last.
    for x in extra {
        let _ = writeln!(
            o,
            "<section class=\"extra\"><h2>{}</h2>\n{}\n</section>",
            esc(&x.title),
            x.html
        );
    }
    let _ = write!(o, "<script>{SCRIPT}</script>\n</body></html>\n");
    o
}

fn summary(m: &Matrix, o: &mut String) {
    let s = m.summary();
    o.push_str("<section id=\"summary\"><h2>Summary</h2>\n<table class=\"summary\">\n<thead><tr><th class=\"feature\">feature</th>");
    for c in &m.columns {
        let _ = write!(
            o,
            "<th title=\"{}\">{}</th>",
            esc(&c.describe()),
            esc(&c.label)
        );
    }
    o.push_str("</tr></thead>\n<tbody>\n");
    for row in &s.rows {
        let _ = write!(o, "<tr><td class=\"feature\">{}</td>", esc(&row.name));
        for (c, cell) in m.columns.iter().zip(&row.cells) {
            let sups: Vec<String> = cell
                .notes
                .iter()
                .map(|n| format!("<a href=\"#s{n}\">{n}</a>"))
                .collect();
            let _ = write!(
                o,
                "<td class=\"{}\" title=\"{}: {}\"><span class=\"k\">{}</span>{}{}</td>",
                cell.mark.class(),
                esc(&c.label),
                cell.mark.word(),
                esc(&c.label),
                cell.mark.symbol(),
                if sups.is_empty() {
                    String::new()
                } else {
                    format!("<sup>{}</sup>", sups.join(","))
                }
            );
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</tbody></table>\n<ul class=\"legend\">");
    for k in Mark::LEGEND.iter().chain([&Mark::NoReport]) {
        let _ = write!(
            o,
            "<li><span class=\"swatch {}\">{}</span>{}</li>",
            k.class(),
            k.symbol(),
            esc(k.meaning())
        );
    }
    o.push_str("</ul>\n<ol class=\"notes\">\n");
    for n in 1..=s.notes.len() {
        let _ = writeln!(o, "<li id=\"s{n}\">{}</li>", esc_code(&s.note_text(n)));
    }
    o.push_str("</ol>\n<ul>\n");
    for l in m.summary_lines() {
        let _ = writeln!(o, "<li>{}</li>", esc(&l));
    }
    o.push_str("</ul></section>\n");
}

fn kernels(m: &Matrix, base: &Path, o: &mut String) {
    o.push_str("<h2>Kernels</h2>\n<div class=\"wide\"><table>\n<tr><th>column</th><th>what it is</th><th>build</th><th>cases</th>");
    for out in Outcome::ALL {
        let _ = write!(o, "<th>{out}</th>");
    }
    o.push_str("<th>boot to report</th><th>report</th></tr>\n");
    for c in &m.columns {
        let r = &c.report;
        let _ = write!(
            o,
            "<tr><th>{}</th><td>{}</td><td>{}</td>",
            esc(&c.label),
            esc(&c.describe()),
            esc(&c.build()),
        );
        match c.no_report() {
            Some(cause) => {
                let _ = write!(
                    o,
                    "<td class=\"norep\" colspan=\"6\">no report: {}</td>",
                    esc(cause)
                );
            }
            None => {
                let _ = write!(o, "<td>{}</td>", r.cases.len());
                for out in Outcome::ALL {
                    let _ = write!(o, "<td>{}</td>", r.count(out));
                }
            }
        }
        let secs = c
            .provenance
            .as_ref()
            .and_then(|p| p.boot_to_report_ms)
            .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
            .unwrap_or_default();
        let link = relative(&c.file, base);
        let _ = writeln!(
            o,
            "<td>{secs}</td><td><a href=\"{}\">{}</a></td></tr>",
            esc(&link),
            esc(&link)
        );
    }
    o.push_str("</table></div>\n");
}

fn changes(m: &Matrix, o: &mut String) {
    o.push_str("<h2>What changed between kernels</h2>\n");
    let outcomes = m.outcome_changes();
    let facts = m.fact_changes();
    if outcomes.is_empty() && facts.is_empty() {
        o.push_str("<p>Every case had the same outcome and observed facts on every kernel.</p>\n");
        return;
    }
    if !outcomes.is_empty() {
        o.push_str("<h3>Outcomes</h3>\n<ul class=\"changes\">\n");
        for ch in &outcomes {
            let ids: Vec<String> = ch
                .cases
                .iter()
                .map(|c| format!("<code>{}</code>", esc(c)))
                .collect();
            let _ = writeln!(o, "<li>{}: {}</li>", ids.join(", "), esc(&ch.describe()));
        }
        o.push_str("</ul>\n");
    }
    if !facts.is_empty() {
        o.push_str(
            "<h3>Observed facts</h3>\n<p>Every fact whose value differs between the kernels \
             that ran its case to a verdict, with every differing part and its values in full; \
             behaviours a program can notice first. Facts that depend on timing are left out \
             (they are in the reports, marked ⏱ in the case table).</p>\n<ul class=\"changes\">\n",
        );
    }
    for f in &facts {
        let ids: Vec<String> = f
            .cases
            .iter()
            .map(|c| format!("<code>{}</code>", esc(c)))
            .collect();
        let _ = write!(
            o,
            "<li><span class=\"{}\"><code>{}</code></span>{} in {}: {}\n<ul>",
            if f.is_behaviour() { "behaviour" } else { "" },
            esc(&f.key),
            if f.is_behaviour() { " (behaviour)" } else { "" },
            ids.join(", "),
            esc(f.means())
        );
        for (paths, values) in f.grouped() {
            let vals: Vec<String> = values
                .iter()
                .map(|(v, cols)| format!("<code>{}</code> on {}", esc(v), esc(&cols.join(", "))))
                .collect();
            if paths == [""] {
                let _ = write!(o, "<li>{}</li>", vals.join("; "));
            } else {
                let p: Vec<String> = paths
                    .iter()
                    .map(|p| format!("<code>{}</code>", esc(p)))
                    .collect();
                let _ = write!(o, "<li>{}: {}</li>", p.join(", "), vals.join("; "));
            }
        }
        o.push_str("</ul></li>\n");
    }
    if !facts.is_empty() {
        o.push_str("</ul>\n");
    }
}

fn head_row(m: &Matrix, first: &str) -> String {
    let mut s = format!("<tr><th>{}</th>", esc(first));
    for c in &m.columns {
        let _ = write!(s, "<th>{}</th>", esc(&c.label));
    }
    s.push_str("</tr>\n");
    s
}

fn probes(m: &Matrix, o: &mut String) {
    o.push_str("<h2>Probes and configuration</h2>\n");
    let names = m.probe_names();
    if !names.is_empty() {
        o.push_str("<div class=\"wide\"><table>\n");
        o.push_str(&head_row(m, "probe"));
        for name in &names {
            let _ = write!(o, "<tr><td><code>{}</code></td>", esc(name));
            for c in 0..m.columns.len() {
                let (class, word, detail) = match m.probe(c, name) {
                    Some(Answer::Present(d)) => ("yes", "yes", d.as_str()),
                    Some(Answer::Absent(d)) => ("no", "no", d.as_str()),
                    Some(Answer::Blocked(d)) => ("blocked", "blocked", d.as_str()),
                    None => ("", "·", ""),
                };
                let _ = write!(
                    o,
                    "<td class=\"{class}\" title=\"{}\">{word}</td>",
                    esc(detail)
                );
            }
            o.push_str("</tr>\n");
        }
        o.push_str("</table></div>\n");
    }
    let keys = m.config_keys();
    if !keys.is_empty() {
        o.push_str("<div class=\"wide\"><table>\n");
        o.push_str(&head_row(m, "configuration"));
        for k in &keys {
            let _ = write!(o, "<tr><td><code>{}</code></td>", esc(k));
            for c in &m.columns {
                let v = match (
                    &c.report.kernel.config_source,
                    c.report.kernel.config.get(k),
                ) {
                    (None, _) => "?".to_string(),
                    (_, Some(v)) => v.clone(),
                    (_, None) => "·".to_string(),
                };
                let _ = write!(o, "<td>{}</td>", esc(&v));
            }
            o.push_str("</tr>\n");
        }
        o.push_str("</table></div>\n");
    }
}

fn filters(m: &Matrix, o: &mut String) {
    o.push_str("<form id=\"filters\" class=\"filters\" hidden><fieldset><legend>areas</legend>");
    for area in Area::ALL {
        if !m.rows_in(area).is_empty() {
            let _ = write!(
                o,
                "<label><input type=\"checkbox\" name=\"area\" value=\"{area}\" checked> {area}</label> "
            );
        }
    }
    o.push_str(
        "</fieldset><label>outcome <select name=\"outcome\"><option value=\"\">any</option>\
         <option value=\"differs\">differs between kernels</option>",
    );
    for out in Outcome::ALL {
        let _ = write!(o, "<option value=\"{out}\">{out} somewhere</option>");
    }
    o.push_str("</select></label></form>\n<ul class=\"legend\">");
    let meanings = [
        (Outcome::Pass, "the kernel kept the promise"),
        (Outcome::Fail, "the kernel broke it (evidence in the note)"),
        (Outcome::Unsupported, "the kernel lacks the feature"),
        (Outcome::Skipped, "this run lacked hardware or privileges"),
        (Outcome::Error, "the suite could not run the case"),
    ];
    for (out, means) in meanings {
        let _ = write!(
            o,
            "<li><span class=\"swatch {out}\" style=\"padding:0 .3em\">{out}</span>{means}</li>"
        );
    }
    o.push_str("<li><span class=\"swatch norep\">—</span>no report</li></ul>\n");
}

fn cases(m: &Matrix, base: &Path, o: &mut String) {
    o.push_str("<h2 id=\"cases\">Cases</h2>\n<p>A cell is the outcome, then the observed facts that differ between kernels (in full under <i>What changed</i>); facts the same on every kernel are in the last column, ⏱ marks those that depend on timing. Hover a cell for its full record. <code>·</code>: not in that report; <code>—</code>: the kernel produced no report.</p>\n");
    filters(m, o);
    o.push_str("<div class=\"cases\"><table>\n<thead><tr><th class=\"case\">case</th>");
    for c in &m.columns {
        let _ = write!(
            o,
            "<th title=\"{}\">{}</th>",
            esc(&c.describe()),
            esc(&c.label)
        );
    }
    o.push_str("<th>same on every kernel</th></tr></thead>\n<tbody>\n");
    for area in Area::ALL {
        for r in m.rows_in(area) {
            row(m, base, r, o);
        }
    }
    o.push_str("</tbody></table></div>\n");
}

fn row(m: &Matrix, base: &Path, r: usize, o: &mut String) {
    let row = &m.rows[r];
    let mut outcomes: Vec<String> = Vec::new();
    let mut cells = String::new();
    for (c, col) in m.columns.iter().enumerate() {
        if let Some(cause) = col.no_report() {
            let _ = write!(cells, "<td class=\"norep\" title=\"{}\">—</td>", esc(cause));
            continue;
        }
        let Some(rec) = col.cell(&row.id) else {
            cells.push_str("<td class=\"none\" title=\"not in this report\">·</td>");
            continue;
        };
        if !outcomes.contains(&rec.outcome.to_string()) {
            outcomes.push(rec.outcome.to_string());
        }
        let mut tip = format!(
            "{}#{}\n{}: {}",
            relative(&col.file, base),
            row.id,
            rec.outcome,
            rec.reason
        );
        if let Some(e) = &rec.evidence {
            let _ = write!(tip, "\nevidence: {}", shorten(e, 600));
        }
        for (k, v) in &rec.observed {
            let mark = if m.is_timing(r, k) { "⏱" } else { "" };
            let _ = write!(tip, "\n{mark}{k} = {}", shorten(&compact(v), 300));
        }
        let _ = write!(tip, "\nreplay: {}", rec.replay);
        let _ = write!(
            cells,
            "<td class=\"{}\" title=\"{}\">{}",
            rec.outcome,
            esc(&tip),
            rec.outcome
        );
        if let Some(f) = m.footnote_of(r, c) {
            let _ = write!(cells, "<sup><a href=\"#n{0}\">{0}</a></sup>", f.number);
        }
        for k in m.cell_keys(r) {
            if let Some(v) = rec.observed.get(k) {
                let v = compact(v);
                let shown = if v.chars().count() <= 40 {
                    esc(&v)
                } else {
                    "see <i>What changed</i>".to_string()
                };
                let _ = write!(cells, "<div class=\"fact\">{}={shown}</div>", esc(k));
            }
        }
        cells.push_str("</td>");
    }
    let differs = outcomes.len() > 1 || !m.cell_keys(r).is_empty();
    let common: Vec<String> = m
        .common_facts(r)
        .iter()
        .map(|(k, v)| format!("{k}={}", shorten(v, 60)))
        .collect();
    let _ = writeln!(
        o,
        "<tr data-area=\"{}\" data-outcomes=\"{}\" data-differs=\"{}\"><th class=\"case\" title=\"{}\">{}</th>{cells}<td class=\"common\">{}</td></tr>",
        row.area,
        outcomes.join(" "),
        u8::from(differs),
        esc(&row.title),
        esc(&row.id),
        esc(&common.join("; "))
    );
}

fn notes(m: &Matrix, o: &mut String) {
    for c in m.columns.iter().filter(|c| c.no_report().is_some()) {
        let _ = writeln!(
            o,
            "<h2>{}: no report</h2>\n<p>{}</p>",
            esc(&c.label),
            esc(c.no_report().unwrap_or_default())
        );
        if let Some(p) = &c.provenance {
            if !p.console_tail.is_empty() {
                let _ = writeln!(o, "<pre>{}</pre>", esc(&p.console_tail.join("\n")));
            }
        }
    }
    if m.footnotes.is_empty() {
        return;
    }
    o.push_str("<h2>Notes</h2>\n<ol>\n");
    for f in &m.footnotes {
        let cells: Vec<String> = f.cells.iter().map(|(c, id)| format!("{c}: {id}")).collect();
        let _ = write!(
            o,
            "<li id=\"n{}\"><b>{}</b>: {}",
            f.number,
            f.outcome,
            esc(&f.reason)
        );
        if let Some(e) = &f.evidence {
            let _ = write!(o, "<pre>{}</pre>", esc(&shorten(e, 2000)));
        }
        let _ = writeln!(
            o,
            "<div class=\"common\">{}</div></li>",
            esc(&cells.join(", "))
        );
    }
    o.push_str("</ol>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::matrix::tests::two_kernels;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(esc_code("a `<b>` c"), "a <code>&lt;b&gt;</code> c");
    }

    #[test]
    fn renders_cells_with_classes_tooltips_and_notes() {
        let html = render(&two_kernels(), Path::new("r"));
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<td class=\"fail\" title=\"6.1.json#uring.send_zc.tcp\nfail: a notification went missing"), "{html}");
        assert!(html.contains("<sup><a href=\"#n2\">2</a></sup>"));
        assert!(html.contains("<div class=\"fact\">errno=EPIPE (32)</div>"));
        assert!(html.contains("<li id=\"n1\"><b>unsupported</b>: probe uring.send_zc: EINVAL"));
        assert!(html.contains("<table class=\"summary\">"));
        assert!(html.contains("class=\"legend\""));
        assert!(html.contains("data-area=\"uring\" data-outcomes=\"unsupported fail\""));
    }

    #[test]
    fn extra_sections_come_last() {
        let extra = Section {
            title: "Bench".into(),
            markdown: "| a |".into(),
            html: "<p id=\"bench\">b</p>".into(),
        };
        let html = render_with(&two_kernels(), Path::new("r"), std::slice::from_ref(&extra));
        let at = html.find("<p id=\"bench\">").unwrap();
        assert!(at > html.find("id=\"cases\"").unwrap());
        let md = two_kernels().markdown_with(Path::new("r"), &[extra]);
        assert!(md.trim_end().ends_with("## Bench\n\n| a |"), "{md}");
    }
}
