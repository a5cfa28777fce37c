//! The drawing surface of the plots: an RGB image with clipped pixels, Bresenham lines,
//! rectangles and bitmap text (horizontal or rotated), saved atomically as PNG.

use std::io::Cursor;
use std::path::Path;

use image::{ImageFormat, Rgb, RgbImage};

use super::font::glyph;
use crate::error::{Error, Result};
use crate::fs::write_atomic;

pub(super) const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
pub(super) const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
pub(super) const GRID: Rgb<u8> = Rgb([225, 225, 225]);
pub(super) const MUTED: Rgb<u8> = Rgb([90, 90, 90]);

/// Series colours (Tableau 10): distinct, and readable on white.
pub(super) const PALETTE: [Rgb<u8>; 10] = [
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
pub(super) const SCALE: i32 = 2;
pub(super) const CHAR_W: i32 = 6 * SCALE; // 5 columns + 1 column of spacing
pub(super) const CHAR_H: i32 = 9 * SCALE; // 7 rows + 1 descender row + 1 row of spacing

pub(super) struct Canvas {
    img: RgbImage,
}

impl Canvas {
    pub(super) fn new(w: i32, h: i32) -> Canvas {
        Canvas {
            img: RgbImage::from_pixel(w.max(1) as u32, h.max(1) as u32, WHITE),
        }
    }

    /// Sets one pixel; coordinates outside the image are ignored (clipping).
    pub(super) fn put(&mut self, x: i32, y: i32, colour: Rgb<u8>) {
        if x >= 0 && y >= 0 && (x as u32) < self.img.width() && (y as u32) < self.img.height() {
            self.img.put_pixel(x as u32, y as u32, colour);
        }
    }

    /// A one-pixel line (Bresenham).
    pub(super) fn line(&mut self, x0: i32, y0: i32, x1: i32, y1: i32, colour: Rgb<u8>) {
        self.bresenham(x0, y0, x1, y1, |c, x, y| c.put(x, y, colour));
    }

    /// A two-pixel-wide line: a 2×2 pen moved along the Bresenham path.
    pub(super) fn thick_line(&mut self, x0: i32, y0: i32, x1: i32, y1: i32, colour: Rgb<u8>) {
        self.bresenham(x0, y0, x1, y1, |c, x, y| {
            c.fill_rect(x - 1, y - 1, 2, 2, colour)
        });
    }

    pub(super) fn bresenham(
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

    pub(super) fn fill_rect(&mut self, x: i32, y: i32, w: i32, h: i32, colour: Rgb<u8>) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.put(xx, yy, colour);
            }
        }
    }

    pub(super) fn rect_outline(&mut self, x: i32, y: i32, w: i32, h: i32, colour: Rgb<u8>) {
        self.line(x, y, x + w - 1, y, colour);
        self.line(x, y + h - 1, x + w - 1, y + h - 1, colour);
        self.line(x, y, x, y + h - 1, colour);
        self.line(x + w - 1, y, x + w - 1, y + h - 1, colour);
    }

    /// Text with its top-left corner at (x, y), at the default scale.
    pub(super) fn text(&mut self, x: i32, y: i32, s: &str, colour: Rgb<u8>) {
        self.text_scaled(x, y, s, colour, SCALE);
    }

    pub(super) fn text_centered(&mut self, cx: i32, y: i32, s: &str, colour: Rgb<u8>) {
        self.text(cx - text_width(s) / 2, y, s, colour);
    }

    pub(super) fn text_scaled(&mut self, x: i32, y: i32, s: &str, colour: Rgb<u8>, scale: i32) {
        self.glyphs(s, scale, |c, gx, gy| c.put(x + gx, y + gy, colour));
    }

    /// Text rotated 90° counter-clockwise (reading bottom to top), centred vertically on `cy`,
    /// with its left edge (the top of the glyphs) at `x`.
    pub(super) fn text_vertical(&mut self, x: i32, cy: i32, s: &str, colour: Rgb<u8>) {
        self.text_vertical_scaled(x, cy, s, colour, SCALE);
    }

    pub(super) fn text_vertical_scaled(
        &mut self,
        x: i32,
        cy: i32,
        s: &str,
        colour: Rgb<u8>,
        scale: i32,
    ) {
        let y0 = cy + text_width_scaled(s, scale) / 2;
        self.glyphs(s, scale, |c, gx, gy| c.put(x + gy, y0 - gx, colour));
    }

    /// Calls `plot(dx, dy)` for every lit pixel of `s` laid out left to right from (0, 0).
    pub(super) fn glyphs(
        &mut self,
        s: &str,
        scale: i32,
        mut plot: impl FnMut(&mut Self, i32, i32),
    ) {
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

    pub(super) fn save(self, path: &Path) -> Result<()> {
        let mut bytes = Vec::new();
        self.img
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .map_err(|e| Error::Other(format!("{}: cannot encode PNG: {e}", path.display())))?;
        write_atomic(path, &bytes)
    }
}

/// Width in pixels of `s` at the default scale.
pub(super) fn text_width(s: &str) -> i32 {
    text_width_scaled(s, SCALE)
}

pub(super) fn text_width_scaled(s: &str, scale: i32) -> i32 {
    s.chars().count() as i32 * 6 * scale
}

/// `s` cut to at most `max` characters, ending in "..." when cut.
pub(super) fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(3)).collect();
        t.push_str("...");
        t
    }
}

/// `s` cut to fit `max_px` pixels at the default scale.
pub(super) fn fit(s: &str, max_px: i32) -> String {
    truncate_chars(s, (max_px / CHAR_W).max(4) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation() {
        assert_eq!(truncate_chars("T-shirt/top", 12), "T-shirt/top");
        assert_eq!(truncate_chars("a very long class name", 12), "a very lo...");
    }
}
