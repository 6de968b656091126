//! How a host is reached: the SSH transport (russh), the OpenSSH client config, `known_hosts`,
//! the identities that sign, the connector that decides route and credentials per host, sudo for
//! `become`, and secrets.

pub mod config;
pub mod connector;
pub(crate) mod files;
pub mod identity;
pub mod known_hosts;
pub(crate) mod resolve;
pub mod secret;
pub mod sudo;
pub mod transport;
