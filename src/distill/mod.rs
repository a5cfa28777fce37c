//! Distillation: the training loop (teacher, baseline student, KD student), evaluation,
//! checkpoints of models, the end-to-end pipeline and its report.

pub mod pipeline;
pub mod plot;
pub mod report;
pub mod train;

pub use train::{
    evaluate, load_model, predict_logits, save_model, train, EpochRecord, InputSpec, KdConfig,
    Observer, OptimizerKind, Silent, TeacherLogits, TrainConfig, TrainJob, Trained,
};
