//! Softmax family, cross-entropy and Hinton KD against naive f64 references and central
//! finite differences; a hand-computed KD case; limits and extreme logits.

use distill_kernels::simd;
use distill_kernels::softmax as sm;

mod common;
use common::{Rng, TestRng};

/// (rows, cols): tiny, odd, one chunk, and > 100K elements (threaded path).
const SHAPES: &[(usize, usize)] = &[
    (1, 1),
    (1, 3),
    (3, 7),
    (13, 13),
    (127, 10),
    (1000, 10),
    (7, 1000),
    (150, 1000),
    (12_001, 10),
    // Rows of exactly one vector, one vector and a ragged end, many and a ragged end: for
    // NEON (4 lanes), AVX2 (8) and AVX-512 (16).
    (1, 4),
    (6, 5),
    (5, 8),
    (3, 16),
    (4, 17),
    (2, 31),
    (2, 1001),
];

fn pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
}

// ---------------------------------------------------------------- naive f64 references

fn ref_log_softmax(x: &[f64], t: f64) -> Vec<f64> {
    let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = x.iter().map(|&v| ((v - m) / t).exp()).sum();
    x.iter().map(|&v| (v - m) / t - z.ln()).collect()
}

fn ref_softmax(x: &[f64], t: f64) -> Vec<f64> {
    ref_log_softmax(x, t).iter().map(|v| v.exp()).collect()
}

fn ref_ce(cols: usize, logits: &[f64], labels: &[u32]) -> f64 {
    let rows = labels.len();
    let mut total = 0.0;
    for r in 0..rows {
        let lp = ref_log_softmax(&logits[r * cols..(r + 1) * cols], 1.0);
        total -= lp[labels[r] as usize];
    }
    total / rows as f64
}

fn ref_kd(cols: usize, s: &[f64], t: &[f64], labels: &[u32], temp: f64, alpha: f64) -> f64 {
    let rows = labels.len();
    let mut kl = 0.0;
    for r in 0..rows {
        let lq = ref_log_softmax(&s[r * cols..(r + 1) * cols], temp);
        let lp = ref_log_softmax(&t[r * cols..(r + 1) * cols], temp);
        for j in 0..cols {
            kl += lp[j].exp() * (lp[j] - lq[j]);
        }
    }
    alpha * temp * temp * kl / rows as f64 + (1.0 - alpha) * ref_ce(cols, s, labels)
}

/// Central finite differences of `f` at `x`.
fn finite_diff(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let h = 1e-5;
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let x0 = x[i];
            x[i] = x0 + h;
            let fp = f(&x);
            x[i] = x0 - h;
            let fm = f(&x);
            x[i] = x0;
            (fp - fm) / (2.0 * h)
        })
        .collect()
}

fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

fn assert_close(got: &[f32], want: &[f64], rel: f64, abs: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= abs + rel * w.abs(),
            "{what}[{i}]: got {g}, want {w} (err {err:e})"
        );
    }
}

// ---------------------------------------------------------------- softmax / log-softmax

/// Every SIMD level against the f64 reference (the vector rows take rows of one vector or
/// more: 4 on NEON, 8 on AVX2, 16 on AVX-512).
#[test]
fn softmax_and_log_softmax_match_reference() {
    let mut rng = Rng::new(10);
    for &(rows, cols) in SHAPES {
        for &t in &[1.0f32, 0.5, 4.0] {
            let x = rng.vec(rows * cols, 6.0);
            let xd = to_f64(&x);
            let mut want = Vec::new();
            let mut want_log = Vec::new();
            for r in 0..rows {
                want.extend(ref_softmax(&xd[r * cols..(r + 1) * cols], t as f64));
                want_log.extend(ref_log_softmax(&xd[r * cols..(r + 1) * cols], t as f64));
            }
            for level in simd::available() {
                let mut y = vec![f32::NAN; rows * cols];
                let mut ly = vec![f32::NAN; rows * cols];
                sm::softmax_at(level, rows, cols, &x, t, &mut y);
                sm::log_softmax_at(level, rows, cols, &x, t, &mut ly);
                let what = format!("softmax {rows}x{cols} T={t} [{}]", level.name());
                assert_close(&y, &want, 1e-5, 1e-9, &what);
                assert_close(&ly, &want_log, 1e-5, 1e-5, &format!("log_{what}"));
                for r in 0..rows {
                    let s: f64 = y[r * cols..(r + 1) * cols].iter().map(|&v| v as f64).sum();
                    assert!((s - 1.0).abs() < 1e-5, "{what}: row {r} sums to {s}");
                }
            }
        }
    }
}

