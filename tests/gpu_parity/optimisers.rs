//! SGD (plain, momentum, dampening, weight decay, Nesterov) and Adam / AdamW over several
//! steps.

use distill::backend::{AdamConfig, SgdConfig};

use crate::{Both, Rng, TestData};

#[test]
fn optimisers_over_several_steps() {
    let Some(d) = Both::new() else { return };
    let mut rng = Rng::new(7);
    let n = 1000;
    let sgds = [
        SgdConfig {
            lr: 0.1,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        },
        SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            dampening: 0.0,
            weight_decay: 5e-4,
            nesterov: false,
        },
        SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            dampening: 0.1,
            weight_decay: 1e-2,
            nesterov: false,
        },
        SgdConfig {
            lr: 0.01,
            momentum: 0.8,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: true,
        },
    ];
    for cfg in sgds {
        let p = d.f32(&rng.vec(n));
        let buf = d.f32(&vec![0.0; n]);
        for step in 0..3 {
            let g = d.f32(&rng.vec(n));
            d.cpu
                .backend()
                .sgd_step(&cfg, step == 0, &p.cpu, &g.cpu, &buf.cpu)
                .unwrap();
            d.gpu
                .backend()
                .sgd_step(&cfg, step == 0, &p.gpu, &g.gpu, &buf.gpu)
                .unwrap();
        }
        d.check(&format!("sgd param {cfg:?}"), &p);
        if cfg.momentum != 0.0 {
            d.check(&format!("sgd momentum {cfg:?}"), &buf);
        }
    }
    for decoupled in [false, true] {
        for wd in [0.0, 0.01] {
            let cfg = AdamConfig {
                lr: 1e-2,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: wd,
                decoupled_weight_decay: decoupled,
            };
            let p = d.f32(&rng.vec(n));
            let (m, v) = (d.f32(&vec![0.0; n]), d.f32(&vec![0.0; n]));
            for step in 1..=4 {
                let g = d.f32(&rng.vec(n));
                d.cpu
                    .backend()
                    .adam_step(&cfg, step, &p.cpu, &g.cpu, &m.cpu, &v.cpu)
                    .unwrap();
                d.gpu
                    .backend()
                    .adam_step(&cfg, step, &p.gpu, &g.gpu, &m.gpu, &v.gpu)
                    .unwrap();
            }
            d.check(&format!("adam param {cfg:?}"), &p);
            d.check(&format!("adam m {cfg:?}"), &m);
            d.check(&format!("adam v {cfg:?}"), &v);
        }
    }
}
