//! Fitting models on the data at hand: the conversion model `leadgate
//! calibrate` fits on a CRM history (logistic regression or gradient-boosted
//! trees, chosen on a validation split, with held-out metrics), and the
//! matching model estimated without labels (u from random pairs, m by EM
//! over candidate pairs). It reads input through the pipeline and writes
//! model files; it serves nothing and stores nothing.

pub mod calibrate;
pub mod estimate;

use leadgate_pipeline::{batch, config, matcher};
