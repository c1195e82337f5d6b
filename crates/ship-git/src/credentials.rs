//! Credentials for fetching and pushing, taken from Kubernetes Secrets by the caller, and the
//! checks of who the server is (SSH `known_hosts`, an HTTPS CA bundle). Their `Debug` output is
//! redacted, and nothing in this crate formats them into a message.

use std::cell::Cell;

use git2::{CertificateCheckStatus, Cred, CredentialType, RemoteCallbacks};
use hmac::{Hmac, Mac};

/// How to authenticate to the remote.
#[derive(Clone, Default)]
pub enum Credentials {
    /// Anonymous (file://, git://, public https).
    #[default]
    None,
    /// Anonymous HTTPS to a server whose certificate is signed by a CA of `ca_bundle` (a
    /// self-hosted server with a private CA).
    Anonymous {
        /// PEM certificates trusted besides the system's.
        ca_bundle: String,
    },
    /// HTTPS basic auth with a token as the password (GitHub, GitLab, Gitea all accept this).
    Token {
        /// User name; most forges accept any non-empty name with a token (`git` by default).
        username: String,
        /// The token.
        token: String,
        /// PEM certificates trusted besides the system's (a private CA), if any.
        ca_bundle: Option<String>,
    },
    /// SSH with a private key, checking the server against `known_hosts`.
    Ssh {
        /// User name (usually `git`).
        username: String,
        /// PEM/OpenSSH private key.
        private_key: String,
        /// `known_hosts` lines, as `ssh-keyscan` prints them (hashed or not); the server's key
        /// must match one of them.
        known_hosts: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::None => "Credentials::None",
            Credentials::Anonymous { .. } => "Credentials::Anonymous(<ca bundle>)",
            Credentials::Token { .. } => "Credentials::Token(<redacted>)",
            Credentials::Ssh { .. } => "Credentials::Ssh(<redacted>)",
        })
    }
}

/// Why the remote was refused, or refused us: recorded by the callbacks, so the error names a
/// fixed cause (libgit2's own messages vary by transport and version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server's credentials check failed (a wrong or expired token, a key not authorised).
    AuthenticationFailed,
    /// No `known_hosts` line names the SSH server.
    HostKeyUnknown,
    /// `known_hosts` lists the SSH server with another key of the same type: it changed.
    HostKeyChanged,
    /// `known_hosts` marks the server's key `@revoked`.
    HostKeyRevoked,
    /// The HTTPS server's certificate is not signed by a trusted CA (system or CA bundle), or
    /// does not name the host.
    CertificateUntrusted,
}

impl Refusal {
    /// Stable label for conditions, metrics and event reasons.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::AuthenticationFailed => "AuthenticationFailed",
            Refusal::HostKeyUnknown => "HostKeyUnknown",
            Refusal::HostKeyChanged => "HostKeyChanged",
            Refusal::HostKeyRevoked => "HostKeyRevoked",
            Refusal::CertificateUntrusted => "CertificateUntrusted",
        }
    }

    /// What to do about it, in a sentence.
    pub fn advice(self) -> &'static str {
        match self {
            Refusal::AuthenticationFailed => {
                "the remote refused the credentials: check the token or deploy key in the git Secret"
            }
            Refusal::HostKeyUnknown => {
                "the SSH server's host key is not in known_hosts: add the output of `ssh-keyscan` to the git Secret's known_hosts"
            }
            Refusal::HostKeyChanged => {
                "the SSH server's host key CHANGED since known_hosts was written: refusing to connect; if the change is expected, update known_hosts in the git Secret"
            }
            Refusal::HostKeyRevoked => {
                "the SSH server's host key is marked @revoked in known_hosts: refusing to connect"
            }
            Refusal::CertificateUntrusted => {
                "the HTTPS server's certificate is not trusted: add its CA to the git Secret as ca.crt"
            }
        }
    }
}

/// Where the callbacks write why they refused.
pub type RefusalCell = Cell<Option<Refusal>>;

impl Credentials {
    fn ca_bundle(&self) -> Option<&str> {
        match self {
            Credentials::Anonymous { ca_bundle } => Some(ca_bundle),
            Credentials::Token { ca_bundle, .. } => ca_bundle.as_deref(),
            _ => None,
        }
    }

