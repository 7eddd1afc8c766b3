//! Requests per second through a scenario, drawn as SVG so the difference between rodent and the
//! baseline can be seen rather than read: one panel per server on the same time axis, successes
//! above, failures below (on a scale of their own, or a handful of failures would be invisible
//! beside thousands of successes), and the scenario's events as dashed lines.
//!
//! A scenario saves its timeline as JSON (and CSV) in the target directory's `figures/` (see
//! [`figures_dir`]); the
//! figure is redrawn from every timeline saved for it, so two tests that run one after the other
//! (rodent, then the baseline) end with both panels in one picture.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::load::Counts;

/// One scenario's run: what the load client counted, second by second.
pub struct Panel {
    pub title: String,
    pub timeline: Vec<Counts>,
    /// Seconds since the load started, and what happened then.
    pub marks: Vec<(f64, String)>,
}

/// `figures/` in the target directory (`target/<triple>/figures` under `scripts/test`, which
/// passes `--target`; `target/figures` without it).
pub fn figures_dir() -> PathBuf {
    let dir = crate::target_dir().join("figures");
    std::fs::create_dir_all(&dir).expect("the figures directory can be made");
    dir
}

/// Saves `panel` as `<figure>.<key>.json` and redraws `<figure>.svg` from every panel saved for
/// that figure, in the order of `keys`. Returns the SVG's path.
pub fn save(figure: &str, title: &str, key: &str, keys: &[&str], panel: &Panel) -> PathBuf {
    let dir = figures_dir();
    let recorded = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let saved = json!({
        "title": panel.title,
        "recorded_unix": recorded,
        "ok": panel.timeline.iter().map(|c| c.ok).collect::<Vec<_>>(),
        "failed": panel.timeline.iter().map(|c| c.failed).collect::<Vec<_>>(),
        "marks": panel.marks.iter().map(|(t, m)| json!([t, m])).collect::<Vec<_>>(),
    });
    std::fs::write(
        dir.join(format!("{figure}.{key}.json")),
        serde_json::to_string_pretty(&saved).expect("JSON serializes"),
    )
    .expect("the timeline is written");
    let mut csv = String::from("second,ok,failed\n");
    for (second, counts) in panel.timeline.iter().enumerate() {
        let _ = writeln!(csv, "{second},{},{}", counts.ok, counts.failed);
    }
    std::fs::write(dir.join(format!("{figure}.{key}.csv")), csv).expect("the CSV is written");

    let panels: Vec<Panel> = keys
        .iter()
        .filter_map(|k| load(&dir.join(format!("{figure}.{k}.json"))))
        .collect();
    let path = dir.join(format!("{figure}.svg"));
    std::fs::write(&path, svg(title, &panels)).expect("the SVG is written");
    path
}

