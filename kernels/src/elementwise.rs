//! Element-wise maps and simple reductions. PLACEHOLDER signatures.

/// `y = max(0, x)`.
pub fn relu(x: &[f32], y: &mut [f32]) {
    let _ = (x, y);
    todo!()
}
/// `dx = dy` where `x > 0`, else 0.
pub fn relu_backward(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    let _ = (x, dy, dx);
    todo!()
}
/// `y = a + b`.
pub fn add(a: &[f32], b: &[f32], y: &mut [f32]) {
    let _ = (a, b, y);
    todo!()
}
/// `y = s · x`.
pub fn scale(x: &[f32], s: f32, y: &mut [f32]) {
    let _ = (x, s, y);
    todo!()
}
/// `y += alpha · x`.
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    let _ = (alpha, x, y);
    todo!()
}
/// `y = v` everywhere.
pub fn fill(y: &mut [f32], v: f32) {
    let _ = (y, v);
    todo!()
}
/// Σ x, deterministic (fixed chunks, fixed combine order, f64 partials).
pub fn sum(x: &[f32]) -> f32 {
    let _ = x;
    todo!()
}
/// Σ x / len (0 for empty input).
pub fn mean(x: &[f32]) -> f32 {
    let _ = x;
    todo!()
}
/// `out[j] = Σ_i x[i, j]` over a `rows × cols` matrix (a linear layer's bias gradient).
pub fn column_sums(rows: usize, cols: usize, x: &[f32], out: &mut [f32]) {
    let _ = (rows, cols, x, out);
    todo!()
}
