//! Distillation: losses, trainer, evaluation, report.

pub mod plot;
