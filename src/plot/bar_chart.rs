//! Grouped horizontal bar charts: one group per label (a kernel and shape), one bar per
//! series (a device of a report) in the palette's colours, the value written after each bar.
//! `distill bench --compare --chart` draws % of each device's peak with it.

use std::path::Path;

use super::canvas::*;
use crate::error::Result;

/// One group of bars: its label and a value per series (`None`: no bar).
#[derive(Debug, Clone, PartialEq)]
pub struct BarGroup {
    pub label: String,
    pub values: Vec<Option<f64>>,
}

/// Pixels per bar, and between groups.
const BAR_H: i32 = 12;
const GROUP_GAP: i32 = 10;

/// Draws `groups` as horizontal bars from 0 to at least `min_max` (the axis grows to the
/// largest value), with a legend of `series` on top. Non-finite and negative values draw no
/// bar.
pub fn bar_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    series: &[String],
    groups: &[BarGroup],
    min_max: f64,
) -> Result<()> {
    let w = 1100;
    let legend_rows = series.len() as i32;
    let top = 40 + legend_rows * (CHAR_H + 4) + 10;
    let per_group = series.len().max(1) as i32 * BAR_H + GROUP_GAP;
    let bottom = top + groups.len() as i32 * per_group;
    let h = bottom + 2 * CHAR_H + 30;
    let (left, right) = (390, w - 110);
    let max = groups
        .iter()
        .flat_map(|g| g.values.iter().flatten())
        .copied()
        .filter(|v| v.is_finite())
        .fold(min_max, f64::max);
    let step = nice_step(max / 5.0);
    let max = (max / step).ceil() * step;
    let px = |v: f64| left + ((v.clamp(0.0, max) / max) * (right - left) as f64).round() as i32;

    let mut c = Canvas::new(w, h);
    c.text_centered(w / 2, 10, &fit(title, w - 20), BLACK);
    for (i, name) in series.iter().enumerate() {
        let y = 40 + i as i32 * (CHAR_H + 4);
        c.fill_rect(left, y + 2, 24, CHAR_H - 6, PALETTE[i % PALETTE.len()]);
        c.text(left + 32, y, &fit(name, right - left - 32), BLACK);
    }
    // Grid and ticks.
    let mut v = 0.0;
    while v <= max + step / 2.0 {
        let x = px(v);
        c.line(x, top, x, bottom, GRID);
        let label = format!("{v}");
        c.text_centered(x, bottom + 6, &label, BLACK);
        v += step;
    }
    c.text_centered((left + right) / 2, bottom + CHAR_H + 12, x_label, BLACK);
    for (gi, g) in groups.iter().enumerate() {
        let y0 = top + gi as i32 * per_group + GROUP_GAP / 2;
        let label_y = y0 + (per_group - GROUP_GAP) / 2 - CHAR_H / 2;
        c.text(8, label_y, &fit(&g.label, left - 16), BLACK);
        for (si, value) in g.values.iter().enumerate() {
            let Some(v) = value.filter(|v| v.is_finite() && *v >= 0.0) else {
                continue;
            };
            let y = y0 + si as i32 * BAR_H;
            let x1 = px(v);
            c.fill_rect(
                left,
                y,
                (x1 - left).max(1),
                BAR_H - 2,
                PALETTE[si % PALETTE.len()],
            );
            c.text_scaled(x1 + 4, y + 1, &format!("{v:.1}"), MUTED, 1);
        }
    }
    c.line(left, top, left, bottom, BLACK);
    c.line(left, bottom, right, bottom, BLACK);
    c.save(path)
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = if raw.is_finite() && raw > 0.0 {
        raw
    } else {
        1.0
    };
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_nice() {
        assert_eq!(nice_step(18.0), 20.0);
        assert_eq!(nice_step(20.0), 20.0);
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(0.0), 1.0);
    }
}
