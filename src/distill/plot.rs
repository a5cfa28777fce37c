//! PNG plots for the report. PLACEHOLDER.
