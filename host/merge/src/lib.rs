//! What happens once two leads are known to be the same person.
//!
//! - [`survivorship`]: the golden record of a merged group, field by field
//!   under the tenant's rules (most recent non-empty, most complete, source
//!   priority), keeping every distinct email and phone as secondary values
//!   and letting an opt-out win.
//! - [`cluster`]: batch clean-up's pairs into groups, transitively, with a
//!   guard against long chains joining people who are clearly different.

pub mod cluster;
pub mod survivorship;
