//! The `--svg` chart, written by hand: latency percentiles per second on a
//! log scale above, throughput per second (successes and errors stacked)
//! below.

use crate::report::{Report, Second};
use std::fmt::Write as _;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 640.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 820.0;
const LATENCY_TOP: f64 = 86.0;
const LATENCY_BOTTOM: f64 = 340.0;
const THROUGHPUT_TOP: f64 = 400.0;
const THROUGHPUT_BOTTOM: f64 = 590.0;

/// One line of the latency panel: label, colour, and its value in a second.
type Series = (&'static str, &'static str, fn(&Second) -> u64);

/// The percentile lines.
const SERIES: [Series; 4] = [
    ("p50", "#1f77b4", |s| s.latency_us.p50),
    ("p90", "#2ca02c", |s| s.latency_us.p90),
    ("p99", "#ff7f0e", |s| s.latency_us.p99),
    ("max", "#d62728", |s| s.latency_us.max),
];

/// Escapes text for XML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The smallest of 1, 2, 5 × 10^k that is at least `v` (1 for `v` ≤ 0).
fn nice_ceiling(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * power).find(|c| *c >= v).unwrap_or(10.0 * power)
}

/// A number for an axis label: no trailing zeros, thousands as `k`.
fn label(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{}k", trim(v / 1000.0))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Renders `report` as an SVG document.
pub fn render(report: &Report) -> String {
    let mut svg = String::with_capacity(16 * 1024);
    let _ = writeln!(
        svg,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>"#
    );
    let load = match report.load.rate {
        Some(rate) => format!("open loop {rate}/s"),
        None => "closed loop".to_owned(),
    };
    let connection = if report.load.new_connection { "a new connection per request" } else { "keep-alive" };
    let title =
        format!("{}: {}, {load}, {} connections ({connection})", report.tool, report.scenario, report.load.connections);
    let summary = format!(
        "{} requests in {:.1} s, {:.0}/s, {} errors; p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        report.requests,
        report.elapsed_secs,
        report.throughput_rps,
        report.errors,
        report.latency_us.p50 as f64 / 1000.0,
        report.latency_us.p99 as f64 / 1000.0,
        report.latency_us.max as f64 / 1000.0,
    );
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{}</text>
<text x="{LEFT}" y="44">{}</text>
<text x="{LEFT}" y="62">{}</text>"#,
        escape(&title),
        escape(&report.url),
        escape(&summary)
    );
    let seconds = report.timeline.len().max(1) as f64;
    let x_of = |t: f64| LEFT + (RIGHT - LEFT) * t / seconds;
    latency_panel(&mut svg, &report.timeline, &x_of);
    throughput_panel(&mut svg, &report.timeline, &x_of);
    // Time axis ticks, under both panels.
    let step = nice_ceiling(seconds / 10.0).max(1.0);
    let mut t = 0.0;
    while t <= seconds + 1e-9 {
        let x = x_of(t);
        for (top, bottom) in [(LATENCY_TOP, LATENCY_BOTTOM), (THROUGHPUT_TOP, THROUGHPUT_BOTTOM)] {
            let _ = writeln!(svg, r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{bottom}" stroke="#eee"/>"##);
        }
        let _ = writeln!(
            svg,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
            THROUGHPUT_BOTTOM + 16.0,
            label(t)
        );
        t += step;
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">seconds since start</text>
</svg>"#,
        (LEFT + RIGHT) / 2.0,
        THROUGHPUT_BOTTOM + 36.0
    );
    svg
}

fn frame(svg: &mut String, top: f64, bottom: f64, title: &str) {
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{top}" width="{}" height="{}" fill="none" stroke="#888"/>
<text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">{}</text>"##,
        RIGHT - LEFT,
        bottom - top,
        LEFT - 55.0,
        (top + bottom) / 2.0,
        LEFT - 55.0,
        (top + bottom) / 2.0,
        escape(title)
    );
}

fn latency_panel(svg: &mut String, timeline: &[Second], x_of: &dyn Fn(f64) -> f64) {
    frame(svg, LATENCY_TOP, LATENCY_BOTTOM, "latency (ms, log scale)");
    let timed: Vec<&Second> = timeline.iter().filter(|s| s.latency_us.count > 0).collect();
    if timed.is_empty() {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">no responses</text>"#,
            (LEFT + RIGHT) / 2.0,
            (LATENCY_TOP + LATENCY_BOTTOM) / 2.0
        );
        return;
    }
    // Decades of milliseconds that hold every value.
    let lowest = timed.iter().map(|s| s.latency_us.p50.max(1)).min().unwrap_or(1);
    let highest = timed.iter().map(|s| s.latency_us.max.max(1)).max().unwrap_or(1);
    let low = (lowest as f64 / 1000.0).log10().floor();
    let high = (highest as f64 / 1000.0).log10().ceil().max(low + 1.0);
    let y_of = |us: u64| {
        let decade = ((us.max(1) as f64) / 1000.0).log10();
        LATENCY_BOTTOM - (LATENCY_BOTTOM - LATENCY_TOP) * (decade - low) / (high - low)
    };
    // Grid lines at 1, 2 and 5 of each decade.
    let mut decade = low;
    while decade <= high + 1e-9 {
        for multiple in [1.0, 2.0, 5.0] {
            if multiple > 1.0 && decade >= high {
                break;
            }
            let ms = multiple * 10f64.powf(decade);
            let y = y_of((ms * 1000.0).round() as u64);
            let stroke = if multiple == 1.0 { "#ccc" } else { "#eee" };
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{RIGHT}" y2="{y:.1}" stroke="{stroke}"/>
<text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT - 6.0,
                y + 4.0,
                label(ms)
            );
        }
        decade += 1.0;
    }
    for (i, (name, colour, value)) in SERIES.iter().enumerate() {
        // A gap (a second with no response) breaks the line.
        let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for s in timeline {
            if s.latency_us.count == 0 {
                segments.push(Vec::new());
            } else if let Some(segment) = segments.last_mut() {
                let x = x_of(s.second as f64 + s.length_secs / 2.0);
                segment.push((x, y_of(value(s))));
            }
        }
        for points in segments.iter().filter(|p| !p.is_empty()) {
            let list: Vec<String> = points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{}"/>"#,
                list.join(" ")
            );
            if let [(x, y)] = points.as_slice() {
                let _ = writeln!(svg, r#"<circle r="2.5" fill="{colour}" cx="{x:.1}" cy="{y:.1}"/>"#);
            }
        }
        let y = LATENCY_TOP + 14.0 + 18.0 * i as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{colour}" stroke-width="3"/>
<text x="{}" y="{}">{name}</text>"#,
            RIGHT + 14.0,
            RIGHT + 34.0,
            RIGHT + 40.0,
            y + 4.0
        );
    }
}