    /// Callbacks that answer libgit2's credential and server-identity questions for `url`,
    /// recording in `refused` why they said no.
    pub(crate) fn callbacks<'a>(&'a self, url: &str, refused: &'a RefusalCell) -> RemoteCallbacks<'a> {
        let mut callbacks = RemoteCallbacks::new();
        let mut attempts = 0u32;
        callbacks.credentials(move |_url, username_from_url, allowed| {
            // libgit2 asks again only after the server refused what was given: never offer the
            // same secret twice (a loop, and a lockout on some servers).
            attempts += 1;
            if attempts > 1 {
                refused.set(Some(Refusal::AuthenticationFailed));
                return Err(git2::Error::from_str(Refusal::AuthenticationFailed.advice()));
            }
            match self {
                Credentials::Token { username, token, .. }
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
                _ => {
                    refused.set(Some(Refusal::AuthenticationFailed));
                    Err(git2::Error::from_str(
                        "the remote asks for credentials that are not configured: set --git-secret",
                    ))
                }
            }
        });
        let port = ssh_port(url);
        let ca_bundle = self.ca_bundle();
        let known_hosts = match self {
            Credentials::Ssh { known_hosts, .. } => Some(known_hosts.as_str()),
            _ => None,
        };
        callbacks.certificate_check(move |cert, host| {
            if let Some(hostkey) = cert.as_hostkey() {
                let Some(known_hosts) = known_hosts else {
                    // SSH without Ship's SSH credentials: libgit2 decides (it refuses).
                    return Ok(CertificateCheckStatus::CertificatePassthrough);
                };
                let Some(key) = hostkey.hostkey() else {
                    refused.set(Some(Refusal::HostKeyUnknown));
                    return Err(git2::Error::from_str("the SSH server sent no host key"));
                };
                let verdict = check_known_hosts(known_hosts, host, port, key);
                return match verdict.refusal() {
                    None => Ok(CertificateCheckStatus::CertificateOk),
                    Some(why) => {
                        refused.set(Some(why));
                        Err(git2::Error::from_str(why.advice()))
                    }
                };
            }
            let (Some(x509), Some(bundle)) = (cert.as_x509(), ca_bundle) else {
                // No CA bundle: the system's trust store decides, as git would.
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            if trusted_by_bundle(x509.data(), host, bundle) {
                Ok(CertificateCheckStatus::CertificateOk)
            } else {
                // Not by the bundle; the system's store may still trust it (a public host).
                refused.set(Some(Refusal::CertificateUntrusted));
                Ok(CertificateCheckStatus::CertificatePassthrough)
            }
        });
        callbacks
    }
}

/// The SSH port of `url` (`ssh://host:port/...`; 22 otherwise, as for `git@host:path`).
fn ssh_port(url: &str) -> u16 {
    url.strip_prefix("ssh://")
        .and_then(|rest| rest.split('/').next())
        .map(|authority| authority.rsplit_once('@').map_or(authority, |(_, h)| h))
        .and_then(|host| host.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(22)
}

/// Does `bundle` (PEM) hold a CA that signed `leaf` (DER) for `host`, valid now?
fn trusted_by_bundle(leaf: &[u8], host: &str, bundle: &str) -> bool {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(bundle.as_bytes())
        .filter_map(Result::ok)
        .collect();
    let anchors: Vec<_> = cas
        .iter()
        .filter_map(|ca| webpki::anchor_from_trusted_cert(ca).ok())
        .collect();
    let leaf = CertificateDer::from(leaf);
    let Ok(end_entity) = webpki::EndEntityCert::try_from(&leaf) else {
        return false;
    };
    let verified = end_entity.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &[],
        UnixTime::now(),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    );
    let Ok(name) = ServerName::try_from(host) else {
        return false;
    };
    verified.is_ok() && end_entity.verify_is_valid_for_subject_name(&name).is_ok()
}

/// What `known_hosts` says of a server's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyVerdict {
    /// Listed for the host.
    Known,
    /// The host is not listed with a key of this type.
    Unknown,
    /// The host is listed with another key of the same type.
    Changed,
    /// The key is marked `@revoked`.
    Revoked,
}

impl HostKeyVerdict {
    fn refusal(self) -> Option<Refusal> {
        match self {
            HostKeyVerdict::Known => None,
            HostKeyVerdict::Unknown => Some(Refusal::HostKeyUnknown),
            HostKeyVerdict::Changed => Some(Refusal::HostKeyChanged),
            HostKeyVerdict::Revoked => Some(Refusal::HostKeyRevoked),
        }
    }
}

/// The key type named inside an SSH public key blob (`ssh-ed25519`, `ecdsa-sha2-nistp256`, ...).
fn key_type(blob: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    blob.get(4..4 + len)
}

/// Does one `known_hosts` host field (comma-separated patterns, or one hashed `|1|salt|hash`)
/// name `name` (`host`, or `[host]:port` for a port other than 22)?
fn host_field_matches(field: &str, name: &str) -> bool {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Some(hashed) = field.strip_prefix("|1|") {
        let Some((salt, hash)) = hashed.split_once('|') else {
            return false;
        };
        let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
            return false;
        };
        mac.update(name.as_bytes());
        return mac.verify_slice(&hash).is_ok();
    }
    let mut matched = false;
    for pattern in field.split(',') {
        match pattern.strip_prefix('!') {
            // A negated pattern that matches excludes the host, whatever else matches.
            Some(negated) if glob(negated, name) => return false,
            Some(_) => {}
            None => matched |= glob(pattern, name),
        }
    }
    matched
}

