//! Credentials for fetching, taken from Kubernetes Secrets by the caller. Their `Debug` output
//! is redacted, and nothing in this crate formats them into a message.

use git2::{CertificateCheckStatus, Cred, CredentialType, RemoteCallbacks};

/// How to authenticate to the remote.
#[derive(Clone, Default)]
pub enum Credentials {
    /// Anonymous (file://, git://, public https).
    #[default]
    None,
    /// HTTPS basic auth with a token as the password (GitHub, GitLab, Gitea all accept this).
    Token {
        /// User name; most forges accept any non-empty name with a token (`git` by default).
        username: String,
        /// The token.
        token: String,
    },
    /// SSH with a private key, checking the server against `known_hosts`.
    Ssh {
        /// User name (usually `git`).
        username: String,
        /// PEM/OpenSSH private key.
        private_key: String,
        /// `known_hosts` lines; the server's key must match one of them.
        known_hosts: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::None => "Credentials::None",
            Credentials::Token { .. } => "Credentials::Token(<redacted>)",
            Credentials::Ssh { .. } => "Credentials::Ssh(<redacted>)",
        })
    }
}

impl Credentials {
    /// Callbacks that answer libgit2's credential and host-key questions with these credentials.
    pub(crate) fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut callbacks = RemoteCallbacks::new();
        let mut attempts = 0u32;
        callbacks.credentials(move |_url, username_from_url, allowed| {
            // libgit2 asks again after a refusal; answering the same forever would loop.
            attempts += 1;
            if attempts > 3 {
                return Err(git2::Error::from_str(
                    "authentication failed: check the credentials Secret",
                ));
            }
            match self {
                Credentials::Token { username, token }
                    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
                {
                    Cred::userpass_plaintext(username, token)
                }
                Credentials::Ssh {
                    username,
                    private_key,
                    ..
                } if allowed.contains(CredentialType::SSH_KEY) => {
                    Cred::ssh_key_from_memory(username_from_url.unwrap_or(username), None, private_key, None)
                }
                Credentials::Ssh { username, .. } if allowed.contains(CredentialType::USERNAME) => {
                    Cred::username(username)
                }
                _ => Err(git2::Error::from_str(
                    "the remote asks for credentials that are not configured",
                )),
            }
        });
        if let Credentials::Ssh { known_hosts, .. } = self {
            callbacks.certificate_check(move |cert, host| {
                let Some(hostkey) = cert.as_hostkey() else {
                    return Ok(CertificateCheckStatus::CertificatePassthrough);
                };
                let Some(key) = hostkey.hostkey() else {
                    return Err(git2::Error::from_str("the SSH server sent no host key"));
                };
                if known_host_matches(known_hosts, host, key) {
                    Ok(CertificateCheckStatus::CertificateOk)
                } else {
                    Err(git2::Error::from_str(
                        "the SSH host key is not in known_hosts: refusing to connect",
                    ))
                }
            });
        }
        callbacks
    }
}

/// Does a `known_hosts` text list `key` (raw, as sent by the server) for `host`?
/// Hashed host names (`|1|...`) are not supported; list plain names or `[host]:port`.
pub fn known_host_matches(known_hosts: &str, host: &str, key: &[u8]) -> bool {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(key);
    known_hosts
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .any(|line| {
            let mut fields = line.split_whitespace();
            let (Some(hosts), Some(_kind), Some(blob)) = (fields.next(), fields.next(), fields.next()) else {
                return false;
            };
            let host_listed = hosts.split(',').any(|h| {
                h == host
                    || h.strip_prefix('[')
                        .and_then(|h| h.split_once("]:"))
                        .is_some_and(|(name, _port)| name == host)
            });
            host_listed && blob == encoded
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credentials::Token {
            username: "git".into(),
            token: "ghp_supersecret".into(),
        };
        assert!(!format!("{c:?}").contains("supersecret"));
        let s = Credentials::Ssh {
            username: "git".into(),
            private_key: "-----BEGIN KEY".into(),
            known_hosts: String::new(),
        };
        assert!(!format!("{s:?}").contains("BEGIN"));
    }

    #[test]
    fn known_hosts_matching() {
        let key = b"\x00\x00\x00\x0bssh-ed25519key";
        let line = format!(
            "git.example.com,[127.0.0.1]:2222 ssh-ed25519 {}\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key)
        );
        assert!(known_host_matches(&line, "git.example.com", key));
        assert!(known_host_matches(&line, "127.0.0.1", key));
        assert!(!known_host_matches(&line, "evil.example.com", key));
        assert!(!known_host_matches(&line, "git.example.com", b"other"));
        assert!(!known_host_matches("# comment only", "git.example.com", key));
    }
}
