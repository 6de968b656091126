//! An identity: a private key read once for a run, ready to sign the public-key authentication
//! of every host it is offered to.
//!
//! Why clockprov signs Ed25519 itself rather than handing russh the key: ssh-key derives the
//! signing key from the stored secret again for every signature (hash the seed, then a
//! base-point multiplication to check the pair), about a twelfth of the client's instructions
//! per host. Here an Ed25519 key is expanded once (ring's key pair, checked against the file's
//! public half) and each host's request is signed through russh's `Signer` hook. Other key
//! types go through russh as before.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ring::signature::Ed25519KeyPair;
use russh::keys::agent::AgentIdentity;
use russh::keys::ssh_key::private::KeypairData;
use russh::keys::{HashAlg, PrivateKey};

use crate::ssh::secret::KeyPassphrase;

/// A private key loaded for a run.
pub struct Identity {
    key: Arc<PrivateKey>,
    /// The Ed25519 key expanded once; `None` for other key types.
    ed25519: Option<Ed25519KeyPair>,
}

impl Identity {
    #[must_use]
    pub fn new(key: PrivateKey) -> Identity {
        let ed25519 = match key.key_data() {
            KeypairData::Ed25519(pair) => {
                // A file whose public half does not match its secret is refused here, and then
                // offered through russh, which reports it as it always did.
                Ed25519KeyPair::from_seed_and_public_key(
                    pair.private.as_ref(),
                    pair.public.as_ref(),
                )
                .ok()
            }
            _ => None,
        };
        Identity {
            key: Arc::new(key),
            ed25519,
        }
    }

    /// The key as read (comment: the file it came from).
    #[must_use]
    pub fn key(&self) -> &Arc<PrivateKey> {
        &self.key
    }

    /// A signer for russh's `authenticate_publickey_with`, for an Ed25519 key.
    #[must_use]
    pub fn expanded_ed25519(&self) -> Option<ExpandedEd25519<'_>> {
        self.ed25519.as_ref().map(ExpandedEd25519)
    }
}

/// Signs a public-key authentication request with an Ed25519 key expanded once.
pub struct ExpandedEd25519<'a>(&'a Ed25519KeyPair);

impl ExpandedEd25519<'_> {
    /// `to_sign` (the session id and the request, as russh built it) with its signature blob
    /// appended, in the wire form of RFC 8709: string "ssh-ed25519", string signature.
    fn signed(&self, mut to_sign: Vec<u8>) -> Vec<u8> {
        const ALGORITHM: &[u8] = b"ssh-ed25519";
        let signature = self.0.sign(&to_sign);
        let signature = signature.as_ref();
        let blob_len = 4 + ALGORITHM.len() + 4 + signature.len();
        to_sign.reserve(4 + blob_len);
        for part in [&u32_be(blob_len), &u32_be(ALGORITHM.len()), ALGORITHM] {
            to_sign.extend_from_slice(part);
        }
        to_sign.extend_from_slice(&u32_be(signature.len()));
        to_sign.extend_from_slice(signature);
        to_sign
    }
}

fn u32_be(n: usize) -> [u8; 4] {
    u32::try_from(n)
        .expect("an Ed25519 signature blob is under 100 bytes")
        .to_be_bytes()
}

