//! GEMM: every transpose pair, bias and epilogue, on shapes that are not tile multiples.

use distill::backend::{GemmBias, GemmShape, Trans};

use crate::{Both, Rng, TestData};

#[test]
fn gemm_all_transposes_and_epilogues() {
    let Some(d) = Both::new() else { return };
    gemm_cases(&d);
}

/// Every transpose pair on shapes around the tile sizes (32 to 128), with the epilogues.
pub(crate) fn gemm_cases(d: &Both) {
    let mut rng = Rng::new(1);
    let shapes = [
        (1, 1, 1),
        (3, 7, 13),
        (13, 3, 7),
        (33, 65, 7),
        (65, 33, 127),
        (64, 64, 64),
        (4, 8, 12),
        (127, 68, 36),
        (2, 129, 5),
    ];
    let mut case = 0;
    for &(m, n, k) in &shapes {
        for ta in [Trans::N, Trans::T] {
            for tb in [Trans::N, Trans::T] {
                case += 1;
                let a = d.f32(&rng.vec(m * k));
                let b = d.f32(&rng.vec(k * n));
                let c = d.f32(&rng.vec(m * n));
                let bias_row = d.f32(&rng.vec(m));
                let bias_col = d.f32(&rng.vec(n));
                let accumulate = case % 2 == 0;
                let relu = case % 3 == 0;
                let sh = GemmShape { ta, tb, m, n, k };
                for side in 0..2 {
                    let (dev, a, b, c, br, bc) = if side == 0 {
                        (&d.cpu, &a.cpu, &b.cpu, &c.cpu, &bias_row.cpu, &bias_col.cpu)
                    } else {
                        (&d.gpu, &a.gpu, &b.gpu, &c.gpu, &bias_row.gpu, &bias_col.gpu)
                    };
                    let bias = match case % 3 {
                        0 => GemmBias::None,
                        1 => GemmBias::PerRow(br),
                        _ => GemmBias::PerCol(bc),
                    };
                    dev.backend()
                        .gemm(sh, a, b, c, bias, accumulate, relu)
                        .unwrap();
                }
                d.check(
                    &format!(
                        "gemm {ta:?}{tb:?} {m}x{n}x{k} acc={accumulate} relu={relu} bias={}",
                        case % 3
                    ),
                    &c,
                );
            }
        }
    }
}
