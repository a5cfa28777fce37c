//! PNG plots: they decode, have the expected size, are not blank, handle awkward data, and the
//! confusion matrix puts its darkest cell where the largest (row-normalised) count is.
//!
//! Set DISTILL_PLOT_OUT=/some/dir to keep the PNGs for a look.

use std::collections::BTreeSet;
use std::path::PathBuf;

use distill::plot::{confusion_matrix, line_chart, Series};

/// The output directory: DISTILL_PLOT_OUT if set, else a temp dir (kept alive by the guard).
fn out_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("DISTILL_PLOT_OUT") {
        Some(d) => {
            std::fs::create_dir_all(&d).unwrap();
            (PathBuf::from(d), None)
        }
        None => {
            let t = tempfile::tempdir().unwrap();
            (t.path().to_path_buf(), Some(t))
        }
    }
}

fn colours(img: &image::RgbImage) -> BTreeSet<[u8; 3]> {
    img.pixels().map(|p| p.0).collect()
}

fn series(name: &str, points: &[(f64, f64)]) -> Series {
    Series {
        name: name.to_string(),
        points: points.to_vec(),
    }
}

#[test]
fn line_chart_draws_curves_axes_and_legend() {
    let (dir, _guard) = out_dir();
    let path = dir.join("accuracy.png");
    let curve = |f: fn(f64) -> f64| {
        (1..=20)
            .map(|e| (e as f64, f(e as f64)))
            .collect::<Vec<_>>()
    };
    let s = vec![
        series("teacher", &curve(|e| 92.0 - 20.0 / e)),
        series("baseline student", &curve(|e| 88.0 - 25.0 / e)),
        series("KD student", &curve(|e| 90.0 - 22.0 / e)),
    ];
    line_chart(
        &path,
        "Fashion-MNIST: test accuracy",
        "epoch",
        "test accuracy (%)",
        &s,
    )
    .unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (800, 500));
    let cs = colours(&img);
    assert!(cs.len() >= 5, "several colours: {}", cs.len());
    // Each series colour is present (the first three palette entries).
    for c in [[31, 119, 180], [255, 127, 14], [44, 160, 44]] {
        let n = img.pixels().filter(|p| p.0 == c).count();
        assert!(n > 200, "series colour {c:?} drawn ({n} px)");
    }
    // Text and axes are drawn in black; the corners stay background.
    assert!(img.pixels().filter(|p| p.0 == [0, 0, 0]).count() > 1000);
    assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255]);
    // No temporary file left behind.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

#[test]
fn line_chart_handles_awkward_data() {
    let (dir, _guard) = out_dir();
    let cases: Vec<(&str, Vec<Series>)> = vec![
        ("single_point", vec![series("loss", &[(1.0, 0.5)])]),
        ("no_series", vec![]),
        (
            "empty_series",
            vec![
                series("nothing yet", &[]),
                series("loss", &[(0.0, 1.0), (1.0, 0.7)]),
            ],
        ),
        (
            "nan_and_inf",
            vec![series(
                "loss",
                &[
                    (1.0, 2.3),
                    (2.0, f64::NAN),
                    (3.0, 1.1),
                    (f64::NAN, 1.0),
                    (4.0, f64::INFINITY),
                    (5.0, 0.6),
                ],
            )],
        ),
        (
            "all_nan",
            vec![series("diverged", &[(1.0, f64::NAN), (2.0, f64::NAN)])],
        ),
        (
            "constant",
            vec![series("flat", &[(1.0, 0.0), (2.0, 0.0), (3.0, 0.0)])],
        ),
        (
            "constant_nonzero",
            vec![series("flat", &[(1.0, 42.0), (5.0, 42.0)])],
        ),
        (
            "tiny_and_huge",
            vec![series("lr", &[(0.0, 1e-7), (1e7, 3e-7)])],
        ),
        (
            "negative",
            vec![series("delta", &[(-3.0, -0.25), (3.0, 0.75)])],
        ),
        (
            "many_series_long_names",
            (0..12)
                .map(|k| {
                    series(
                        &format!("series {k} with a rather long name ünïcødé"),
                        &[(0.0, k as f64), (1.0, k as f64 + 1.0)],
                    )
                })
                .collect(),
        ),
    ];
    for (name, s) in cases {
        let path = dir.join(format!("{name}.png"));
        line_chart(&path, name, "x", "y", &s).unwrap_or_else(|e| panic!("{name}: {e}"));
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (800, 500), "{name}");
        assert!(colours(&img).len() >= 3, "{name}: not blank");
    }
    // The single point is visible as a marker in the first series colour.
    let img = image::open(dir.join("single_point.png")).unwrap().to_rgb8();
    assert!(img.pixels().filter(|p| p.0 == [31, 119, 180]).count() >= 49);
}

