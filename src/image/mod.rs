//! Golden images for `bake`: an offline root (a directory, or a disk image through libguestfs,
//! or a libvirt domain's disks), the facts read from it, and the bake plan and its execution.

pub mod bake;
pub mod facts;
pub mod guestfs;
pub mod libvirt;
pub mod path;
pub mod rootfs;
