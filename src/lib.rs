//! clockprov: keep the clocks of a fleet of Linux hosts in step.
//!
//! The data flows one way: inventory -> desired state (render) -> facts (read from each host)
//! -> plan (pure diff) -> apply.
//!
//! Where things live:
//! - `commands`: one file per command; `cli` the arguments.
//! - [`ssh`]: how a host is reached: `resolve` decides route, user, keys and jump hosts (pure),
//!   `files` loads what it names, the [`ssh::connector`] opens the connections; the transport,
//!   OpenSSH config, `known_hosts`, sudo and secrets.
//! - [`host`]: what runs on a live host: reading its facts, applying a plan, reading its clock.
//! - `image`: golden images for `bake`: offline roots, libguestfs, image facts.
//! - [`fleet`]: the one fan-out engine; [`outcome`]: what each item's work came to;
//!   [`operations`]: plan and apply over the fleet; [`progress`]: the bar on stderr.
//! - Flat, pure modules: [`value`], [`inventory`], [`daemon`], [`render`], [`plan`],
//!   [`effective`] (what a daemon will really use, drop-ins included), `clock`, `check`
//!   (judging), `report` (every output).

// `pub` means "part of the library's API" (what examples/floor.rs and the integration tests
// use); everything else is `pub(crate)`, so that unused code shows up as dead. (Here rather
// than in Cargo.toml, whose [lints] would apply to the test crates' helper modules too.)
#![warn(unreachable_pub)]

pub(crate) mod ceph;
pub(crate) mod check;
// Spelled `pub` inside until their rewrites (issues 9, 10) land; crate-private all the same.
#[allow(unreachable_pub)]
pub(crate) mod cli;
#[allow(unreachable_pub)]
pub(crate) mod clock;
pub(crate) mod commands;
pub mod daemon;
pub mod effective;
pub mod fleet;
/// Entry points for the fuzz targets (`fuzz/`): the parsers of untrusted text, behind a facade.
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod glob;
pub mod host;
#[allow(unreachable_pub)]
pub(crate) mod image;
pub(crate) mod import;
pub mod inventory;
pub mod layout;
pub(crate) mod nofile;
pub mod nts;
pub mod operations;
pub mod outcome;
pub mod plan;
pub(crate) mod planfile;
pub mod progress;
#[cfg(test)]
mod proptests;
pub(crate) mod record;
pub mod render;
pub(crate) mod report;
pub(crate) mod shard;
#[allow(unreachable_pub)]
pub(crate) mod shell;
pub mod ssh;
pub mod suggest;
pub(crate) mod utc;
pub mod value;
pub mod vendor_sources;
pub mod yaml;

pub use commands::main;