/// Rows with −∞ logits, a NaN, one huge logit, all equal: every level gives the same kind of
/// answer (exact 0 and 1 where they are exact, NaN for the whole NaN row, other rows intact).
#[test]
fn softmax_levels_agree_on_special_rows() {
    // 11 columns: AVX2 and NEON rows with a ragged end; 37: AVX-512 rows with one.
    for cols in [11, 37] {
        special_rows(cols);
    }
}

fn special_rows(cols: usize) {
    let mut x = vec![0.0f32; 4 * cols];
    x[..11].copy_from_slice(&[
        f32::NEG_INFINITY,
        1.0,
        1.0,
        f32::NEG_INFINITY,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
    ]);
    x[cols + 5] = f32::NAN;
    x[2 * cols + 9] = 1e4;
    for level in simd::available() {
        let name = level.name();
        let mut y = vec![0.0f32; 4 * cols];
        sm::softmax_at(level, 4, cols, &x, 1.0, &mut y);
        assert_eq!((y[0], y[3]), (0.0, 0.0), "[{name}] −∞ logits");
        assert!(
            y[cols..2 * cols].iter().all(|v| v.is_nan()),
            "[{name}] NaN row {:?}",
            &y[cols..2 * cols]
        );
        assert_eq!(y[2 * cols + 9], 1.0, "[{name}] huge logit");
        assert!(
            y[2 * cols..3 * cols]
                .iter()
                .enumerate()
                .all(|(j, &v)| j == 9 || v == 0.0),
            "[{name}]"
        );
        for &v in &y[3 * cols..] {
            assert!(
                (v - 1.0 / cols as f32).abs() < 1e-7,
                "[{name}] uniform row {v} ({cols} columns)"
            );
        }
        let mut ly = vec![0.0f32; 4 * cols];
        sm::log_softmax_at(level, 4, cols, &x, 1.0, &mut ly);
        assert_eq!(ly[0], f32::NEG_INFINITY, "[{name}] log of a −∞ logit");
        assert!(
            ly[cols..2 * cols].iter().all(|v| v.is_nan()),
            "[{name}] NaN row"
        );
        assert_eq!(ly[2 * cols + 9], 0.0, "[{name}] log of the huge logit");
    }
}

