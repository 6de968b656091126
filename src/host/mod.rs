//! What runs on a live host over its connection: reading its facts, applying a plan, and the
//! remote half of `check` (reading its clock and its daemon's view).

pub mod apply;
pub(crate) mod ceph;
pub mod facts;
#[allow(unreachable_pub)] // spelled `pub` until its rewrite (issue 9) lands
pub(crate) mod readings;
pub mod records;
pub mod script;
