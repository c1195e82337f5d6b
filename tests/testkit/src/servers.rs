//! The git servers users run, from Debian's packages, on loopback:
//! - [`HttpsGit`]: smart HTTP (`git http-backend`) behind lighttpd, with TLS from a private CA
//!   made here and basic auth;
//! - [`SshGit`]: a real `sshd` with its own host keys (ed25519, ECDSA, RSA) and one authorised
//!   deploy key.
//!
//! `tests/run.sh` installs `lighttpd`, `lighttpd-mod-openssl` and `openssh-server`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};

fn run(program: &str, args: &[&str], dir: &Path) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("run {program}"))?;
    ensure!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_listening(port: u16, child: &mut Child, what: &str) -> anyhow::Result<()> {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what} did not listen on {port}")
}

/// A private CA and a certificate it signed for 127.0.0.1 and localhost.
#[derive(Debug)]
pub struct PrivateCa {
    /// The CA certificate (PEM): what users put in the git Secret as `ca.crt`.
    pub ca_pem: String,
    /// Server certificate and key files.
    pub cert: PathBuf,
    /// The server's key.
    pub key: PathBuf,
}

impl PrivateCa {
    /// Makes a CA named `name` in `dir` and signs a server certificate with it.
    pub fn make(dir: &Path, name: &str) -> anyhow::Result<Self> {
        let subject = format!("/CN={name}");
        run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                &subject,
            ],
            dir,
        )?;
        run(
            "openssl",
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
            dir,
        )?;
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )?;
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
            dir,
        )?;
        Ok(Self {
            ca_pem: std::fs::read_to_string(dir.join("ca.crt"))?,
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
        })
    }
}

/// Smart HTTP over TLS with basic auth: `git http-backend` as CGI under lighttpd.
#[derive(Debug)]
pub struct HttpsGit {
    child: Child,
    /// Port it listens on (127.0.0.1).
    pub port: u16,
    /// The CA that signed its certificate.
    pub ca: PrivateCa,
    _dir: tempfile::TempDir,
}

impl HttpsGit {
    /// Serves every repository under `root` at `https://127.0.0.1:PORT/git/<repo>`, to `user`
    /// with password `token` only (fetch and push).
    pub fn start(root: &Path, user: &str, token: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let ca = PrivateCa::make(dir.path(), "Ship test CA")?;
        let port = crate::ports::free_port()?;
        std::fs::write(dir.path().join("users"), format!("{user}:{token}\n"))?;
        let backend =
            Path::new(&run("git", &["--exec-path"], root)?.trim().to_owned()).join("git-http-backend");
        let config = format!(
            r#"server.modules = ("mod_alias", "mod_auth", "mod_authn_file", "mod_cgi", "mod_setenv", "mod_openssl")
server.bind = "127.0.0.1"
server.port = {port}
server.document-root = "{root}"
server.errorlog = "{dir}/error.log"
server.pid-file = "{dir}/lighttpd.pid"
ssl.engine = "enable"
ssl.pemfile = "{cert}"
ssl.privkey = "{key}"
alias.url = ("/git" => "{backend}")
$HTTP["url"] =~ "^/git" {{
  cgi.assign = ("" => "")
  setenv.add-environment = ("GIT_PROJECT_ROOT" => "{root}", "GIT_HTTP_EXPORT_ALL" => "1")
  auth.backend = "plain"
  auth.backend.plain.userfile = "{dir}/users"
  auth.require = ("" => ("method" => "basic", "realm" => "git", "require" => "valid-user"))
}}
"#,
            root = root.display(),
            dir = dir.path().display(),
            cert = ca.cert.display(),
            key = ca.key.display(),
            backend = backend.display(),
        );
        let conf = dir.path().join("lighttpd.conf");
        std::fs::write(&conf, config)?;
        let mut child = Command::new("/usr/sbin/lighttpd")
            .arg("-D")
            .arg("-f")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start lighttpd (tests/run.sh installs it)")?;
        wait_listening(port, &mut child, "lighttpd")?;
        Ok(Self {
            child,
            port,
            ca,
            _dir: dir,
        })
    }

    /// The URL of `repo` (a path under the root).
    pub fn url(&self, repo: &str) -> String {
        format!("https://127.0.0.1:{}/git/{repo}", self.port)
    }
}

impl Drop for HttpsGit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// sshd in the foreground with the configuration in `dir`.
fn sshd(dir: &Path) -> anyhow::Result<Child> {
    Command::new("/usr/sbin/sshd")
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(dir.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start sshd (tests/run.sh installs openssh-server)")
}

/// A real `sshd` on loopback that lets one deploy key in, as root, to run git.
#[derive(Debug)]
pub struct SshGit {
    child: Child,
    /// Port it listens on (127.0.0.1).
    pub port: u16,
    /// The deploy key's private half (OpenSSH format): the git Secret's `identity`.
    pub identity: String,
    dir: tempfile::TempDir,
}

impl SshGit {
    /// Starts sshd with fresh host keys of three types and a fresh ed25519 deploy key.
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        for kind in ["ed25519", "ecdsa", "rsa"] {
            run(
                "ssh-keygen",
                &["-q", "-t", kind, "-N", "", "-f", &format!("host_{kind}")],
                d,
            )?;
        }
        run(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "ship-deploy-key",
                "-f",
                "deploy",
            ],
            d,
        )?;
        std::fs::copy(d.join("deploy.pub"), d.join("authorized_keys"))?;
        // sshd's privilege separation needs this directory (Debian's package creates it at boot).
        std::fs::create_dir_all("/run/sshd")?;
        let port = crate::ports::free_port()?;
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nHostKey {d}/host_ecdsa\n\
             HostKey {d}/host_rsa\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n\
             StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             PermitRootLogin prohibit-password\nLogLevel ERROR\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config)?;
        let mut child = sshd(d)?;
        wait_listening(port, &mut child, "sshd")?;
        Ok(Self {
            child,
            port,
            identity: std::fs::read_to_string(d.join("deploy"))?,
            dir,
        })
    }

    /// `ssh-keyscan` of this server: every host key type, host names hashed (`-H`), as users
    /// paste it into the git Secret's `known_hosts`.
    pub fn keyscan(&self) -> anyhow::Result<String> {
        let port = self.port.to_string();
        let scanned = run("ssh-keyscan", &["-H", "-p", &port, "127.0.0.1"], self.dir.path())?;
        ensure!(
            scanned.lines().count() >= 3,
            "ssh-keyscan found too few keys: {scanned}"
        );
        Ok(scanned)
    }

    /// Replaces the server's ed25519 host key (a server rebuilt, or someone in the middle), and
    /// serves only that type, so a client that knew the old key sees it changed.
    pub fn change_host_key(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let d = self.dir.path();
        std::fs::remove_file(d.join("host_ed25519"))?;
        run(
            "ssh-keygen",
            &["-q", "-t", "ed25519", "-N", "", "-f", "host_ed25519"],
            d,
        )?;
        let config = std::fs::read_to_string(d.join("sshd_config"))?
            .lines()
            .filter(|l| !l.contains("host_ecdsa") && !l.contains("host_rsa"))
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(d.join("sshd_config"), config + "\n")?;
        self.child = sshd(d)?;
        wait_listening(self.port, &mut self.child, "sshd")
    }

    /// The URL of the repository at `path` (absolute).
    pub fn url(&self, path: &Path) -> String {
        format!("ssh://root@127.0.0.1:{}{}", self.port, path.display())
    }
}

impl Drop for SshGit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