/// OpenSSH's host patterns: `*` any run of characters, `?` one character; case-insensitive.
fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// What `known_hosts` (OpenSSH's format, as `ssh-keyscan` writes it: plain or hashed host
/// names, `[host]:port`, patterns, several key types, `@revoked`) says of `key` (raw, as the
/// server sent it) for `host` on `port`. `@cert-authority` lines are not supported and ignored.
pub fn check_known_hosts(known_hosts: &str, host: &str, port: u16, key: &[u8]) -> HostKeyVerdict {
    use base64::Engine as _;
    let name = if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    };
    let kind = key_type(key);
    let mut verdict = HostKeyVerdict::Unknown;
    for line in known_hosts.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace().peekable();
        let marker = fields.next_if(|f| f.starts_with('@'));
        let (Some(hosts), Some(_kind), Some(blob)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if marker == Some("@cert-authority") || !host_field_matches(hosts, &name) {
            continue;
        }
        let Ok(listed) = base64::engine::general_purpose::STANDARD.decode(blob) else {
            continue;
        };
        let same_key = listed == key;
        match marker {
            Some("@revoked") if same_key => return HostKeyVerdict::Revoked,
            Some(_) => {}
            None if same_key => verdict = HostKeyVerdict::Known,
            None if key_type(&listed) == kind && verdict == HostKeyVerdict::Unknown => {
                verdict = HostKeyVerdict::Changed;
            }
            None => {}
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn blob(kind: &str, body: &[u8]) -> Vec<u8> {
        let mut b = (kind.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind.as_bytes());
        b.extend_from_slice(body);
        b
    }

    fn line(hosts: &str, key: &[u8]) -> String {
        let kind = String::from_utf8_lossy(key_type(key).unwrap()).into_owned();
        format!(
            "{hosts} {kind} {}\n",
            base64::engine::general_purpose::STANDARD.encode(key)
        )
    }

    fn hashed(name: &str, salt: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(salt).unwrap();
        mac.update(name.as_bytes());
        format!(
            "|1|{}|{}",
            b64.encode(salt),
            b64.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credentials::Token {
            username: "git".into(),
            token: "ghp_supersecret".into(),
            ca_bundle: None,
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
    fn known_hosts_as_ssh_keyscan_writes_them() {
        let ed = blob("ssh-ed25519", b"server-ed25519");
        let rsa = blob("ssh-rsa", b"server-rsa");
        let plain = line("git.example.com,[127.0.0.1]:2222", &ed) + &line("git.example.com", &rsa);
        use HostKeyVerdict::*;
        assert_eq!(check_known_hosts(&plain, "git.example.com", 22, &ed), Known);
        assert_eq!(
            check_known_hosts(&plain, "git.example.com", 22, &rsa),
            Known,
            "several key types"
        );
        assert_eq!(
            check_known_hosts(&plain, "127.0.0.1", 2222, &ed),
            Known,
            "[host]:port"
        );
        assert_eq!(
            check_known_hosts(&plain, "127.0.0.1", 22, &ed),
            Unknown,
            "another port is another host"
        );
        assert_eq!(check_known_hosts(&plain, "evil.example.com", 22, &ed), Unknown);
        let other = blob("ssh-ed25519", b"an attacker's key");
        assert_eq!(check_known_hosts(&plain, "git.example.com", 22, &other), Changed);
        let ecdsa = blob("ecdsa-sha2-nistp256", b"new type");
        assert_eq!(
            check_known_hosts(&plain, "git.example.com", 22, &ecdsa),
            Unknown,
            "a type not listed is unknown, not changed"
        );
        assert_eq!(
            check_known_hosts("# comment only\n\n", "git.example.com", 22, &ed),
            Unknown
        );

        // `ssh-keyscan -H`: hashed names, with the port in brackets.
        let hashed_lines = line(&hashed("[127.0.0.1]:2222", b"0123456789abcdefghij"), &ed);
        assert_eq!(check_known_hosts(&hashed_lines, "127.0.0.1", 2222, &ed), Known);
        assert_eq!(check_known_hosts(&hashed_lines, "127.0.0.1", 22, &ed), Unknown);
        assert_eq!(
            check_known_hosts(&hashed_lines, "127.0.0.1", 2222, &other),
            Changed
        );

        // Patterns, negation, markers.
        let patterns = line("*.example.com,!evil.example.com", &ed);
        assert_eq!(check_known_hosts(&patterns, "git.example.com", 22, &ed), Known);
        assert_eq!(check_known_hosts(&patterns, "evil.example.com", 22, &ed), Unknown);
        let revoked = format!("@revoked {}", line("git.example.com", &ed)) + &plain;
        assert_eq!(check_known_hosts(&revoked, "git.example.com", 22, &ed), Revoked);
        let ca = format!("@cert-authority {}", line("*", &other));
        assert_eq!(check_known_hosts(&ca, "git.example.com", 22, &other), Unknown);
    }

    #[test]
    fn the_ssh_port_comes_from_the_url() {
        assert_eq!(ssh_port("ssh://git@127.0.0.1:2222/srv/repo.git"), 2222);
        assert_eq!(ssh_port("ssh://git@git.example.com/repo.git"), 22);
        assert_eq!(ssh_port("git@github.com:org/repo.git"), 22);
        assert_eq!(ssh_port("https://git.example.com:8443/repo.git"), 22);
    }
}
