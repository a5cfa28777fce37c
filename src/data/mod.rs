//! Datasets and batching. PLACEHOLDER until the datasets work lands.
