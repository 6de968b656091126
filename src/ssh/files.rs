//! The files connections need, read once each and shared by every host that names them: OpenSSH
//! configs, private keys (decrypted once), `known_hosts`. One cache for all three, and one
//! place that says a warning once per file or line, not once per host.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::ssh::config::{ConfigError, SshConfig};
use crate::ssh::connector::SetupError;
use crate::ssh::identity::{Identity, IdentityError, load_identity};
use crate::ssh::known_hosts::{KnownHosts, KnownHostsFile};
use crate::ssh::resolve::{ConfigSource, Identities};
use crate::ssh::secret::{KEY_PASSPHRASE_ENV, Secrets};

/// Files of one kind, each read at most once: a failure is remembered too, so that an optional
/// file that cannot be used is tried (and warned about) once.
struct Cache<T> {
    loaded: HashMap<PathBuf, Arc<T>>,
    failed: HashSet<PathBuf>,
}

impl<T> Default for Cache<T> {
    fn default() -> Self {
        Cache {
            loaded: HashMap::new(),
            failed: HashSet::new(),
        }
    }
}

impl<T> Cache<T> {
    /// The file at `path`, loaded by `load` the first time.
    fn get<E>(
        &mut self,
        path: &Path,
        load: impl FnOnce(&Path) -> Result<Arc<T>, E>,
    ) -> Result<Arc<T>, E> {
        if let Some(value) = self.loaded.get(path) {
            return Ok(value.clone());
        }
        let value = load(path).inspect_err(|_| {
            self.failed.insert(path.to_owned());
        })?;
        self.loaded.insert(path.to_owned(), value.clone());
        Ok(value)
    }

    /// Did loading `path` fail before?
    fn failed_before(&self, path: &Path) -> bool {
        self.failed.contains(path)
    }
}

/// The loader: every file a run's connections use.
pub(crate) struct Files<'s> {
    home: PathBuf,
    secrets: &'s Secrets,
    configs: Cache<SshConfig>,
    identities: Cache<Identity>,
    known_hosts: Cache<KnownHostsFile>,
    warned: HashSet<String>,
}

impl<'s> Files<'s> {
    /// `home` is where `~` points in configs; `secrets` decrypt keys.
    pub(crate) fn new(home: PathBuf, secrets: &'s Secrets) -> Files<'s> {
        Files {
            home,
            secrets,
            configs: Cache::default(),
            identities: Cache::default(),
            known_hosts: Cache::default(),
            warned: HashSet::new(),
        }
    }

    /// Log `message` at warning level, once per `key` (a file, or a file and line).
    pub(crate) fn warn_once(&mut self, key: &str, message: &str) {
        if self.warned.insert(key.to_owned()) {
            tracing::warn!("{message}");
        }
    }

    /// The keys to offer, loaded: a named key must load; a config's `IdentityFile` that does not
    /// exist is skipped, one that cannot be used is skipped with a warning; the default files are
    /// used when they exist and load without asking for a passphrase.
    ///
    /// # Errors
    /// The inventory's `identity_file` cannot be loaded.
    pub(crate) fn identities(
        &mut self,
        wanted: &Identities,
    ) -> Result<Vec<Arc<Identity>>, SetupError> {
        let named = &self.secrets.key_passphrase;
        let mut keys = Vec::new();
        match wanted {
            Identities::Named {
                path,
                written,
                location,
                field,
            } => {
                let key = self
                    .identities
                    .get(path, |p| load_identity(p, named))
                    .map_err(|error| SetupError::IdentityFile {
                        location: location.clone(),
                        field: field.clone(),
                        written: written.clone(),
                        resolved: std::path::absolute(path).unwrap_or_else(|_| path.clone()),
                        error: Box::new(error),
                    })?;
                keys.push(key);
            }
            Identities::FromConfig(files) => {
                for file in files {
                    if !file.value.exists() {
                        tracing::debug!(
                            "{}: IdentityFile {} does not exist",
                            file.loc,
                            file.value.display()
                        );
                        continue;
                    }
                    if self.identities.failed_before(&file.value) {
                        continue;
                    }
                    match self
                        .identities
                        .get(&file.value, |p| load_identity(p, named))
                    {
                        Ok(key) => keys.push(key),
                        Err(e) => tracing::warn!("{}: skipping IdentityFile: {e}", file.loc),
                    }
                }
            }
            Identities::Defaults(paths) => {
                // Never a terminal prompt for a key nobody named: an encrypted default key is
                // usually in the ssh-agent, which is tried next.
                let unnamed = named.without_terminal();
                for path in paths {
                    if !path.exists() || self.identities.failed_before(path) {
                        continue;
                    }
                    match self.identities.get(path, |p| load_identity(p, &unnamed)) {
                        Ok(key) => keys.push(key),
                        Err(e) => log_skipped_default(path, &e),
                    }
                }
            }
        }
        Ok(keys)
    }

    /// The `known_hosts` files that apply to a host: `user` (new keys go to the first), then
    /// `global` (a missing file is an empty one).
    ///
    /// # Errors
    /// One exists but cannot be read.
    pub(crate) fn known_hosts(
        &mut self,
        user: &[PathBuf],
        global: &[PathBuf],
    ) -> Result<Arc<KnownHosts>, SetupError> {
        let mut load = |paths: &[PathBuf]| {
            paths
                .iter()
                .map(|path| {
                    self.known_hosts
                        .get(path, |p| KnownHostsFile::load(p).map(Arc::new))
                        .map_err(|source| SetupError::KnownHosts {
                            path: path.clone(),
                            source,
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let user = load(user)?;
        let global = load(global)?;
        Ok(Arc::new(KnownHosts::new(user, global)))
    }
}

impl ConfigSource for Files<'_> {
    fn named(&mut self, path: &Path) -> Result<Arc<SshConfig>, ConfigError> {
        let home = self.home.clone();
        self.configs
            .get(path, |p| SshConfig::load(p, &home).map(Arc::new))
    }

    fn default_config(&mut self, path: &Path) -> Result<Option<Arc<SshConfig>>, ConfigError> {
        if !path.exists() {
            return Ok(None);
        }
        self.named(path).map(Some)
    }
}

fn log_skipped_default(path: &Path, error: &IdentityError) {
    if let IdentityError::NoPassphrase { .. } = error {
        tracing::info!(
            "skipping encrypted default identity {} (no {KEY_PASSPHRASE_ENV})",
            path.display()
        );
    } else {
        tracing::warn!("skipping default identity: {error}");
    }
}
