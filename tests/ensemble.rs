//! Teacher ensembles: the combined soft targets against a hand computation, and through the
//! KD loss.

use distill::pipeline::ensemble::{combine, Ensemble};
use distill::{ops, Device, Tensor};

/// Two teachers, two classes, T = 2: teacher A's logits [0, 2 ln 3] give softmax(z/T) = [¼, ¾],
/// teacher B's [0, 0] give [½, ½]; the mean is p̄ = [⅜, ⅝]. The stored row is T·log p̄, whose
/// softmax at T is p̄ again. Logit averaging gives [0, ln 3].
#[test]
fn averaged_probabilities_by_hand() {
    let l3 = 2.0 * 3f64.ln();
    let a = vec![0.0, l3 as f32];
    let b = vec![0.0, 0.0];
    let t = 2.0f32;
    let row = combine(&[a.clone(), b.clone()], 2, t, Ensemble::Probabilities).unwrap();
    let want = [2.0 * (3.0f64 / 8.0).ln(), 2.0 * (5.0f64 / 8.0).ln()];
    for (g, w) in row.iter().zip(want) {
        assert!((*g as f64 - w).abs() < 1e-6, "{row:?} vs {want:?}");
    }
    // softmax(row / T) = p̄ through the engine.
    let dev = Device::cpu();
    let x = Tensor::from_f32(&row, &[1, 2], &dev).unwrap();
    let p = ops::softmax_t(&x, t).unwrap().to_vec().unwrap();
    assert!(
        (p[0] as f64 - 0.375).abs() < 1e-6 && (p[1] as f64 - 0.625).abs() < 1e-6,
        "{p:?}"
    );

    let mean = combine(&[a, b], 2, t, Ensemble::Logits).unwrap();
    assert!(
        (mean[1] as f64 - 3f64.ln()).abs() < 1e-6 && mean[0] == 0.0,
        "{mean:?}"
    );
}

/// The KD loss against the stored row equals the KL to p̄ computed by hand:
/// student s = [0, 0] at T = 2 → q = [½, ½]; loss (α = 1) = T²·Σ p̄ log(p̄/q).
#[test]
fn kd_loss_against_the_ensemble_is_the_kl_to_the_mean_probability() {
    let l3 = (2.0 * 3f64.ln()) as f32;
    let row = combine(
        &[vec![0.0, l3], vec![0.0, 0.0]],
        2,
        2.0,
        Ensemble::Probabilities,
    )
    .unwrap();
    let dev = Device::cpu();
    let s = Tensor::from_f32(&[0.0, 0.0], &[1, 2], &dev).unwrap();
    let t = Tensor::from_f32(&row, &[1, 2], &dev).unwrap();
    let y = Tensor::from_u32(&[0], &[1], &dev).unwrap();
    let loss = ops::kd_loss(&s, &t, &y, 2.0, 1.0).unwrap().item().unwrap() as f64;
    let want = 4.0 * (0.375 * (0.375f64 / 0.5).ln() + 0.625 * (0.625f64 / 0.5).ln());
    assert!((loss - want).abs() < 1e-6, "{loss} vs {want}");
}

#[test]
fn one_teacher_passes_through_and_bad_tables_are_errors() {
    let a = vec![1.0, -2.0, 0.5, 3.0];
    assert_eq!(
        combine(std::slice::from_ref(&a), 2, 4.0, Ensemble::Probabilities).unwrap(),
        a
    );
    assert!(combine(&[], 2, 4.0, Ensemble::Probabilities).is_err());
    assert!(combine(&[a.clone(), vec![1.0; 2]], 2, 4.0, Ensemble::Logits).is_err());
    assert!(combine(&[a], 3, 4.0, Ensemble::Logits).is_err());
    assert!("mean".parse::<Ensemble>().is_err());
    assert_eq!("logits".parse::<Ensemble>(), Ok(Ensemble::Logits));
}
