//! clockprov: keep the clocks of a fleet of Linux hosts in step.
//!
//! The data flows one way: inventory -> desired state (render) -> facts (read from each host)
//! -> plan (pure diff) -> apply.
//!
//! Where things live:
//! - [`commands`]: one file per command; [`cli`] the arguments.
//! - [`ssh`]: how a host is reached: the transport, OpenSSH config, `known_hosts`, the connector
//!   (routes, jump hosts), sudo and secrets.
//! - [`host`]: what runs on a live host: reading its facts, applying a plan, reading its clock.
//! - [`image`]: golden images for `bake`: offline roots, libguestfs, image facts.
//! - Flat, pure modules: [`value`], [`inventory`], [`daemon`], [`render`], [`plan`], [`clock`],
//!   [`check`] (judging), [`report`] (output), and [`fleet`] (the bounded fan-out).

pub mod check;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod daemon;
pub mod fleet;
pub mod glob;
pub mod host;
pub mod image;
pub mod inventory;
pub mod plan;
pub mod render;
pub mod report;
pub mod shell;
pub mod ssh;
pub mod suggest;
pub mod value;
pub mod yaml;
