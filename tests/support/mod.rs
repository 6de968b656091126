//! Helpers shared by every test binary, each of which includes this whole module
//! (`#[path = "../support/mod.rs"] mod support;`): `clockprov` starts the binary (the only way
//! tests do), `hosts` the sshd test hosts, `lab` the VM lab, `guest` golden images and
//! libguestfs, `templates` template overrides.

pub mod clockprov;
pub mod guest;
pub mod hosts;
pub mod lab;
pub mod templates;
