//! Row-wise softmax family over `rows × cols` logits. PLACEHOLDER signatures.

/// `y = softmax(x / T)` per row.
pub fn softmax(rows: usize, cols: usize, x: &[f32], temperature: f32, y: &mut [f32]) {
    let _ = (rows, cols, x, temperature, y);
    todo!()
}

/// Given `y = softmax(x/T)` and `dy`, `dx = y ⊙ (dy − Σ dy⊙y) / T`.
pub fn softmax_backward(
    rows: usize,
    cols: usize,
    y: &[f32],
    dy: &[f32],
    temperature: f32,
    dx: &mut [f32],
) {
    let _ = (rows, cols, y, dy, temperature, dx);
    todo!()
}

/// `y = log_softmax(x / T)` per row.
pub fn log_softmax(rows: usize, cols: usize, x: &[f32], temperature: f32, y: &mut [f32]) {
    let _ = (rows, cols, x, temperature, y);
    todo!()
}

/// Given `y = log_softmax(x/T)` and `dy`, `dx = (dy − exp(y) Σ dy) / T`.
pub fn log_softmax_backward(
    rows: usize,
    cols: usize,
    y: &[f32],
    dy: &[f32],
    temperature: f32,
    dx: &mut [f32],
) {
    let _ = (rows, cols, y, dy, temperature, dx);
    todo!()
}

/// Mean over rows of `−log softmax(logits)[label]`; `grad` (if given) gets ∂loss/∂logits
/// `= (softmax − onehot) / rows`.
pub fn cross_entropy(
    rows: usize,
    cols: usize,
    logits: &[f32],
    labels: &[u32],
    grad: Option<&mut [f32]>,
) -> f32 {
    let _ = (rows, cols, logits, labels, grad);
    todo!()
}

/// Hinton KD: `α·T²·(1/rows)·Σ KL(softmax(t/T) ‖ softmax(s/T)) + (1−α)·CE(s, labels)`;
/// `grad` gets ∂loss/∂student `= α·T·(softmax(s/T) − softmax(t/T))/rows + (1−α)(softmax(s) − onehot)/rows`.
#[allow(clippy::too_many_arguments)]
pub fn kd_loss(
    rows: usize,
    cols: usize,
    student: &[f32],
    teacher: &[f32],
    labels: &[u32],
    temperature: f32,
    alpha: f32,
    grad: Option<&mut [f32]>,
) -> f32 {
    let _ = (
        rows,
        cols,
        student,
        teacher,
        labels,
        temperature,
        alpha,
        grad,
    );
    todo!()
}

/// Number of rows whose arg-max (first maximum) equals the label.
pub fn count_correct(rows: usize, cols: usize, logits: &[f32], labels: &[u32]) -> u32 {
    let _ = (rows, cols, logits, labels);
    todo!()
}