fn throughput_panel(svg: &mut String, timeline: &[Second], x_of: &dyn Fn(f64) -> f64) {
    frame(svg, THROUGHPUT_TOP, THROUGHPUT_BOTTOM, "requests/s");
    let peak = timeline.iter().map(|s| s.throughput_rps).fold(0.0, f64::max);
    let top = nice_ceiling(peak);
    let y_of = |rps: f64| THROUGHPUT_BOTTOM - (THROUGHPUT_BOTTOM - THROUGHPUT_TOP) * rps / top;
    for i in 0..=4 {
        let v = top * f64::from(i) / 4.0;
        let y = y_of(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{RIGHT}" y2="{y:.1}" stroke="#ddd"/>
<text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT - 6.0,
            y + 4.0,
            label(v)
        );
    }
    for s in timeline.iter().filter(|s| s.length_secs > 0.0) {
        let x0 = x_of(s.second as f64) + 1.0;
        let width = (x_of(s.second as f64 + s.length_secs) - x0 - 1.0).max(0.5);
        let ok = s.successes as f64 / s.length_secs;
        let bad = s.errors as f64 / s.length_secs;
        let y_ok = y_of(ok);
        let y_bad = y_of(ok + bad);
        let _ = writeln!(
            svg,
            r##"<rect x="{x0:.1}" y="{y_ok:.1}" width="{width:.1}" height="{:.1}" fill="#4c9f70"><title>{}: {} ok/s</title></rect>"##,
            THROUGHPUT_BOTTOM - y_ok,
            s.second,
            trim(ok)
        );
        if s.errors > 0 {
            let _ = writeln!(
                svg,
                r##"<rect x="{x0:.1}" y="{y_bad:.1}" width="{width:.1}" height="{:.1}" fill="#d62728"><title>{}: {} errors/s</title></rect>"##,
                y_ok - y_bad,
                s.second,
                trim(bad)
            );
        }
    }
    for (i, (name, colour)) in [("successes", "#4c9f70"), ("errors", "#d62728")].iter().enumerate() {
        let y = THROUGHPUT_TOP + 8.0 + 18.0 * i as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{}" y="{y}" width="20" height="10" fill="{colour}"/>
<text x="{}" y="{}">{name}</text>"#,
            RIGHT + 14.0,
            RIGHT + 40.0,
            y + 9.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{finished, spec};

    #[test]
    fn well_formed_with_both_panels() {
        let mut spec = spec();
        // Text that needs escaping reaches the title.
        spec.url = http::Uri::from_static("http://127.0.0.1:1/token?a=1&b='2'");
        let report = Report::new(&spec, &finished());
        let svg = render(&report);
        let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(root.tag_name().namespace(), Some("http://www.w3.org/2000/svg"));
        let count = |tag: &str| root.descendants().filter(|n| n.has_tag_name(tag)).count();
        // One line per percentile (no gaps in this timeline).
        assert_eq!(count("polyline"), SERIES.len());
        // Two seconds with errors: two bars each, plus the frames and legend.
        assert!(count("rect") >= 2 * 2 + 2 + 2);
        let texts: String = root.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).collect();
        assert!(texts.contains("a=1&b='2'"), "{texts}");
        assert!(texts.contains("1003 requests"));
    }

    #[test]
    fn empty_run_still_renders() {
        let mut finished = finished();
        finished.recorder = crate::stats::Recorder::new();
        let svg = render(&Report::new(&spec(), &finished));
        let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
        assert!(doc.descendants().any(|n| n.text() == Some("no responses")));
    }

    #[test]
    fn axis_helpers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(51_234.0), 100_000.0);
        assert_eq!(nice_ceiling(0.15), 0.2);
        assert_eq!(label(0.5), "0.5");
        assert_eq!(label(50_000.0), "50k");
        assert_eq!(escape("a<&>\"'"), "a&lt;&amp;&gt;&quot;&apos;");
    }
}
