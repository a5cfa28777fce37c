//! The confusion matrix as a heat map, with counts and per-class accuracy.

use std::path::Path;

use image::Rgb;

use super::canvas::*;
use crate::error::{Error, Result};

/// Draws a confusion matrix: rows are true classes, columns predicted classes, each cell shows
/// its count, and the colour is the count as a fraction of its row (white → dark blue).
///
/// `counts` must be square with one row per class name.
pub fn confusion_matrix(
    path: &Path,
    title: &str,
    counts: &[Vec<u64>],
    class_names: &[String],
) -> Result<()> {
    let n = counts.len();
    if n == 0 {
        return Err(Error::InvalidArgument(format!(
            "{}: confusion matrix has no classes",
            path.display()
        )));
    }
    if let Some((i, row)) = counts.iter().enumerate().find(|(_, r)| r.len() != n) {
        return Err(Error::InvalidArgument(format!(
            "{}: confusion matrix must be square: row {i} has {} entries, expected {n}",
            path.display(),
            row.len()
        )));
    }
    if class_names.len() != n {
        return Err(Error::InvalidArgument(format!(
            "{}: confusion matrix has {n} classes but {} class names",
            path.display(),
            class_names.len()
        )));
    }

    const MAX_LABEL_CHARS: usize = 12;
    let labels: Vec<String> = class_names
        .iter()
        .map(|s| truncate_chars(s, MAX_LABEL_CHARS))
        .collect();
    let cell = (640 / n as i32).clamp(12, 64);
    // Class labels at 2x when they fit beside a cell, else 1x.
    let ls = if cell >= CHAR_H + 2 { SCALE } else { 1 };
    let label_px = labels
        .iter()
        .map(|l| text_width_scaled(l, ls))
        .max()
        .unwrap_or(0);
    let grid = cell * n as i32;
    let left = 16 + CHAR_H + 10 + label_px + 10;
    let top = 44 + CHAR_H + 8;
    let subtitle = "colour: fraction of the row";
    let title = &fit(title, 1000);
    let w = (left + grid + 24)
        .max(text_width(title) + 20)
        .max(text_width(subtitle) + 20);
    let h = top + grid + 10 + label_px + 10 + CHAR_H + 10;
    let mut c = Canvas::new(w, h);

    c.text_centered(w / 2, 12, title, BLACK);
    c.text_centered(w / 2, 44, subtitle, MUTED);

    for (i, row) in counts.iter().enumerate() {
        let total: u64 = row.iter().sum();
        for (j, &count) in row.iter().enumerate() {
            let frac = if total == 0 {
                0.0
            } else {
                count as f64 / total as f64
            };
            let (x, y) = (left + j as i32 * cell, top + i as i32 * cell);
            c.fill_rect(x, y, cell, cell, blues(frac));
            // The count at 2x if it fits in the cell, else 1x, else not at all.
            let label = count.to_string();
            let scale = [SCALE, 1]
                .into_iter()
                .find(|&s| text_width_scaled(&label, s) + 2 * s <= cell && 9 * s <= cell);
            if let Some(s) = scale {
                let fg = if frac > 0.5 { WHITE } else { BLACK };
                let tw = text_width_scaled(&label, s);
                c.text_scaled(
                    x + (cell - tw) / 2 + s / 2,
                    y + (cell - 7 * s) / 2,
                    &label,
                    fg,
                    s,
                );
            }
        }
    }
    // Cell borders.
    for k in 0..=n as i32 {
        let colour = if k == 0 || k == n as i32 { MUTED } else { GRID };
        c.line(left + k * cell, top, left + k * cell, top + grid, colour);
        c.line(left, top + k * cell, left + grid, top + k * cell, colour);
    }
    // Row labels (true class) on the left, column labels (predicted) below, reading upwards.
    for (k, label) in labels.iter().enumerate() {
        let mid = k as i32 * cell + cell / 2;
        let lw = text_width_scaled(label, ls);
        c.text_scaled(left - 8 - lw, top + mid - 7 * ls / 2, label, BLACK, ls);
        c.text_vertical_scaled(
            left + mid - 7 * ls / 2,
            top + grid + 8 + lw / 2,
            label,
            BLACK,
            ls,
        );
    }
    c.text_vertical(12, top + grid / 2, "true", BLACK);
    c.text_centered(left + grid / 2, h - CHAR_H - 8, "predicted", BLACK);
    c.save(path)
}

/// White → dark blue ("Blues"), `t` in [0, 1].
fn blues(t: f64) -> Rgb<u8> {
    const LO: [f64; 3] = [247.0, 251.0, 255.0];
    const HI: [f64; 3] = [8.0, 48.0, 107.0];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    Rgb(std::array::from_fn(|i| {
        (LO[i] + (HI[i] - LO[i]) * t).round() as u8
    }))
}
