//! Checkpoints (safetensors). PLACEHOLDER until the checkpoint work lands.