#[test]
fn confusion_matrix_darkest_cell_is_the_largest_count() {
    let (dir, _guard) = out_dir();
    let names: Vec<String> = [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let n = names.len();
    // A plausible matrix: mostly diagonal, Shirt confused with T-shirt; one cell (Trouser,
    // Trouser) holds both the largest count and the largest row fraction.
    let mut counts = vec![vec![0u64; n]; n];
    for (i, row) in counts.iter_mut().enumerate() {
        for (j, c) in row.iter_mut().enumerate() {
            *c = if i == j {
                850 + 7 * i as u64
            } else {
                ((i * 7 + j * 3) % 11) as u64
            };
        }
    }
    counts[6][0] = 120;
    counts[6][6] = 700;
    counts[1][1] = 990;
    let path = dir.join("confusion.png");
    confusion_matrix(
        &path,
        "KD student: confusion matrix (test)",
        &counts,
        &names,
    )
    .unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    assert!(
        (500..1200).contains(&w) && (500..1200).contains(&h),
        "{w}x{h}"
    );
    assert!(colours(&img).len() >= 10);

    // Find the darkest cell by sampling each cell near its top-left corner (away from the
    // count text): locate the grid from the darkest pixel, then check its row and column.
    let darkest = img
        .enumerate_pixels()
        .min_by_key(|(_, _, p)| {
            p.0.iter().map(|&c| c as u32).sum::<u32>() + if p.0 == [0, 0, 0] { 10_000 } else { 0 }
        })
        .unwrap();
    let (dx, dy) = (darkest.0, darkest.1);
    // Recover the grid geometry: cells are squares of equal colour; scan for the cell edges.
    let same = |x: u32, y: u32| img.get_pixel(x, y).0 == darkest.2 .0;
    let (mut x0, mut y0) = (dx, dy);
    while x0 > 0 && same(x0 - 1, dy) {
        x0 -= 1;
    }
    while y0 > 0 && same(dx, y0 - 1) {
        y0 -= 1;
    }
    // The darkest colour must be in row 1 / column 1 of the grid: its cell is exactly one cell
    // right and one cell below the grid's top-left cell. Measure the cell size from the grid.
    let mut x1 = x0;
    while x1 + 1 < w && same(x1 + 1, y0) {
        x1 += 1;
    }
    let cell = x1 - x0 + 2; // plus the 1-pixel border line
    let (gx, gy) = (x0 - 1 - cell, y0 - 1 - cell); // top-left of the whole grid, if row/col 1
                                                   // The grid's top-left corner pixel is the grid border, and the cell (0,0) is a dark-ish
                                                   // diagonal cell; cell (0,1) and (1,0) are light off-diagonal cells.
    let px = |r: u32, c: u32| {
        img.get_pixel(gx + 1 + c * cell + 2, gy + 1 + r * cell + 2)
            .0
    };
    let lum = |p: [u8; 3]| p.iter().map(|&c| c as u32).sum::<u32>();
    assert!(
        lum(px(0, 0)) < 400,
        "cell (0,0) is a dark diagonal cell: {:?}",
        px(0, 0)
    );
    assert!(
        lum(px(0, 1)) > 650 && lum(px(1, 0)) > 650,
        "off-diagonal cells are light"
    );
    assert_eq!(
        px(1, 1),
        darkest.2 .0,
        "the darkest cell is (Trouser, Trouser)"
    );
    for r in 0..n as u32 {
        for c in 0..n as u32 {
            if (r, c) != (1, 1) {
                assert!(
                    lum(px(r, c)) > lum(darkest.2 .0),
                    "cell ({r},{c}) is lighter"
                );
            }
        }
    }
    // Row normalisation: Shirt's diagonal (700 of ~850) is lighter than Trouser's (990 of ~1030)
    // but far darker than its confusion with T-shirt (120).
    assert!(lum(px(6, 6)) < lum(px(6, 0)));
}

#[test]
fn confusion_matrix_edge_cases() {
    let (dir, _guard) = out_dir();
    let path = dir.join("cm_edge.png");
    // Empty rows (a class never seen), long names, huge counts, many classes.
    let names: Vec<String> = vec![
        "a class name far too long to fit".into(),
        "b".into(),
        "c".into(),
    ];
    let counts = vec![vec![0, 0, 0], vec![1, 123_456_789, 2], vec![3, 4, 5]];
    confusion_matrix(&path, "edge", &counts, &names).unwrap();
    assert!(image::open(&path).is_ok());
    let n = 100;
    let names: Vec<String> = (0..n).map(|i| format!("class {i}")).collect();
    let counts: Vec<Vec<u64>> = (0..n)
        .map(|i| (0..n).map(|j| if i == j { 90 } else { 1 }).collect())
        .collect();
    confusion_matrix(&dir.join("cm_100.png"), "cifar-100", &counts, &names).unwrap();
    let img = image::open(dir.join("cm_100.png")).unwrap();
    assert!(img.width() < 2000 && img.height() < 2000);
    // Invalid input is an error, not a panic.
    assert!(confusion_matrix(&path, "x", &[], &[]).is_err());
    assert!(confusion_matrix(&path, "x", &[vec![1, 2]], &["a".into()]).is_err());
    assert!(confusion_matrix(&path, "x", &[vec![1]], &["a".into(), "b".into()]).is_err());
    // A missing directory is an error naming the path.
    let err = line_chart(&dir.join("nope/x.png"), "t", "x", "y", &[]).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn font_covers_printable_ascii() {
    let (dir, _guard) = out_dir();
    let all: String = (32u8..=126).map(|b| b as char).collect();
    let rows: Vec<Series> = all
        .as_bytes()
        .chunks(32)
        .map(|c| series(std::str::from_utf8(c).unwrap(), &[(0.0, 0.0)]))
        .collect();
    let path = dir.join("font.png");
    line_chart(
        &path,
        "The quick brown fox jumps over the lazy dog 0123456789",
        "x (%)",
        "y: [a-z]",
        &rows,
    )
    .unwrap();
    assert!(image::open(&path).is_ok());
}
