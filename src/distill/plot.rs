//! PNG plots for the report: line charts (loss and accuracy curves) and a confusion matrix.
//!
//! No plotting crate and no system fonts: everything is drawn into an [`RgbImage`] with three
//! primitives (`Canvas::line`, `Canvas::fill_rect`, `Canvas::text`) and the classic 5×7 bitmap
//! font below (ASCII 32..=126, plus a descender row for g j p q y), drawn in a 6×9 cell at 2×
//! scale. Files are written with [`write_atomic`], so a report never holds a half-written PNG.

use std::io::Cursor;
use std::path::Path;

use image::{ImageFormat, Rgb, RgbImage};

use crate::checkpoint::write_atomic;
use crate::error::{Error, Result};

/// One named curve of a line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const MUTED: Rgb<u8> = Rgb([90, 90, 90]);

/// Series colours (Tableau 10): distinct, and readable on white.
const PALETTE: [Rgb<u8>; 10] = [
    Rgb([31, 119, 180]),
    Rgb([255, 127, 14]),
    Rgb([44, 160, 44]),
    Rgb([214, 39, 40]),
    Rgb([148, 103, 189]),
    Rgb([140, 86, 75]),
    Rgb([227, 119, 194]),
    Rgb([127, 127, 127]),
    Rgb([188, 189, 34]),
    Rgb([23, 190, 207]),
];

/// Text scale: each font pixel is drawn as SCALE×SCALE image pixels.
const SCALE: i32 = 2;
const CHAR_W: i32 = 6 * SCALE; // 5 columns + 1 column of spacing
const CHAR_H: i32 = 9 * SCALE; // 7 rows + 1 descender row + 1 row of spacing

