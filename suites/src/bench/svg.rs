//! The plot: per path, CPU ns per byte (of the thread each mode is about) against message
//! size, both axes logarithmic, one line per mode through the medians, a bar from the
//! fastest to the slowest repetition at each point, and a mark at each crossover. Plain SVG,
//! no script, so it can be embedded in the static HTML page or opened on its own.

use std::fmt::Write;

use super::crossover::{human_size, Crossover};
use super::modes::{Mode, Side};
use super::paths::PathKind;
use super::BenchReport;

const WIDTH: f64 = 800.0;
const PANEL_H: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 270.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 42.0;
const HEADER: f64 = 54.0;

/// Colour and dash of each mode (baselines solid, zero-copy modes dashed).
fn style(mode: Mode) -> (&'static str, &'static str) {
    match mode {
        Mode::SendCopy => ("#1f77b4", ""),
        Mode::MsgZerocopy => ("#1f77b4", "6 3"),
        Mode::UringSend => ("#2ca02c", ""),
        Mode::UringSendZc => ("#2ca02c", "6 3"),
        Mode::UringSendZcFixed => ("#9467bd", "2 2"),
        Mode::RecvCopy => ("#d62728", ""),
        Mode::TcpZerocopyReceive => ("#d62728", "6 3"),
        Mode::ZcrxNodev => ("#8c564b", "6 3"),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The whole plot as one SVG document (one panel per path that has measurements).
pub fn plot(b: &BenchReport) -> String {
    let mut paths: Vec<PathKind> = Vec::new();
    for s in b.series.iter().filter(|s| !s.points.is_empty()) {
        if !paths.contains(&s.path) {
            paths.push(s.path);
        }
    }
    let height = HEADER + PANEL_H * paths.len().max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        out,
        r#"<title>zccheck bench: CPU per byte against message size</title>"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="10" y="18" font-size="13" font-weight="bold">CPU per byte against message size (lower is cheaper)</text>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="10" y="34">{}</text>"#,
        esc(&b.context.line())
    );
    if !b.context.timing_meaningful {
        let _ = writeln!(
            out,
            r##"<text x="10" y="48" fill="#c00" font-weight="bold">TCG: these timings are not meaningful and are not compared</text>"##
        );
    }
    if paths.is_empty() {
        let _ = writeln!(
            out,
            r#"<text x="{LEFT}" y="{}">nothing was measured</text>"#,
            HEADER + 40.0
        );
    }
    for (i, path) in paths.iter().enumerate() {
        panel(&mut out, b, *path, HEADER + PANEL_H * i as f64);
    }
    out.push_str("</svg>\n");
    out
}

/// Log-scale axis mapping from `[lo, hi]` to `[a, b]` pixels.
struct Axis {
    lo: f64,
    hi: f64,
    a: f64,
    b: f64,
}

impl Axis {
    fn at(&self, v: f64) -> f64 {
        let t = (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln());
        self.a + t * (self.b - self.a)
    }
}

fn panel(out: &mut String, b: &BenchReport, path: PathKind, y0: f64) {
    let series: Vec<_> = b
        .series
        .iter()
        .filter(|s| s.path == path && !s.points.is_empty())
        .collect();
    // One x range for every panel, so that the panels line up.
    let smin = b.settings.sizes.iter().copied().min().unwrap_or(256) as f64;
    let smax = b.settings.sizes.iter().copied().max().unwrap_or(1024) as f64;
    let costs: Vec<f64> = series
        .iter()
        .flat_map(|s| {
            s.points
                .iter()
                .filter_map(|p| p.cost_summary(s.mode.side()))
                .flat_map(|c| [c.min, c.max])
        })
        .filter(|c| c.is_finite() && *c > 0.0)
        .collect();
    let cmin = costs.iter().copied().fold(f64::INFINITY, f64::min);
    let cmax = costs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (cmin, cmax) = if cmin.is_finite() && cmax.is_finite() {
        let lo = 10f64.powf(cmin.log10().floor());
        let hi = 10f64.powf(cmax.log10().ceil());
        (lo, if hi > lo { hi } else { lo * 10.0 })
    } else {
        (0.01, 10.0)
    };
    let x = Axis {
        lo: smin,
        hi: if smax > smin { smax } else { smin * 2.0 },
        a: LEFT,
        b: WIDTH - RIGHT,
    };
    let y = Axis {
        lo: cmin,
        hi: cmax,
        a: y0 + PANEL_H - BOTTOM,
        b: y0 + TOP,
    };
    let (x0, x1, ya, yb) = (x.a, x.b, y.a, y.b);
    let _ = writeln!(out, r#"<g class="panel" data-path="{}">"#, path.id());
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{}" font-size="12" font-weight="bold">{}</text>"#,
        y0 + 20.0,
        esc(path.id())
    );
    let _ = writeln!(
        out,
        r##"<rect x="{x0}" y="{yb}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
        x1 - x0,
        ya - yb
    );
    // Grid and labels: sizes on x, decades on y.
    let mut s = smin;
    while s <= x.hi * 1.0001 {
        let px = x.at(s);
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{yb}" x2="{px:.1}" y2="{ya}" stroke="#eee"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            ya + 14.0,
            esc(&human_size(s as u64))
        );
        s *= 4.0;
    }
    let mut d = cmin;
    while d <= cmax * 1.0001 {
        let py = y.at(d);
        let _ = writeln!(
            out,
            r##"<line x1="{x0}" y1="{py:.1}" x2="{x1}" y2="{py:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 4.0,
            py + 4.0,
            super::render::sig3(d)
        );
        d *= 10.0;
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">message size</text>"#,
        (x0 + x1) / 2.0,
        ya + 30.0
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">CPU ns per byte</text>"#,
        (ya + yb) / 2.0
    );
    // One line per mode.
    for (i, s) in series.iter().enumerate() {
        let side = s.mode.side();
        let (colour, dash) = style(s.mode);
        let pts: Vec<(f64, f64, f64, f64)> = s
            .points
            .iter()
            .filter_map(|p| {
                let c = p.cost_summary(side)?;
                (c.median > 0.0 && c.min > 0.0).then(|| {
                    (
                        x.at(p.size as f64),
                        y.at(c.median),
                        y.at(c.min),
                        y.at(c.max),
                    )
                })
            })
            .collect();
        let line: Vec<String> = pts
            .iter()
            .map(|(px, py, _, _)| format!("{px:.1},{py:.1}"))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.8" stroke-dasharray="{dash}" points="{}"><title>{}</title></polyline>"#,
            line.join(" "),
            esc(s.mode.id())
        );
        for (px, py, lo, hi) in &pts {
            let _ = writeln!(
                out,
                r#"<line x1="{px:.1}" y1="{lo:.1}" x2="{px:.1}" y2="{hi:.1}" stroke="{colour}"/><circle cx="{px:.1}" cy="{py:.1}" r="2.5" fill="{colour}"/>"#
            );
        }
        // Legend entry.
        let ly = yb + 12.0 + 16.0 * i as f64;
        let lx = x1 + 12.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="1.8" stroke-dasharray="{dash}"/><text x="{}" y="{}">{} ({})</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            esc(s.mode.id()),
            if side == Side::Send {
                "sender"
            } else {
                "receiver"
            }
        );
    }
    // Crossovers.
    for (row, c) in b.crossovers.iter().filter(|c| c.path == path).enumerate() {
        let ly = yb + 12.0 + 16.0 * (series.len() + 1 + row) as f64;
        let (colour, _) = style(c.mode);
        let text = match &c.finding {
            Crossover::At { size, .. } => {
                let px = x.at(*size as f64);
                let _ = writeln!(
                    out,
                    r#"<line x1="{px:.1}" y1="{yb}" x2="{px:.1}" y2="{ya}" stroke="{colour}" stroke-dasharray="1 3"/>"#
                );
                format!("{}: crossover {}", c.mode.id(), human_size(*size))
            }
            Crossover::None { .. } => format!("{}: no crossover", c.mode.id()),
            Crossover::NotCompared { .. } => format!("{}: not compared", c.mode.id()),
        };
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{ly}" fill="{colour}">{}</text>"#,
            x1 + 12.0,
            esc(&text)
        );
    }
    out.push_str("</g>\n");
}

#[cfg(test)]
mod tests {
    use super::super::render::tests::sample;
    use super::*;

    #[test]
    fn the_plot_is_a_scriptless_svg_with_a_panel_per_measured_path() {
        let svg = plot(&sample(false));
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(!svg.to_lowercase().contains("<script"));
        assert_eq!(svg.matches("<g class=\"panel\"").count(), 2);
        assert!(svg.contains("data-path=\"deadend\""));
        // One line per measured mode per panel: two on each of the two paths.
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("send.msg_zerocopy: crossover 4 KiB"));
        assert!(svg.contains("send.msg_zerocopy: no crossover"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn a_tcg_plot_carries_the_warning() {
        assert!(plot(&sample(true)).contains("not meaningful"));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