fn load(path: &Path) -> Option<Panel> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    let numbers = |key: &str| -> Vec<u64> {
        value[key]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default()
    };
    let timeline = numbers("ok")
        .into_iter()
        .zip(numbers("failed"))
        .map(|(ok, failed)| Counts { ok, failed })
        .collect();
    let marks = value["marks"]
        .as_array()
        .map(|marks| {
            marks
                .iter()
                .filter_map(|m| Some((m[0].as_f64()?, m[1].as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Some(Panel {
        title: value["title"].as_str()?.to_string(),
        timeline,
        marks,
    })
}

const WIDTH: f64 = 900.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const PANEL_TITLE: f64 = 34.0;
const OK_HEIGHT: f64 = 150.0;
const GAP: f64 = 14.0;
const FAILED_HEIGHT: f64 = 60.0;
const AXIS: f64 = 34.0;
const PANEL_HEIGHT: f64 = PANEL_TITLE + OK_HEIGHT + GAP + FAILED_HEIGHT + AXIS;
const TOP: f64 = 40.0;

/// The figure: panels stacked, sharing the time axis and both vertical scales.
pub fn svg(title: &str, panels: &[Panel]) -> String {
    let seconds = panels
        .iter()
        .map(|p| complete(p).len())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let ok_max = nice_ceiling(
        panels
            .iter()
            .flat_map(|p| complete(p).iter().map(|c| c.ok))
            .max()
            .unwrap_or(0)
            .max(1) as f64,
    );
    let failed_max = nice_ceiling(
        panels
            .iter()
            .flat_map(|p| complete(p).iter().map(|c| c.failed))
            .max()
            .unwrap_or(0)
            .max(1) as f64,
    );
    let plot_width = WIDTH - LEFT - RIGHT;
    let x = |second: f64| LEFT + second / seconds * plot_width;
    let height = TOP + PANEL_HEIGHT * panels.len() as f64;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="24" font-size="16" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (i, panel) in panels.iter().enumerate() {
        let top = TOP + PANEL_HEIGHT * i as f64;
        let ok_top = top + PANEL_TITLE;
        let ok_bottom = ok_top + OK_HEIGHT;
        let failed_top = ok_bottom + GAP;
        let failed_bottom = failed_top + FAILED_HEIGHT;
        let timeline = complete(panel);
        let (ok, failed) = timeline
            .iter()
            .fold((0, 0), |(o, f), c| (o + c.ok, f + c.failed));
        let _ = writeln!(
            out,
            r#"<text x="{LEFT}" y="{}" font-size="14" font-weight="bold">{}</text><text x="{}" y="{}" text-anchor="end">{} requests, <tspan fill="{}" font-weight="bold">{} failed</tspan></text>"#,
            top + 22.0,
            escape(&panel.title),
            WIDTH - RIGHT,
            top + 22.0,
            thousands(ok + failed),
            if failed == 0 { "#2a7d2a" } else { "#c0392b" },
            thousands(failed),
        );
        // Frames and vertical scales.
        for (frame_top, frame_bottom, max, label) in [
            (ok_top, ok_bottom, ok_max, "ok/s"),
            (failed_top, failed_bottom, failed_max, "failed/s"),
        ] {
            let _ = writeln!(
                out,
                r##"<rect x="{LEFT}" y="{frame_top}" width="{plot_width}" height="{}" fill="#fafafa" stroke="#999"/>"##,
                frame_bottom - frame_top
            );
            for fraction in [0.0, 0.5, 1.0] {
                let y = frame_bottom - fraction * (frame_bottom - frame_top);
                let _ = writeln!(
                    out,
                    r##"<text x="{}" y="{}" text-anchor="end" fill="#555">{}</text>"##,
                    LEFT - 6.0,
                    y + 4.0,
                    thousands((max * fraction).round() as u64)
                );
                if fraction > 0.0 && fraction < 1.0 {
                    let _ = writeln!(
                        out,
                        r##"<line x1="{LEFT}" x2="{}" y1="{y}" y2="{y}" stroke="#e3e3e3"/>"##,
                        WIDTH - RIGHT
                    );
                }
            }
            let _ = writeln!(
                out,
                r##"<text transform="translate(14 {}) rotate(-90)" text-anchor="middle" fill="#555">{label}</text>"##,
                (frame_top + frame_bottom) / 2.0
            );
        }
        // Successes: an area, each second's count at the middle of that second.
        if !timeline.is_empty() {
            let mut points = format!("{},{ok_bottom}", x(0.0));
            for (second, counts) in timeline.iter().enumerate() {
                let y = ok_bottom - counts.ok as f64 / ok_max * OK_HEIGHT;
                let _ = write!(points, " {:.1},{y:.1}", x(second as f64 + 0.5));
            }
            let _ = write!(points, " {},{ok_bottom}", x(timeline.len() as f64));
            let _ = writeln!(
                out,
                r##"<polygon points="{points}" fill="#a8d8a8" stroke="#2a7d2a" stroke-width="1.2"/>"##
            );
        }
        // Failures: a bar for each second that had any.
        let bar = (plot_width / seconds).max(1.5);
        for (second, counts) in timeline.iter().enumerate() {
            if counts.failed > 0 {
                let h = (counts.failed as f64 / failed_max * FAILED_HEIGHT).max(1.5);
                let _ = writeln!(
                    out,
                    r##"<rect x="{:.1}" y="{:.1}" width="{bar:.1}" height="{h:.1}" fill="#c0392b"><title>{}: {} failed</title></rect>"##,
                    x(second as f64),
                    failed_bottom - h,
                    second,
                    counts.failed
                );
            }
        }
        if failed == 0 {
            let _ = writeln!(
                out,
                r##"<text x="{}" y="{}" text-anchor="middle" fill="#2a7d2a">no request failed</text>"##,
                LEFT + plot_width / 2.0,
                (failed_top + failed_bottom) / 2.0 + 4.0
            );
        }
        // Events.
        for (at, label) in &panel.marks {
            let mx = x(*at);
            let _ = writeln!(
                out,
                r##"<line x1="{mx:.1}" x2="{mx:.1}" y1="{ok_top}" y2="{failed_bottom}" stroke="#555" stroke-dasharray="4 3"/><text x="{:.1}" y="{}" fill="#333" font-size="11">{}</text>"##,
                mx + 3.0,
                ok_top + 12.0,
                escape(label)
            );
        }
        // Time axis.
        let step = nice_ceiling(seconds / 10.0).max(1.0);
        let mut tick = 0.0;
        while tick <= seconds {
            let _ = writeln!(
                out,
                r##"<line x1="{0:.1}" x2="{0:.1}" y1="{failed_bottom}" y2="{1}" stroke="#999"/><text x="{0:.1}" y="{2}" text-anchor="middle" fill="#555">{3}</text>"##,
                x(tick),
                failed_bottom + 4.0,
                failed_bottom + 16.0,
                tick
            );
            tick += step;
        }
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#555">seconds since the load started</text>"##,
            LEFT + plot_width / 2.0,
            failed_bottom + 30.0
        );
    }
    out.push_str("</svg>\n");
    out
}

/// The panel's whole seconds: the last one is cut short by the end of the load, and drawn it
/// would look like a drop.
fn complete(panel: &Panel) -> &[Counts] {
    &panel.timeline[..panel.timeline.len().saturating_sub(1)]
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `value`.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|candidate| *candidate >= value)
        .unwrap_or(10.0 * magnitude)
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
