//! Reverse-mode autograd.
//!
//! Each op that runs while grad is enabled and has an input that requires grad attaches a
//! `Node` to its output: the inputs, and a closure that maps the output's gradient to the
//! inputs' gradients (the op's gradient rule, written in `src/ops/`). The nodes reachable
//! from a loss form the tape; [`Tensor::backward`] replays it in reverse topological order,
//! summing gradients that meet, and accumulates into the leaves' `grad()`.
//!
//! [`no_grad`] turns recording off for a scope (evaluation, the teacher's forward pass).

use std::cell::Cell;
use std::collections::HashMap;

use crate::tensor::{DType, Tensor};
use crate::{Error, Result};

pub(crate) type GradFn = Box<dyn Fn(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync>;

pub(crate) struct Node {
    pub(crate) name: &'static str,
    pub(crate) inputs: Vec<Tensor>,
    pub(crate) grad_fn: GradFn,
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Runs `f` with gradient recording off (restored afterwards, even on early return).
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            GRAD_ENABLED.with(|g| g.set(self.0));
        }
    }
    let _restore = Restore(GRAD_ENABLED.with(|g| g.replace(false)));
    f()
}

pub fn grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Whether an op over `inputs` must record a node.
pub(crate) fn should_record(inputs: &[&Tensor]) -> bool {
    grad_enabled() && inputs.iter().any(|t| t.requires_grad())
}

/// A node for an op's output, or `None` when nothing needs a gradient.
pub(crate) fn record(
    name: &'static str,
    inputs: &[&Tensor],
    grad_fn: impl Fn(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
) -> Option<Node> {
    if !should_record(inputs) {
        return None;
    }
    Some(Node {
        name,
        inputs: inputs.iter().map(|t| (*t).clone()).collect(),
        grad_fn: Box::new(grad_fn),
    })
}

impl Tensor {
    /// Back-propagates from a one-element tensor (a loss), seeding its gradient with 1.
    pub fn backward(&self) -> Result<()> {
        if self.numel() != 1 {
            return Err(Error::Shape(format!(
                "backward() needs a one-element loss, got shape {:?}; use backward_with",
                self.shape()
            )));
        }
        let one = Tensor::from_f32(&[1.0], self.shape(), self.device())?;
        self.backward_with(one)
    }

    /// Back-propagates with an explicit gradient for this tensor (same shape).
    pub fn backward_with(&self, grad: Tensor) -> Result<()> {
        if grad.shape() != self.shape() {
            return Err(Error::Shape(format!(
                "backward_with: gradient shape {:?} != tensor shape {:?}",
                grad.shape(),
                self.shape()
            )));
        }
        if !self.requires_grad() {
            return Err(Error::Shape("backward() on a tensor that does not require grad (computed under no_grad, or from no parameter)".into()));
        }
        no_grad(|| self.backward_inner(grad))
    }

    fn backward_inner(&self, grad: Tensor) -> Result<()> {
        // Topological order by iterative DFS (post-order), from the root.
        let mut order: Vec<Tensor> = Vec::new();
        let mut seen: HashMap<u64, ()> = HashMap::new();
        let mut stack: Vec<(Tensor, bool)> = vec![(self.clone(), false)];
        while let Some((t, expanded)) = stack.pop() {
            if expanded {
                order.push(t);
                continue;
            }
            if seen.insert(t.id(), ()).is_some() {
                continue;
            }
            stack.push((t.clone(), true));
            if let Some(node) = t.node() {
                for input in &node.inputs {
                    if input.requires_grad() && !seen.contains_key(&input.id()) {
                        stack.push((input.clone(), false));
                    }
                }
            }
        }

        let mut grads: HashMap<u64, Tensor> = HashMap::new();
        grads.insert(self.id(), grad);
        for t in order.iter().rev() {
            let Some(g) = grads.remove(&t.id()) else {
                continue;
            };
            match t.node() {
                None => accumulate_leaf(t, g)?,
                Some(node) => {
                    let input_grads = (node.grad_fn)(&g).map_err(|e| match e {
                        Error::Shape(s) => {
                            Error::Shape(format!("in the backward pass of {}: {s}", node.name))
                        }
                        other => other,
                    })?;
                    for (input, ig) in node.inputs.iter().zip(input_grads) {
                        let Some(ig) = ig else { continue };
                        if !input.requires_grad() {
                            continue;
                        }
                        match grads.remove(&input.id()) {
                            None => {
                                grads.insert(input.id(), ig);
                            }
                            Some(prev) => {
                                // Gradients that meet are summed into a fresh buffer: `ig` may
                                // share storage with a saved tensor.
                                grads.insert(input.id(), crate::ops::add(&prev, &ig)?);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn accumulate_leaf(leaf: &Tensor, g: Tensor) -> Result<()> {
    debug_assert_eq!(g.dtype(), DType::F32);
    match leaf.grad() {
        None => {
            // Keep the buffer when nothing else holds it; copy when it may alias another
            // tensor (e.g. `add` hands the same gradient to both inputs).
            let unique = std::sync::Arc::strong_count(&g.0) == 1
                && std::sync::Arc::strong_count(g.storage_arc()) == 1;
            let owned = if unique && g.shape() == leaf.shape() {
                g
            } else {
                let owned = Tensor::empty_like_shape(leaf.shape(), DType::F32, leaf.device())?;
                leaf.device().backend().copy(g.storage(), owned.storage())?;
                owned
            };
            leaf.set_grad(Some(owned));
        }
        Some(prev) => leaf
            .device()
            .backend()
            .axpy(1.0, g.storage(), prev.storage())?,
    }
    Ok(())
}
