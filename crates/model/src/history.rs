//! The training history: one JSON line per optimizer step (and per validation), and the loss
//! curve drawn from it as an SVG picture.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// One optimizer step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub step: usize,
    pub epoch: f64,
    pub loss: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_loss: Option<f64>,
    /// The share of validation examples classified right (classifiers).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_accuracy: Option<f64>,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens: usize,
    pub tokens_per_s: f64,
    pub elapsed_s: f64,
}

/// The history as JSON Lines.
pub fn jsonl(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows {
        out.push_str(&serde_json::to_string(r).expect("a row serialises"));
        out.push('\n');
    }
    out
}

/// The training and validation loss against the step, as a self-contained SVG.
pub fn svg(rows: &[Row]) -> String {
    let (w, h) = (640.0, 400.0);
    let (left, right, top, bottom) = (60.0, 20.0, 30.0, 45.0);
    let train: Vec<(f64, f64)> = rows.iter().map(|r| (r.step as f64, r.loss)).collect();
    let val: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.val_loss.map(|v| (r.step as f64, v)))
        .collect();
    let all = train.iter().chain(val.iter()).filter(|p| p.1.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in all {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-9 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-9 {
        y1 = y0 + 1.0;
    }
    let px = |x: f64| left + (x - x0) / (x1 - x0) * (w - left - right);
    let py = |y: f64| top + (1.0 - (y - y0) / (y1 - y0)) * (h - top - bottom);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="18" text-anchor="middle" font-size="14">loss</text>"#,
        w / 2.0
    );
    // Axes with five ticks each.
    let _ = writeln!(
        s,
        r##"<path d="M{left} {top} V{b} H{r}" stroke="#333" fill="none"/>"##,
        b = h - bottom,
        r = w - right
    );
    for i in 0..=4 {
        let fy = y0 + (y1 - y0) * i as f64 / 4.0;
        let fx = x0 + (x1 - x0) * i as f64 / 4.0;
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{:.1}" text-anchor="end">{fy:.3}</text><path d="M{left} {:.1} H{}" stroke="#ddd"/>"##,
            left - 6.0,
            py(fy) + 4.0,
            py(fy),
            w - right
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{:.0}</text>"#,
            px(fx),
            h - bottom + 16.0,
            fx
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">step</text>"#,
        w / 2.0,
        h - 8.0
    );
    for (points, colour, label, ly) in [
        (&train, "#1f77b4", "train", 40.0),
        (&val, "#d62728", "validation", 56.0),
    ] {
        if points.is_empty() {
            continue;
        }
        let mut d = String::new();
        for (i, (x, y)) in points.iter().filter(|p| p.1.is_finite()).enumerate() {
            let _ = write!(
                d,
                "{}{:.1} {:.1}",
                if i == 0 { "M" } else { " L" },
                px(*x),
                py(*y)
            );
        }
        let _ = writeln!(
            s,
            r#"<path d="{d}" stroke="{colour}" stroke-width="1.5" fill="none"/>"#
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{ly}" text-anchor="end" fill="{colour}">{label}</text>"#,
            w - right - 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}
