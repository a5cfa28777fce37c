//! Training one model: its settings ([`config`]), the loop with checkpoints and exact resume
//! ([`trainer`], [`resume`]), the feature hint term ([`hint`]), stopping it on request ([`interrupt`]), and using the result
//! ([`eval`]: metrics, logits, top-k).

pub mod config;
pub mod eval;
pub mod hint;
pub mod interrupt;
pub mod resume;
pub mod trainer;

pub use config::{validate_label_fraction, InputSpec, KdConfig, OptimizerKind, TrainConfig};
pub use eval::{argmax, evaluate, predict_logits, top_k, ClassProbability, Evaluation};
pub use hint::{HintConfig, HintTerm};
pub use trainer::{
    train, EpochRecord, Observer, Silent, TeacherLogits, TrainJob, Trained, READ_EVERY,
};