// ---------------------------------------------------------------------------------------------
// Line chart
// ---------------------------------------------------------------------------------------------

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

    // Legend, in the plot corner that covers the fewest curve samples.
    if !series.is_empty() {
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
    c.save(path)
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

// ---------------------------------------------------------------------------------------------
// Confusion matrix
// ---------------------------------------------------------------------------------------------

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
        return Err(Error::Other(format!(
            "{}: confusion matrix has no classes",
            path.display()
        )));
    }
    if let Some((i, row)) = counts.iter().enumerate().find(|(_, r)| r.len() != n) {
        return Err(Error::Other(format!(
            "{}: confusion matrix must be square: row {i} has {} entries, expected {n}",
            path.display(),
            row.len()
        )));
    }
    if class_names.len() != n {
        return Err(Error::Other(format!(
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

// ---------------------------------------------------------------------------------------------
// Canvas: drawing primitives
// ---------------------------------------------------------------------------------------------

struct Canvas {
    img: RgbImage,
}

impl Canvas {
    fn new(w: i32, h: i32) -> Canvas {
        Canvas {
            img: RgbImage::from_pixel(w.max(1) as u32, h.max(1) as u32, WHITE),
        }
    }

    /// Sets one pixel; coordinates outside the image are ignored (clipping).
    fn put(&mut self, x: i32, y: i32, colour: Rgb<u8>) {
        if x >= 0 && y >= 0 && (x as u32) < self.img.width() && (y as u32) < self.img.height() {
            self.img.put_pixel(x as u32, y as u32, colour);
        }
    }

    /// A one-pixel line (Bresenham).
    fn line(&mut self, x0: i32, y0: i32, x1: i32, y1: i32, colour: Rgb<u8>) {
        self.bresenham(x0, y0, x1, y1, |c, x, y| c.put(x, y, colour));
    }

    /// A two-pixel-wide line: a 2×2 pen moved along the Bresenham path.
    fn thick_line(&mut self, x0: i32, y0: i32, x1: i32, y1: i32, colour: Rgb<u8>) {
        self.bresenham(x0, y0, x1, y1, |c, x, y| {
            c.fill_rect(x - 1, y - 1, 2, 2, colour)
        });
    }

    fn bresenham(
        &mut self,
        mut x0: i32,
        mut y0: i32,
        x1: i32,
        y1: i32,
        mut plot: impl FnMut(&mut Self, i32, i32),
    ) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let mut err = dx + dy;
        loop {
            plot(self, x0, y0);
            if x0 == x1 && y0 == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x0 += sx;
            }
            if e2 <= dx {
                err += dx;
                y0 += sy;
            }
        }
    }

    fn fill_rect(&mut self, x: i32, y: i32, w: i32, h: i32, colour: Rgb<u8>) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.put(xx, yy, colour);
            }
        }
    }

    fn rect_outline(&mut self, x: i32, y: i32, w: i32, h: i32, colour: Rgb<u8>) {
        self.line(x, y, x + w - 1, y, colour);
        self.line(x, y + h - 1, x + w - 1, y + h - 1, colour);
        self.line(x, y, x, y + h - 1, colour);
        self.line(x + w - 1, y, x + w - 1, y + h - 1, colour);
    }

    /// Text with its top-left corner at (x, y), at the default scale.
    fn text(&mut self, x: i32, y: i32, s: &str, colour: Rgb<u8>) {
        self.text_scaled(x, y, s, colour, SCALE);
    }

    fn text_centered(&mut self, cx: i32, y: i32, s: &str, colour: Rgb<u8>) {
        self.text(cx - text_width(s) / 2, y, s, colour);
    }

    fn text_scaled(&mut self, x: i32, y: i32, s: &str, colour: Rgb<u8>, scale: i32) {
        self.glyphs(s, scale, |c, gx, gy| c.put(x + gx, y + gy, colour));
    }

    /// Text rotated 90° counter-clockwise (reading bottom to top), centred vertically on `cy`,
    /// with its left edge (the top of the glyphs) at `x`.
    fn text_vertical(&mut self, x: i32, cy: i32, s: &str, colour: Rgb<u8>) {
        self.text_vertical_scaled(x, cy, s, colour, SCALE);
    }

    fn text_vertical_scaled(&mut self, x: i32, cy: i32, s: &str, colour: Rgb<u8>, scale: i32) {
        let y0 = cy + text_width_scaled(s, scale) / 2;
        self.glyphs(s, scale, |c, gx, gy| c.put(x + gy, y0 - gx, colour));
    }

    /// Calls `plot(dx, dy)` for every lit pixel of `s` laid out left to right from (0, 0).
    fn glyphs(&mut self, s: &str, scale: i32, mut plot: impl FnMut(&mut Self, i32, i32)) {
        for (k, ch) in s.chars().enumerate() {
            let cols = glyph(ch);
            for (col, bits) in cols.iter().enumerate() {
                for row in 0..8 {
                    if bits >> row & 1 == 1 {
                        for sy in 0..scale {
                            for sx in 0..scale {
                                let gx = (k as i32 * 6 + col as i32) * scale + sx;
                                plot(self, gx, row * scale + sy);
                            }
                        }
                    }
                }
            }
        }
    }

    fn save(self, path: &Path) -> Result<()> {
        let mut bytes = Vec::new();
        self.img
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .map_err(|e| Error::Other(format!("{}: cannot encode PNG: {e}", path.display())))?;
        write_atomic(path, &bytes)
    }
}

/// Width in pixels of `s` at the default scale.
fn text_width(s: &str) -> i32 {
    text_width_scaled(s, SCALE)
}

fn text_width_scaled(s: &str, scale: i32) -> i32 {
    s.chars().count() as i32 * 6 * scale
}

/// `s` cut to at most `max` characters, ending in "..." when cut.
fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(3)).collect();
        t.push_str("...");
        t
    }
}

/// `s` cut to fit `max_px` pixels at the default scale.
fn fit(s: &str, max_px: i32) -> String {
    truncate_chars(s, (max_px / CHAR_W).max(4) as usize)
}

// ---------------------------------------------------------------------------------------------
// Font
// ---------------------------------------------------------------------------------------------

