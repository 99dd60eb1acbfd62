//! The model formats both sides of the contract share: what the host fits
//! (`leadgate dedupe-train`, `leadgate calibrate`) and a component applies,
//! passed to the component in its settings. [`dedupe`]: the Fellegi–Sunter
//! matching model and the bundled parameters. [`score`]: the calibrated
//! conversion model (logistic regression or gradient-boosted trees) and how
//! a lead's values are read into it. Formats and their evaluation only:
//! no I/O, no fitting.

pub mod dedupe;
pub mod score;
