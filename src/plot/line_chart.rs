//! Line charts: loss and accuracy curves per epoch.

use std::path::Path;

use super::canvas::*;
use super::Series;
use crate::error::Result;

/// Draws `series` as lines with point markers, with axes, "nice" ticks, grid and a legend.
///
/// Non-finite points (NaN, ±inf) are skipped (the line joins their neighbours); an empty series
/// still gets a legend entry; a single point or constant values get a padded axis range. The
/// legend goes in whichever corner of the plot hides the fewest points.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<()> {
    let (w, h): (i32, i32) = (800, 500);
    let curves: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect()
        })
        .collect();
    let xs = range(curves.iter().flatten().map(|p| p.0));
    let ys = range(curves.iter().flatten().map(|p| p.1));
    let xt = Ticks::new(xs.0, xs.1, 8);
    let yt = Ticks::new(ys.0, ys.1, 6);
    let x_labels: Vec<(f64, String)> = xt.values().map(|v| (v, xt.label(v))).collect();
    let y_labels: Vec<(f64, String)> = yt.values().map(|v| (v, yt.label(v))).collect();

    // Margins leave room for the rotated y label, the tick labels and half of the last x label.
    let y_label_w = y_labels
        .iter()
        .map(|(_, l)| text_width(l))
        .max()
        .unwrap_or(0);
    let last_x_w = x_labels.last().map_or(0, |(_, l)| text_width(l));
    let (left, right) = (
        8 + CHAR_H + 10 + y_label_w + 10,
        w - 20.max(last_x_w / 2 + 6),
    );
    let (top, bottom) = (44, h - 2 * CHAR_H - 26);
    let px = |x: f64| left as f64 + (x - xt.lo) / (xt.hi - xt.lo) * (right - left) as f64;
    let py = |y: f64| bottom as f64 - (y - yt.lo) / (yt.hi - yt.lo) * (bottom - top) as f64;

    let mut c = Canvas::new(w, h);
    c.text_centered(w / 2, 12, &fit(title, w - 20), BLACK);
    c.text_centered(
        (left + right) / 2,
        h - CHAR_H - 6,
        &fit(x_label, right - left),
        BLACK,
    );
    c.text_vertical(8, (top + bottom) / 2, &fit(y_label, bottom - top), BLACK);

    // Grid, ticks and tick labels.
    for (v, label) in &x_labels {
        let x = px(*v).round() as i32;
        c.line(x, top, x, bottom, GRID);
        c.line(x, bottom, x, bottom + 5, BLACK);
        c.text_centered(x, bottom + 9, label, BLACK);
    }
    for (v, label) in &y_labels {
        let y = py(*v).round() as i32;
        c.line(left, y, right, y, GRID);
        c.line(left - 5, y, left, y, BLACK);
        c.text(left - 8 - text_width(label), y - 7, label, BLACK);
    }
    c.line(left, top, left, bottom, BLACK);
    c.line(left, bottom, right, bottom, BLACK);
    c.line(left, top, right, top, MUTED);
    c.line(right, top, right, bottom, MUTED);

    // Curves: thick polylines with a marker on every point.
    let pixels: Vec<Vec<(i32, i32)>> = curves
        .iter()
        .map(|pts| {
            pts.iter()
                .map(|&(x, y)| (px(x).round() as i32, py(y).round() as i32))
                .collect()
        })
        .collect();
    for (k, pts) in pixels.iter().enumerate() {
        let colour = PALETTE[k % PALETTE.len()];
        for pair in pts.windows(2) {
            c.thick_line(pair[0].0, pair[0].1, pair[1].0, pair[1].1, colour);
        }
        for &(x, y) in pts {
            c.fill_rect(x - 3, y - 3, 7, 7, colour);
        }
    }

    if !series.is_empty() {
        draw_legend(&mut c, series, &pixels, (left, top, right, bottom));
    }
    c.save(path)
}

