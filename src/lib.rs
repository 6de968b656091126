//! clockprov: keep the clocks of a fleet of Linux hosts in step.
//!
//! The data flows one way: inventory -> desired state (render) -> facts (read from each host)
//! -> plan (pure diff) -> apply.

pub mod apply;
pub mod bake;
pub mod check;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod daemon;
pub mod facts;
pub mod fleet;
pub mod glob;
pub mod guestfs;
pub mod image;
pub mod inventory;
pub mod known_hosts;
pub mod plan;
pub mod privilege;
pub mod render;
pub mod report;
pub mod rootfs;
pub mod secret;
pub mod shell;
pub mod ssh;
pub mod ssh_config;
pub mod value;
