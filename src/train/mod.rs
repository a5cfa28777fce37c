//! Training one model: its settings ([`config`]), the loop with checkpoints and exact resume
//! ([`trainer`], [`resume`]), the feature hint term ([`hint`]), stopping it on request ([`interrupt`]), and using the result
//! ([`eval`]: metrics, logits, top-k).

pub mod config;
pub mod eval;
pub mod hint;
pub mod interrupt;
#[cfg(not(target_arch = "wasm32"))]
pub mod resume;
pub mod trainer;

pub use crate::data::InputSpec;
pub use crate::epoch::EpochRecord;
pub use config::{validate_label_fraction, KdConfig, OptimizerKind, TrainConfig};
pub use eval::{argmax, evaluate_async, predict_logits_async, ClassProbability, Evaluation};
#[cfg(not(target_arch = "wasm32"))]
pub use eval::{evaluate, predict_logits, top_k};
pub use hint::{HintConfig, HintTerm};
#[cfg(not(target_arch = "wasm32"))]
pub use trainer::train;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use trainer::train_validated;
pub use trainer::{train_async, Observer, Silent, TeacherLogits, TrainJob, Trained, READ_EVERY};