#[test]
fn backward_passes_match_formula_and_finite_differences() {
    let mut rng = Rng::new(11);
    for &(rows, cols) in SHAPES {
        for &t in &[1.0f32, 3.0] {
            let n = rows * cols;
            let x = rng.vec(n, 3.0);
            let dy = rng.vec(n, 1.0);
            let mut y = vec![0.0; n];
            let mut ly = vec![0.0; n];
            sm::softmax(rows, cols, &x, t, &mut y);
            sm::log_softmax(rows, cols, &x, t, &mut ly);
            // Both backward passes on every SIMD level (vector rows from one vector on).
            let dxs: Vec<(&str, Vec<f32>)> = simd::available()
                .into_iter()
                .map(|level| {
                    let mut dx = vec![f32::NAN; n];
                    sm::softmax_backward_at(level, rows, cols, &y, &dy, t, &mut dx);
                    (level.name(), dx)
                })
                .collect();
            let ldxs: Vec<(&str, Vec<f32>)> = simd::available()
                .into_iter()
                .map(|level| {
                    let mut ldx = vec![f32::NAN; n];
                    sm::log_softmax_backward_at(level, rows, cols, &ly, &dy, t, &mut ldx);
                    (level.name(), ldx)
                })
                .collect();
            // The documented formulas, in f64 from the same forward outputs.
            let mut want = vec![0.0f64; n];
            let mut want_l = vec![0.0f64; n];
            for r in 0..rows {
                let o = r * cols;
                let dot: f64 = (0..cols).map(|j| y[o + j] as f64 * dy[o + j] as f64).sum();
                let sdy: f64 = (0..cols).map(|j| dy[o + j] as f64).sum();
                for j in 0..cols {
                    want[o + j] = y[o + j] as f64 * (dy[o + j] as f64 - dot) / t as f64;
                    want_l[o + j] = (dy[o + j] as f64 - (ly[o + j] as f64).exp() * sdy) / t as f64;
                }
            }
            let what = format!("{rows}x{cols} T={t}");
            for (name, dx) in &dxs {
                let what = format!("softmax_backward {what} [{name}]");
                assert_close(dx, &want, 1e-4, 1e-6, &what);
            }
            for (name, ldx) in &ldxs {
                assert_close(
                    ldx,
                    &want_l,
                    1e-4,
                    1e-5,
                    &format!("log_softmax_backward {what} [{name}]"),
                );
            }

            // And they are the true gradients: d/dx Σ dy ⊙ f(x/T), checked on small shapes.
            if n <= 200 {
                let xd = to_f64(&x);
                let dyd = to_f64(&dy);
                let td = t as f64;
                let fd = finite_diff(&xd, |x| {
                    (0..rows)
                        .map(|r| {
                            let p = ref_softmax(&x[r * cols..(r + 1) * cols], td);
                            (0..cols).map(|j| p[j] * dyd[r * cols + j]).sum::<f64>()
                        })
                        .sum()
                });
                for (name, dx) in &dxs {
                    assert_close(dx, &fd, 1e-4, 1e-5, &format!("softmax fd {what} [{name}]"));
                }
                let fd = finite_diff(&xd, |x| {
                    (0..rows)
                        .map(|r| {
                            let p = ref_log_softmax(&x[r * cols..(r + 1) * cols], td);
                            (0..cols).map(|j| p[j] * dyd[r * cols + j]).sum::<f64>()
                        })
                        .sum()
                });
                for (name, ldx) in &ldxs {
                    assert_close(
                        ldx,
                        &fd,
                        1e-4,
                        1e-5,
                        &format!("log_softmax fd {what} [{name}]"),
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------- cross-entropy

#[test]
fn cross_entropy_matches_reference_and_finite_differences() {
    let mut rng = Rng::new(12);
    for &(rows, cols) in SHAPES {
        let n = rows * cols;
        let x = rng.vec(n, 4.0);
        let labels = rng.labels(rows, cols);
        let mut g = vec![f32::NAN; n];
        let loss = sm::cross_entropy(rows, cols, &x, &labels, Some(&mut g));
        let loss_only = sm::cross_entropy(rows, cols, &x, &labels, None);
        assert_eq!(
            loss.to_bits(),
            loss_only.to_bits(),
            "grad does not change loss"
        );
        let xd = to_f64(&x);
        let want = ref_ce(cols, &xd, &labels);
        assert!(
            (loss as f64 - want).abs() <= 1e-6 * want.abs() + 1e-7,
            "ce {rows}x{cols}: {loss} vs {want}"
        );
        // Analytic gradient (softmax − onehot)/rows everywhere.
        let mut want_g = vec![0.0; n];
        for r in 0..rows {
            let p = ref_softmax(&xd[r * cols..(r + 1) * cols], 1.0);
            for j in 0..cols {
                let oh = if j == labels[r] as usize { 1.0 } else { 0.0 };
                want_g[r * cols + j] = (p[j] - oh) / rows as f64;
            }
        }
        assert_close(&g, &want_g, 1e-5, 1e-9, &format!("ce grad {rows}x{cols}"));
        if n <= 200 {
            let fd = finite_diff(&xd, |x| ref_ce(cols, x, &labels));
            assert_close(&g, &fd, 1e-5, 1e-8, &format!("ce fd {rows}x{cols}"));
        }
    }
}

// ---------------------------------------------------------------- knowledge distillation

#[test]
fn kd_loss_matches_reference_and_finite_differences() {
    let mut rng = Rng::new(13);
    for &(rows, cols) in SHAPES {
        for &(t, alpha) in &[(4.0f32, 0.7f32), (1.0, 0.5), (2.5, 1.0), (0.5, 0.3)] {
            let n = rows * cols;
            let s = rng.vec(n, 4.0);
            let te = rng.vec(n, 8.0);
            let labels = rng.labels(rows, cols);
            let mut g = vec![f32::NAN; n];
            let loss = sm::kd_loss(rows, cols, &s, &te, &labels, t, alpha, Some(&mut g));
            let loss_only = sm::kd_loss(rows, cols, &s, &te, &labels, t, alpha, None);
            assert_eq!(loss.to_bits(), loss_only.to_bits());
            let (sd, td) = (to_f64(&s), to_f64(&te));
            let (tf, af) = (t as f64, alpha as f64);
            let want = ref_kd(cols, &sd, &td, &labels, tf, af);
            let what = format!("kd {rows}x{cols} T={t} a={alpha}");
            assert!(
                (loss as f64 - want).abs() <= 1e-5 * want.abs() + 1e-6,
                "{what}: {loss} vs {want}"
            );
            // The documented analytic gradient.
            let mut want_g = vec![0.0; n];
            for r in 0..rows {
                let q = ref_softmax(&sd[r * cols..(r + 1) * cols], tf);
                let p = ref_softmax(&td[r * cols..(r + 1) * cols], tf);
                let q1 = ref_softmax(&sd[r * cols..(r + 1) * cols], 1.0);
                for j in 0..cols {
                    let oh = if j == labels[r] as usize { 1.0 } else { 0.0 };
                    want_g[r * cols + j] =
                        (af * tf * (q[j] - p[j]) + (1.0 - af) * (q1[j] - oh)) / rows as f64;
                }
            }
            assert_close(&g, &want_g, 1e-5, 1e-8, &format!("{what} grad"));
            // ... which is the gradient of the loss.
            if n <= 200 {
                let fd = finite_diff(&sd, |x| ref_kd(cols, x, &td, &labels, tf, af));
                assert_close(&g, &fd, 1e-5, 1e-7, &format!("{what} fd"));
            }
        }
    }
}

/// Hand-computed: T = 2, α = 0.5, two rows of 2 classes.
///
/// Row 0: s = [0, 0], t = [2, 0], label 0. q = softmax(s/2) = [½, ½];
/// p = softmax([1, 0]) = [e/(1+e), 1/(1+e)] = [0.7310585786, 0.2689414214].
/// KL(p‖q) = Σ p ln(p/q) = ln 2 + p₀·ln p₀ + p₁·ln p₁, with ln p₀ = 1 − ln(1+e), ln p₁ = −ln(1+e):
///   = ln 2 + p₀ − ln(1+e) = 0.6931471806 + 0.7310585786 − 1.3132616875 = 0.1109440717.
/// CE(s, 0) = ln 2. Row loss = α·T²·KL + (1−α)·CE = 0.5·4·0.1109440717 + 0.5·0.6931471806
///   = 0.2218881434 + 0.3465735903 = 0.5684617337.
/// Row 1: s = t = [0, 0], label 1: KL = 0, CE = ln 2, row loss = 0.3465735903.
/// Batch mean = (0.5684617337 + 0.3465735903)/2 = 0.4575176620.
/// Gradient row 0 (before /rows): α·T·(q − p) = 0.5·2·([½,½] − p) = [−0.2310585786, 0.2310585786]
///   plus (1−α)(softmax(s) − onehot) = 0.5·([½,½] − [1,0]) = [−0.25, 0.25] → [−0.4810585786,
///   0.4810585786]; /2 rows → [−0.2405292893, 0.2405292893].
/// Gradient row 1: α·T·0 + 0.5·([½,½] − [0,1]) = [0.25, −0.25]; /2 → [0.125, −0.125].
#[test]
fn kd_loss_hand_computed_case() {
    let s = [0.0f32, 0.0, 0.0, 0.0];
    let t = [2.0f32, 0.0, 0.0, 0.0];
    let labels = [0u32, 1];
    let mut g = [0.0f32; 4];
    let loss = sm::kd_loss(2, 2, &s, &t, &labels, 2.0, 0.5, Some(&mut g));
    assert!((loss as f64 - 0.457_517_662_0).abs() < 1e-6, "loss {loss}");
    let want = [-0.240_529_289_3, 0.240_529_289_3, 0.125, -0.125];
    for (a, b) in g.iter().zip(want) {
        assert!((*a as f64 - b).abs() < 1e-6, "grad {g:?} vs {want:?}");
    }
    // Row 0 alone: no batch averaging, and the T² factor: α = 1 gives T²·KL = 4·0.1109440717.
    let l1 = sm::kd_loss(1, 2, &s[..2], &t[..2], &labels[..1], 2.0, 1.0, None);
    assert!((l1 as f64 - 0.443_776_286_8).abs() < 1e-6, "T²·KL {l1}");
    let l0 = sm::kd_loss(1, 2, &s[..2], &t[..2], &labels[..1], 2.0, 0.5, None);
    assert!((l0 as f64 - 0.568_461_733_7).abs() < 1e-6, "row 0 {l0}");
}

#[test]
fn kd_alpha_limits() {
    let mut rng = Rng::new(14);
    for &(rows, cols) in &[(3usize, 7usize), (127, 10), (12_001, 10)] {
        let n = rows * cols;
        let s = rng.vec(n, 4.0);
        let te = rng.vec(n, 4.0);
        let labels = rng.labels(rows, cols);
        // α = 0 is exactly cross-entropy (loss and gradient, bit for bit).
        let mut g_kd = vec![0.0; n];
        let mut g_ce = vec![0.0; n];
        let l_kd = sm::kd_loss(rows, cols, &s, &te, &labels, 3.0, 0.0, Some(&mut g_kd));
        let l_ce = sm::cross_entropy(rows, cols, &s, &labels, Some(&mut g_ce));
        assert_eq!(l_kd.to_bits(), l_ce.to_bits(), "alpha=0 loss {rows}x{cols}");
        assert_eq!(g_kd, g_ce, "alpha=0 grad {rows}x{cols}");
        // α = 1 is T²·mean KL, gradient T·(q − p)/rows, labels irrelevant.
        let t = 3.0f64;
        let mut g = vec![0.0; n];
        let l = sm::kd_loss(rows, cols, &s, &te, &labels, 3.0, 1.0, Some(&mut g));
        let other: Vec<u32> = labels.iter().map(|&l| (l + 1) % cols as u32).collect();
        let l_other = sm::kd_loss(rows, cols, &s, &te, &other, 3.0, 1.0, None);
        assert_eq!(l.to_bits(), l_other.to_bits());
        let (sd, td) = (to_f64(&s), to_f64(&te));
        let want = ref_kd(cols, &sd, &td, &labels, t, 1.0);
        assert!((l as f64 - want).abs() <= 1e-5 * want.abs() + 1e-7);
        let mut want_g = vec![0.0; n];
        for r in 0..rows {
            let q = ref_softmax(&sd[r * cols..(r + 1) * cols], t);
            let p = ref_softmax(&td[r * cols..(r + 1) * cols], t);
            for j in 0..cols {
                want_g[r * cols + j] = t * (q[j] - p[j]) / rows as f64;
            }
        }
        assert_close(&g, &want_g, 1e-5, 1e-9, "alpha=1 grad");
        // Same logits for teacher and student: KL = 0.
        let l_same = sm::kd_loss(rows, cols, &s, &s, &labels, 3.0, 1.0, None);
        assert!(l_same.abs() < 1e-6, "KL(p‖p) = {l_same}");
    }
}

#[test]
fn teacher_zero_probabilities_contribute_nothing() {
    // Teacher puts ~all mass on class 0 (p₁, p₂ underflow to 0): KL = −ln q₀.
    let s = [1.0f32, 2.0, 3.0];
    let t = [0.0f32, -1e4, -1e4];
    let l = sm::kd_loss(1, 3, &s, &t, &[0], 1.0, 1.0, None);
    let q0 = ref_softmax(&[1.0, 2.0, 3.0], 1.0)[0];
    assert!((l as f64 + q0.ln()).abs() < 1e-6, "{l} vs {}", -q0.ln());
}

#[test]
fn extreme_logits_stay_finite() {
    let x = [1e4f32, -1e4, 0.0, 1e4, -1e4, -1e4, 3.0, -1e4];
    let (rows, cols) = (2, 4);
    let mut y = [0.0f32; 8];
    sm::softmax(rows, cols, &x, 1.0, &mut y);
    assert!(y.iter().all(|v| v.is_finite()));
    assert_eq!(&y[..4], &[0.5, 0.0, 0.0, 0.5]);
    assert!((y[4..].iter().sum::<f32>() - 1.0).abs() < 1e-6);
    sm::log_softmax(rows, cols, &x, 0.5, &mut y);
    assert!(y.iter().all(|v| v.is_finite()), "{y:?}");
    let labels = [1u32, 0];
    let mut g = [0.0f32; 8];
    let l = sm::cross_entropy(rows, cols, &x, &labels, Some(&mut g));
    assert!(l.is_finite() && g.iter().all(|v| v.is_finite()));
    // Row 0: lse = 1e4 + ln 2, label logit −1e4 → 2e4 + ln 2. Row 1: lse ≈ 3, label logit
    // −1e4 → 1e4 + 3. Mean of the two.
    let want = ((2e4 + 2f64.ln()) + (1e4 + 3.0)) / 2.0;
    assert!((l as f64 - want).abs() < 1e-2, "{l} vs {want}");
    let t = [-1e4f32, 1e4, 1e4, -1e4, 0.0, 0.0, 0.0, 0.0];
    let l = sm::kd_loss(rows, cols, &x, &t, &labels, 4.0, 0.6, Some(&mut g));
    assert!(
        l.is_finite() && g.iter().all(|v| v.is_finite()),
        "{l} {g:?}"
    );
}

/// Logits far apart (±1e4, −∞, a spread of 1e3) at low and high temperature, on rows that
/// take each vector path with a ragged end: finite where the reference is, and close to it.
#[test]
fn extreme_logits_at_every_level() {
    let mut rng = Rng::new(16);
    for cols in [5, 13, 37] {
        let rows = 4;
        let mut x = rng.vec(rows * cols, 1e3);
        x[0] = 1e4;
        x[cols - 1] = -1e4;
        x[cols] = f32::NEG_INFINITY;
        x[2 * cols + cols / 2] = -1e4;
        x[3 * cols..].fill(-3e4);
        x[4 * cols - 2] = 3e4;
        for t in [0.25f32, 1.0, 8.0] {
            let xd = to_f64(&x);
            let (mut want, mut want_log) = (Vec::new(), Vec::new());
            for r in 0..rows {
                want.extend(ref_softmax(&xd[r * cols..(r + 1) * cols], t as f64));
                want_log.extend(ref_log_softmax(&xd[r * cols..(r + 1) * cols], t as f64));
            }
            for level in simd::available() {
                let what = format!("{rows}x{cols} T={t} [{}]", level.name());
                let mut y = vec![f32::NAN; rows * cols];
                sm::softmax_at(level, rows, cols, &x, t, &mut y);
                assert_close(&y, &want, 1e-5, 1e-9, &format!("softmax {what}"));
                let mut ly = vec![f32::NAN; rows * cols];
                sm::log_softmax_at(level, rows, cols, &x, t, &mut ly);
                for (i, (&g, &w)) in ly.iter().zip(&want_log).enumerate() {
                    let ok = if w.is_finite() {
                        (g as f64 - w).abs() <= 1e-5 * w.abs().max(1.0)
                    } else {
                        g == f32::NEG_INFINITY
                    };
                    assert!(ok, "log_softmax {what}[{i}]: got {g}, want {w}");
                }
            }
        }
    }
}

/// The forward maps and both backward passes give the same bits on 1, 2 and 3 threads, at
/// every SIMD level.
#[test]
fn maps_are_bit_identical_across_thread_counts_at_every_level() {
    let mut rng = Rng::new(17);
    for (rows, cols) in [(3000, 37), (40, 1001)] {
        let n = rows * cols;
        let x = rng.vec(n, 5.0);
        let dy = rng.vec(n, 1.0);
        for level in simd::available() {
            let run = || {
                let (mut y, mut ly) = (vec![0.0; n], vec![0.0; n]);
                let (mut dx, mut ldx) = (vec![0.0; n], vec![0.0; n]);
                sm::softmax_at(level, rows, cols, &x, 2.0, &mut y);
                sm::log_softmax_at(level, rows, cols, &x, 2.0, &mut ly);
                sm::softmax_backward_at(level, rows, cols, &y, &dy, 2.0, &mut dx);
                sm::log_softmax_backward_at(level, rows, cols, &ly, &dy, 2.0, &mut ldx);
                [y, ly, dx, ldx].map(|v| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
            };
            let one = pool(1).install(run);
            assert!(
                one == pool(2).install(run),
                "{rows}x{cols} [{}]",
                level.name()
            );
            assert!(
                one == pool(3).install(run),
                "{rows}x{cols} [{}]",
                level.name()
            );
        }
    }
}

#[test]
fn losses_are_bit_identical_across_thread_counts() {
    let mut rng = Rng::new(15);
    let (rows, cols) = (30_000, 10);
    let s = rng.vec(rows * cols, 5.0);
    let te = rng.vec(rows * cols, 5.0);
    let labels = rng.labels(rows, cols);
    let run = || {
        let mut g = vec![0.0f32; rows * cols];
        let ce = sm::cross_entropy(rows, cols, &s, &labels, Some(&mut g)).to_bits();
        let kd = sm::kd_loss(rows, cols, &s, &te, &labels, 4.0, 0.9, Some(&mut g)).to_bits();
        let n = sm::count_correct(rows, cols, &s, &labels);
        (ce, kd, n, g.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
    };
    let one = pool(1).install(run);
    assert_eq!(one, pool(2).install(run));
    assert_eq!(one, pool(3).install(run));
}

// ---------------------------------------------------------------- accuracy

#[test]
fn count_correct_matches_reference() {
    let mut rng = Rng::new(16);
    for &(rows, cols) in SHAPES {
        let x = rng.vec(rows * cols, 1.0);
        let labels = rng.labels(rows, cols);
        let mut want = 0;
        for r in 0..rows {
            let row = &x[r * cols..(r + 1) * cols];
            let mut best = 0;
            for j in 0..cols {
                if row[j] > row[best] {
                    best = j;
                }
            }
            want += (best == labels[r] as usize) as u32;
        }
        assert_eq!(sm::count_correct(rows, cols, &x, &labels), want);
    }
    // Ties go to the first maximum.
    let x = [1.0f32, 1.0, 0.0, 2.0, 2.0, 2.0];
    assert_eq!(sm::count_correct(2, 3, &x, &[0, 0]), 2);
    assert_eq!(sm::count_correct(2, 3, &x, &[1, 1]), 0);
    assert_eq!(sm::count_correct(0, 3, &[], &[]), 0);
}

#[test]
#[should_panic(expected = "out of range")]
fn label_out_of_range_panics() {
    let mut g = [0.0f32; 6];
    sm::cross_entropy(2, 3, &[0.0; 6], &[0, 3], Some(&mut g));
}

#[test]
#[should_panic(expected = "out of range")]
fn kd_label_out_of_range_panics() {
    sm::kd_loss(1, 3, &[0.0; 3], &[0.0; 3], &[7], 2.0, 0.5, None);
}
