//! Golden images for `bake`: an offline root (a directory, or a disk image through libguestfs),
//! the facts read from it, and the bake plan and its execution.

pub mod bake;
pub mod facts;
pub mod guestfs;
pub mod rootfs;