/// The legend, in the plot corner (`left, top, right, bottom`) that covers the fewest samples
/// of the curves drawn at `pixels`.
fn draw_legend(
    c: &mut Canvas,
    series: &[Series],
    pixels: &[Vec<(i32, i32)>],
    (left, top, right, bottom): (i32, i32, i32, i32),
) {
    let names: Vec<String> = series.iter().map(|s| fit(&s.name, 300)).collect();
    let box_w = names.iter().map(|n| text_width(n)).max().unwrap_or(0) + 44;
    let box_h = names.len() as i32 * (CHAR_H + 4) + 8;
    let corners = [
        (right - box_w - 10, top + 10),
        (right - box_w - 10, bottom - box_h - 10),
        (left + 10, top + 10),
        (left + 10, bottom - box_h - 10),
    ];
    let covered = |&(bx, by): &(i32, i32)| {
        let inside = |(x, y): (i32, i32)| {
            x >= bx - 4 && x < bx + box_w + 4 && y >= by - 4 && y < by + box_h + 4
        };
        pixels
            .iter()
            .flat_map(|pts| {
                let segments = pts.windows(2).flat_map(|p| {
                    (0..16).map(move |t| {
                        let lerp = |a: i32, b: i32| a + (b - a) * t / 16;
                        (lerp(p[0].0, p[1].0), lerp(p[0].1, p[1].1))
                    })
                });
                pts.iter().copied().chain(segments)
            })
            .filter(|&p| inside(p))
            .count()
    };
    let (bx, by) = corners
        .iter()
        .copied()
        .min_by_key(covered)
        .unwrap_or(corners[0]);
    c.fill_rect(bx, by, box_w, box_h, WHITE);
    c.rect_outline(bx, by, box_w, box_h, MUTED);
    for (k, name) in names.iter().enumerate() {
        let colour = PALETTE[k % PALETTE.len()];
        let y = by + 6 + k as i32 * (CHAR_H + 4);
        c.fill_rect(bx + 8, y + 6, 22, 4, colour);
        c.text(bx + 36, y, name, BLACK);
    }
}

/// (min, max) of the finite values, padded when empty or constant.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        (0.0, 1.0)
    } else if hi - lo <= f64::EPSILON * hi.abs().max(lo.abs()) {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - pad, hi + pad)
    } else {
        (lo, hi)
    }
}

/// Axis ticks at "nice" steps (1, 2 or 5 × 10^k) covering [lo, hi].
struct Ticks {
    lo: f64,
    hi: f64,
    step: f64,
    decimals: usize,
}

impl Ticks {
    fn new(lo: f64, hi: f64, target: usize) -> Ticks {
        let step = nice_step((hi - lo) / target as f64);
        let (lo, hi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
        let decimals = (-step.log10().floor()).max(0.0) as usize;
        Ticks {
            lo,
            hi,
            step,
            decimals,
        }
    }

    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        let n = ((self.hi - self.lo) / self.step).round() as usize;
        (0..=n).map(move |i| self.lo + i as f64 * self.step)
    }

    fn label(&self, v: f64) -> String {
        let v = if v.abs() < self.step * 1e-9 { 0.0 } else { v };
        if v.abs() >= 1e6 || (v != 0.0 && v.abs() < 1e-4) {
            format!("{v:.1e}")
        } else {
            format!("{v:.*}", self.decimals)
        }
    }
}

fn nice_step(raw: f64) -> f64 {
    let raw = if raw.is_finite() && raw > 0.0 {
        raw
    } else {
        1.0
    };
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ticks() {
        let t = Ticks::new(0.13, 0.97, 6);
        assert_eq!(t.step, 0.2);
        assert_eq!((t.lo, t.hi), (0.0, 1.0));
        assert_eq!(t.label(0.6000000000000001), "0.6");
        let t = Ticks::new(1.0, 20.0, 8);
        assert_eq!(t.step, 5.0);
        assert_eq!(
            t.values().map(|v| t.label(v)).collect::<Vec<_>>(),
            ["0", "5", "10", "15", "20"]
        );
        let (lo, hi) = range([3.0, 3.0].into_iter());
        assert!((lo - 2.7).abs() < 1e-12 && (hi - 3.3).abs() < 1e-12);
        assert_eq!(range(std::iter::empty()), (0.0, 1.0));
    }
}
