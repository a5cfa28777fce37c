//! PNG plots for the report: line charts (loss and accuracy curves) and a confusion matrix;
//! grouped bar charts for `distill bench --compare`.
//!
//! No plotting crate and no system fonts: everything is drawn onto a `Canvas` with three
//! primitives (`line`, `fill_rect`, `text`) and the classic 5×7 bitmap font of `font`
//! (ASCII 32..=126, plus a descender row for g j p q y), drawn in a 6×9 cell at 2× scale.
//! Files are written atomically, so a report never holds a half-written PNG.

mod bar_chart;
mod canvas;
mod confusion;
mod font;
mod line_chart;

pub use bar_chart::{bar_chart, BarGroup};
pub use confusion::confusion_matrix;
pub use line_chart::line_chart;

/// One named curve of a line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}
