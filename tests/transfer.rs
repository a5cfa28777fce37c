//! Transfer sets: the KD loss with rows that have soft targets only (labelled NO_LABEL),
//! worked by hand, through the engine.

use distill::{ops, Device, Tensor};

/// Three rows, two classes, T = 2, α = 0.5; rows 1 and 2 as in tests/trainer.rs, row 3 has no
/// label: s = [0, 0], t = [2 ln 3, 0] → p_s = [½, ½], p_t = [¾, ¼], KL = ¾ ln(3/2) + ¼ ln ½.
/// loss = α·T²·(KL₁ + KL₂ + KL₃)/3 + (1−α)·(CE₁ + CE₂)/2 (the CE over the 2 labelled rows);
/// ∂/∂s = α·T·(p_s(T) − p_t)/3 + (1−α)(softmax(s) − onehot)/2 on labelled rows:
///   row 1: [1/12, −1/12] + [−⅛, ⅛];  row 2: [1/12, −1/12] + [0.225, −0.225];
///   row 3: [−1/12, 1/12] (KD only).
#[test]
fn unlabelled_rows_add_only_their_kd_term() {
    let dev = Device::cpu();
    let ln3 = 3f64.ln();
    let l3 = (2.0 * ln3) as f32;
    let s = Tensor::from_f32(&[0.0, 0.0, l3, 0.0, 0.0, 0.0], &[3, 2], &dev)
        .unwrap()
        .into_param();
    let t = Tensor::from_f32(&[0.0, l3, 0.0, 0.0, l3, 0.0], &[3, 2], &dev).unwrap();
    let y = Tensor::from_u32(&[0, 1, ops::NO_LABEL], &[3], &dev).unwrap();
    let loss = ops::kd_loss(&s, &t, &y, 2.0, 0.5).unwrap();
    let kl1 = 0.25 * 0.5f64.ln() + 0.75 * 1.5f64.ln();
    let kl2 = 0.5 * (2.0f64 / 3.0).ln() + 0.5 * 2f64.ln();
    let kl3 = 0.75 * 1.5f64.ln() + 0.25 * 0.5f64.ln();
    let expected = 0.5 * 4.0 * (kl1 + kl2 + kl3) / 3.0 + 0.5 * (2f64.ln() + 10f64.ln()) / 2.0;
    let got = loss.item().unwrap() as f64;
    assert!((got - expected).abs() < 1e-6, "loss {got} vs {expected}");
    loss.backward().unwrap();
    let g = s.grad().unwrap().to_vec().unwrap();
    let k = 1.0 / 12.0;
    let want = [k - 0.125, -k + 0.125, k + 0.225, -k - 0.225, -k, k];
    for (a, b) in g.iter().zip(want) {
        assert!((*a as f64 - b).abs() < 1e-6, "grad {g:?} vs {want:?}");
    }
}

/// A batch with no labelled row has the KD term alone (no division by zero), and it equals
/// the loss at α = 1 scaled by α.
#[test]
fn a_batch_without_labels_is_pure_kd() {
    let dev = Device::cpu();
    let s = Tensor::from_f32(&[0.3, -1.0, 2.0, 0.5, 0.1, -0.7], &[2, 3], &dev).unwrap();
    let t = Tensor::from_f32(&[1.0, 0.0, -1.0, 0.2, 0.4, 3.0], &[2, 3], &dev).unwrap();
    let none = Tensor::from_u32(&[ops::NO_LABEL; 2], &[2], &dev).unwrap();
    let any = Tensor::from_u32(&[0, 2], &[2], &dev).unwrap();
    let masked = ops::kd_loss(&s, &t, &none, 3.0, 0.7)
        .unwrap()
        .item()
        .unwrap();
    let pure = ops::kd_loss(&s, &t, &any, 3.0, 1.0)
        .unwrap()
        .item()
        .unwrap();
    assert!(masked.is_finite());
    assert!(
        (masked - 0.7 * pure).abs() < 1e-6,
        "{masked} vs 0.7 × {pure}"
    );
}