impl russh::Signer for ExpandedEd25519<'_> {
    // Signing cannot fail; only handing the result to the session can.
    type Error = russh::SendError;

    fn auth_sign(
        &mut self,
        _key: &AgentIdentity,
        _hash_alg: Option<HashAlg>,
        to_sign: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, Self::Error>> + Send {
        std::future::ready(Ok(self.signed(to_sign)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    // The causes are in the messages and not chained as sources: `{:#}` would print them twice.
    #[error("cannot read identity file {}: {}", .path.display(), crate::inventory::io_reason(.error))]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("identity file {} is not a private key clockprov can use: {error}", .path.display())]
    Decode {
        path: PathBuf,
        error: russh::keys::Error,
    },
    #[error(
        "identity file {} is encrypted and no passphrase was given: set {} or run on a terminal to be asked",
        .path.display(), crate::ssh::secret::KEY_PASSPHRASE_ENV
    )]
    NoPassphrase { path: PathBuf },
    #[error("wrong passphrase for identity file {} (from {from})", .path.display())]
    WrongPassphrase { path: PathBuf, from: &'static str },
}

/// Read a private key for authentication, decrypting it with a passphrase from `passphrase`
/// when it is encrypted.
///
/// # Errors
/// The file cannot be read or decoded, or it is encrypted and the passphrase is missing or wrong.
pub fn load_identity(
    path: &Path,
    passphrase: &KeyPassphrase,
) -> Result<Arc<Identity>, IdentityError> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|error| {
        IdentityError::Read {
            path: path.to_owned(),
            error,
        }
    })?);
    let mut key = match russh::keys::decode_secret_key(&text, None) {
        Ok(key) => key,
        Err(russh::keys::Error::KeyIsEncrypted) => {
            let secret = passphrase
                .for_key(path)
                .ok_or_else(|| IdentityError::NoPassphrase {
                    path: path.to_owned(),
                })?;
            russh::keys::decode_secret_key(&text, Some(secret.expose())).map_err(|_| {
                IdentityError::WrongPassphrase {
                    path: path.to_owned(),
                    from: passphrase.origin_name(),
                }
            })?
        }
        Err(error) => {
            return Err(IdentityError::Decode {
                path: path.to_owned(),
                error,
            });
        }
    };
    // The comment is never sent to a host (public-key authentication sends the key only): it
    // names the file in `-v` logs, which say which key was offered and which was accepted.
    key.set_comment(path.display().to_string());
    tracing::debug!(
        "identity {}: {} key {}",
        path.display(),
        key.algorithm(),
        key.public_key()
            .fingerprint(russh::keys::HashAlg::default())
    );
    Ok(Arc::new(Identity::new(key)))
}

#[cfg(test)]
mod tests {
    use russh::keys::signature::Signer as _;
    use russh::keys::ssh_encoding::Encode as _;
    use russh::keys::ssh_key::private::Ed25519Keypair;

    use super::*;

    /// A throwaway test key (`ssh-keygen -t ecdsa`), for a type clockprov leaves to russh.
    const ECDSA: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAaAAAABNlY2RzYS
1zaGEyLW5pc3RwMjU2AAAACG5pc3RwMjU2AAAAQQSYmOmF9ZTeJf+a1F+fNnqC9ut7DsNe
g51ZS5+mV0Shgmr/qH184Aif2Qh9mJ69Co+jv9rnophorPUW2t+WlUsDAAAAoJsMkzCbDJ
MwAAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBJiY6YX1lN4l/5rU
X582eoL263sOw16DnVlLn6ZXRKGCav+ofXzgCJ/ZCH2Ynr0Kj6O/2ueimGis9Rba35aVSw
MAAAAgZIwtYt6EUeid8Q92uxq0XxUmxyekWVAUMeBlLTPHIRoAAAAEdGVzdAECAwQ=
-----END OPENSSH PRIVATE KEY-----
";

    #[test]
    fn an_expanded_ed25519_key_signs_byte_for_byte_as_russh_would() {
        for seed in [1, 7, 200] {
            let key = PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]));
            let identity = Identity::new(key.clone());
            let signer = identity
                .expanded_ed25519()
                .expect("an Ed25519 key is expanded");
            for data in [&b""[..], b"session id, then the request", &[0xA5; 300]] {
                // What russh appends for a key it signs itself: the signature blob as a string.
                let mut expected = data.to_vec();
                let signature: russh::keys::ssh_key::Signature = key.try_sign(data).unwrap();
                signature
                    .encode_vec()
                    .unwrap()
                    .encode(&mut expected)
                    .unwrap();
                assert_eq!(signer.signed(data.to_vec()), expected, "seed {seed}");
            }
        }
    }

    #[test]
    fn other_key_types_and_a_key_whose_halves_differ_are_left_to_russh() {
        let ecdsa = russh::keys::decode_secret_key(ECDSA, None).unwrap();
        assert!(Identity::new(ecdsa).expanded_ed25519().is_none());
        let mut mismatched = Ed25519Keypair::from_seed(&[1; 32]);
        mismatched.public = Ed25519Keypair::from_seed(&[2; 32]).public;
        let identity = Identity::new(PrivateKey::from(mismatched));
        assert!(identity.expanded_ed25519().is_none());
    }
}
