//! Element-wise kernels and reductions (sum, column sums).

use crate::{Both, Pair, Rng, TestData, TOL};

#[test]
fn elementwise_and_reductions() {
    let Some(d) = Both::new() else { return };
    let mut rng = Rng::new(4);
    for n in [1usize, 7, 33, 1000, 4097, 70_001] {
        let x = d.f32(&rng.vec(n));
        let z = d.f32(&rng.vec(n));
        let s = d.f32(&[rng.uniform(-1.0, 1.0) * 3.0]);
        let outs: Vec<Pair> = (0..7).map(|_| d.out(n)).collect();
        let acc = d.f32(&rng.vec(n));
        let total = d.out(1);
        for (dev, side) in [(&d.cpu, 0), (&d.gpu, 1)] {
            let be = dev.backend();
            be.relu(x.on(side), outs[0].on(side)).unwrap();
            be.relu_backward(x.on(side), z.on(side), outs[1].on(side))
                .unwrap();
            be.add(x.on(side), z.on(side), outs[2].on(side)).unwrap();
            be.scale(x.on(side), -1.75, outs[3].on(side)).unwrap();
            be.scale_by(x.on(side), s.on(side), outs[4].on(side))
                .unwrap();
            be.fill(outs[5].on(side), 0.625).unwrap();
            be.copy(z.on(side), outs[6].on(side)).unwrap();
            be.axpy(0.3, x.on(side), acc.on(side)).unwrap();
            be.sum(x.on(side), total.on(side)).unwrap();
        }
        for (i, name) in [
            "relu",
            "relu_backward",
            "add",
            "scale",
            "scale_by",
            "fill",
            "copy",
        ]
        .iter()
        .enumerate()
        {
            d.check(&format!("{name} n={n}"), &outs[i]);
        }
        d.check(&format!("axpy n={n}"), &acc);
        // A sum is judged against Σ|x| (cancellation makes Σx itself a poor scale).
        let c = d.cpu.backend().download_f32(&total.cpu).unwrap()[0];
        let g = d.gpu.backend().download_f32(&total.gpu).unwrap()[0];
        let abs: f32 = d
            .cpu
            .backend()
            .download_f32(&x.cpu)
            .unwrap()
            .iter()
            .map(|v| v.abs())
            .sum();
        assert!(
            (g - c).abs() <= TOL * abs.max(1.0),
            "sum n={n}: GPU {g} vs CPU {c}"
        );
    }
    for (rows, cols) in [(1, 1), (3, 7), (128, 10), (33, 65), (1000, 3), (5, 300)] {
        let x = d.f32(&rng.vec(rows * cols));
        let out = d.out(cols);
        d.cpu
            .backend()
            .column_sums(rows, cols, &x.cpu, &out.cpu)
            .unwrap();
        d.gpu
            .backend()
            .column_sums(rows, cols, &x.gpu, &out.gpu)
            .unwrap();
        d.check(&format!("column_sums {rows}x{cols}"), &out);
    }
}