/// The five column bitmaps of `ch` (bit 0 = top row); '?' for characters outside ASCII 32..=126.
fn glyph(ch: char) -> &'static [u8; 5] {
    let code = ch as u32;
    if (32..=126).contains(&code) {
        &FONT_5X7[(code - 32) as usize]
    } else {
        &FONT_5X7[('?' as u32 - 32) as usize]
    }
}

/// The classic 5×7 LCD font, ASCII 32 (space) to 126 (~), with true descenders for g, j, p, q
/// and y. Each glyph is five columns, left to right; in each column byte, bit 0 is the top row,
/// bit 6 the baseline row and bit 7 the descender row below it.
#[rustfmt::skip]
const FONT_5X7: [[u8; 5]; 95] = [
    [0x00, 0x00, 0x00, 0x00, 0x00], // ' '
    [0x00, 0x00, 0x5F, 0x00, 0x00], // !
    [0x00, 0x07, 0x00, 0x07, 0x00], // "
    [0x14, 0x7F, 0x14, 0x7F, 0x14], // #
    [0x24, 0x2A, 0x7F, 0x2A, 0x12], // $
    [0x23, 0x13, 0x08, 0x64, 0x62], // %
    [0x36, 0x49, 0x55, 0x22, 0x50], // &
    [0x00, 0x05, 0x03, 0x00, 0x00], // '
    [0x00, 0x1C, 0x22, 0x41, 0x00], // (
    [0x00, 0x41, 0x22, 0x1C, 0x00], // )
    [0x14, 0x08, 0x3E, 0x08, 0x14], // *
    [0x08, 0x08, 0x3E, 0x08, 0x08], // +
    [0x00, 0x50, 0x30, 0x00, 0x00], // ,
    [0x08, 0x08, 0x08, 0x08, 0x08], // -
    [0x00, 0x60, 0x60, 0x00, 0x00], // .
    [0x20, 0x10, 0x08, 0x04, 0x02], // /
    [0x3E, 0x51, 0x49, 0x45, 0x3E], // 0
    [0x00, 0x42, 0x7F, 0x40, 0x00], // 1
    [0x42, 0x61, 0x51, 0x49, 0x46], // 2
    [0x21, 0x41, 0x45, 0x4B, 0x31], // 3
    [0x18, 0x14, 0x12, 0x7F, 0x10], // 4
    [0x27, 0x45, 0x45, 0x45, 0x39], // 5
    [0x3C, 0x4A, 0x49, 0x49, 0x30], // 6
    [0x01, 0x71, 0x09, 0x05, 0x03], // 7
    [0x36, 0x49, 0x49, 0x49, 0x36], // 8
    [0x06, 0x49, 0x49, 0x29, 0x1E], // 9
    [0x00, 0x36, 0x36, 0x00, 0x00], // :
    [0x00, 0x56, 0x36, 0x00, 0x00], // ;
    [0x08, 0x14, 0x22, 0x41, 0x00], // <
    [0x14, 0x14, 0x14, 0x14, 0x14], // =
    [0x00, 0x41, 0x22, 0x14, 0x08], // >
    [0x02, 0x01, 0x51, 0x09, 0x06], // ?
    [0x32, 0x49, 0x79, 0x41, 0x3E], // @
    [0x7E, 0x11, 0x11, 0x11, 0x7E], // A
    [0x7F, 0x49, 0x49, 0x49, 0x36], // B
    [0x3E, 0x41, 0x41, 0x41, 0x22], // C
    [0x7F, 0x41, 0x41, 0x22, 0x1C], // D
    [0x7F, 0x49, 0x49, 0x49, 0x41], // E
    [0x7F, 0x09, 0x09, 0x09, 0x01], // F
    [0x3E, 0x41, 0x49, 0x49, 0x7A], // G
    [0x7F, 0x08, 0x08, 0x08, 0x7F], // H
    [0x00, 0x41, 0x7F, 0x41, 0x00], // I
    [0x20, 0x40, 0x41, 0x3F, 0x01], // J
    [0x7F, 0x08, 0x14, 0x22, 0x41], // K
    [0x7F, 0x40, 0x40, 0x40, 0x40], // L
    [0x7F, 0x02, 0x0C, 0x02, 0x7F], // M
    [0x7F, 0x04, 0x08, 0x10, 0x7F], // N
    [0x3E, 0x41, 0x41, 0x41, 0x3E], // O
    [0x7F, 0x09, 0x09, 0x09, 0x06], // P
    [0x3E, 0x41, 0x51, 0x21, 0x5E], // Q
    [0x7F, 0x09, 0x19, 0x29, 0x46], // R
    [0x46, 0x49, 0x49, 0x49, 0x31], // S
    [0x01, 0x01, 0x7F, 0x01, 0x01], // T
    [0x3F, 0x40, 0x40, 0x40, 0x3F], // U
    [0x1F, 0x20, 0x40, 0x20, 0x1F], // V
    [0x3F, 0x40, 0x38, 0x40, 0x3F], // W
    [0x63, 0x14, 0x08, 0x14, 0x63], // X
    [0x07, 0x08, 0x70, 0x08, 0x07], // Y
    [0x61, 0x51, 0x49, 0x45, 0x43], // Z
    [0x00, 0x7F, 0x41, 0x41, 0x00], // [
    [0x02, 0x04, 0x08, 0x10, 0x20], // \
    [0x00, 0x41, 0x41, 0x7F, 0x00], // ]
    [0x04, 0x02, 0x01, 0x02, 0x04], // ^
    [0x40, 0x40, 0x40, 0x40, 0x40], // _
    [0x00, 0x01, 0x02, 0x04, 0x00], // `
    [0x20, 0x54, 0x54, 0x54, 0x78], // a
    [0x7F, 0x48, 0x44, 0x44, 0x38], // b
    [0x38, 0x44, 0x44, 0x44, 0x20], // c
    [0x38, 0x44, 0x44, 0x48, 0x7F], // d
    [0x38, 0x54, 0x54, 0x54, 0x18], // e
    [0x08, 0x7E, 0x09, 0x01, 0x02], // f
    [0x98, 0xA4, 0xA4, 0xA4, 0x78], // g
    [0x7F, 0x08, 0x04, 0x04, 0x78], // h
    [0x00, 0x44, 0x7D, 0x40, 0x00], // i
    [0x40, 0x80, 0x80, 0x7D, 0x00], // j
    [0x7F, 0x10, 0x28, 0x44, 0x00], // k
    [0x00, 0x41, 0x7F, 0x40, 0x00], // l
    [0x7C, 0x04, 0x18, 0x04, 0x78], // m
    [0x7C, 0x08, 0x04, 0x04, 0x78], // n
    [0x38, 0x44, 0x44, 0x44, 0x38], // o
    [0xFC, 0x24, 0x24, 0x24, 0x18], // p
    [0x18, 0x24, 0x24, 0x24, 0xFC], // q
    [0x7C, 0x08, 0x04, 0x04, 0x08], // r
    [0x48, 0x54, 0x54, 0x54, 0x20], // s
    [0x04, 0x3F, 0x44, 0x40, 0x20], // t
    [0x3C, 0x40, 0x40, 0x20, 0x7C], // u
    [0x1C, 0x20, 0x40, 0x20, 0x1C], // v
    [0x3C, 0x40, 0x30, 0x40, 0x3C], // w
    [0x44, 0x28, 0x10, 0x28, 0x44], // x
    [0x9C, 0xA0, 0xA0, 0xA0, 0x7C], // y
    [0x44, 0x64, 0x54, 0x4C, 0x44], // z
    [0x00, 0x08, 0x36, 0x41, 0x00], // {
    [0x00, 0x00, 0x7F, 0x00, 0x00], // |
    [0x00, 0x41, 0x36, 0x08, 0x00], // }
    [0x08, 0x04, 0x08, 0x10, 0x08], // ~
];

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

    #[test]
    fn truncation() {
        assert_eq!(truncate_chars("T-shirt/top", 12), "T-shirt/top");
        assert_eq!(truncate_chars("a very long class name", 12), "a very lo...");
    }
}
