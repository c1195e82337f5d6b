//! Real git repositories and a real `git daemon` on loopback, driven with the `git` CLI.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// Runs `git args` in `dir` and returns its trimmed stdout; fails with stderr on error.
pub fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ship Test")
        .env("GIT_AUTHOR_EMAIL", "test@ship.invalid")
        .env("GIT_COMMITTER_NAME", "Ship Test")
        .env("GIT_COMMITTER_EMAIL", "test@ship.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .context("cannot run git")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A bare "server" repository plus a working clone to commit and push from.
#[derive(Debug)]
pub struct Remote {
    /// Temporary directory holding both.
    pub dir: tempfile::TempDir,
    /// The bare repository (what Ship fetches from).
    pub bare: PathBuf,
    /// The working clone.
    pub work: PathBuf,
}

impl Remote {
    /// A bare repository `repo.git` with `main` and `production` branches at one first commit.
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let bare = dir.path().join("repo.git");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work)?;
        git(
            dir.path(),
            &[
                "init",
                "-q",
                "--bare",
                "-b",
                "main",
                bare.to_str().unwrap_or_default(),
            ],
        )?;
        // As GitHub and GitLab do: a commit no branch reaches any more is still served by id
        // (Ship fetches a rollback target that way after a history rewrite).
        git(&bare, &["config", "uploadpack.allowAnySHA1InWant", "true"])?;
        git(&work, &["init", "-q", "-b", "main"])?;
        git(
            &work,
            &["remote", "add", "origin", bare.to_str().unwrap_or_default()],
        )?;
        let remote = Self { dir, bare, work };
        remote.commit_file("README.md", "hello\n", "first commit")?;
        git(&remote.work, &["push", "-q", "origin", "main", "main:production"])?;
        Ok(remote)
    }

    /// `file://` URL of the bare repository.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// Writes `path` with `content` in the working clone and commits it on the current branch.
    /// Returns the new commit SHA.
    pub fn commit_file(&self, path: &str, content: &str, message: &str) -> anyhow::Result<String> {
        self.commit_files(&[(path, content)], message)
    }

    /// Writes every `(path, content)` (an empty content deletes the file) and commits them as
    /// one commit. Returns the new commit SHA.
    pub fn commit_files(&self, files: &[(&str, &str)], message: &str) -> anyhow::Result<String> {
        for (path, content) in files {
            let file = self.work.join(path);
            if content.is_empty() {
                let _ = std::fs::remove_file(&file);
                continue;
            }
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&file, content)?;
        }
        git(&self.work, &["add", "-A"])?;
        git(&self.work, &["commit", "-q", "-m", message])?;
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Pushes the working clone's HEAD to `branch` (forcing when `force`).
    pub fn push(&self, branch: &str, force: bool) -> anyhow::Result<()> {
        let refspec = format!("{}HEAD:refs/heads/{branch}", if force { "+" } else { "" });
        git(&self.work, &["push", "-q", "origin", &refspec]).map(drop)
    }

    /// Runs `git` in the working clone.
    pub fn git(&self, args: &[&str]) -> anyhow::Result<String> {
        git(&self.work, args)
    }
}

/// A real `git daemon` serving a directory on 127.0.0.1 (or another local address), killed on
/// drop.
#[derive(Debug)]
pub struct GitDaemon {
    child: Child,
    /// Port it listens on.
    pub port: u16,
    /// Address it listens on.
    pub host: std::net::IpAddr,
    base: PathBuf,
}

impl GitDaemon {
    /// Serves every repository under `base` on a free port.
    pub fn start(base: &Path) -> anyhow::Result<Self> {
        Self::start_on(base, crate::process::free_port()?)
    }

    /// Serves `base` on `host` (for example the node's address, which pods reach) and a free port.
    pub fn start_at(base: &Path, host: std::net::IpAddr) -> anyhow::Result<Self> {
        Self::listen(base, host, crate::process::free_port()?)
    }

    /// Serves `base` on `port` (to come back on the same address after [`GitDaemon::stop`]).
    pub fn start_on(base: &Path, port: u16) -> anyhow::Result<Self> {
        Self::listen(base, std::net::Ipv4Addr::LOCALHOST.into(), port)
    }

    fn listen(base: &Path, host: std::net::IpAddr, port: u16) -> anyhow::Result<Self> {
        // Run git-daemon itself: `git daemon` would leave it behind as a grandchild on kill.
        let exec_path = git(base, &["--exec-path"])?;
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args(["--reuseaddr", "--export-all", "--enable=receive-pack"])
            .arg(format!("--listen={host}"))
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start git daemon")?;
        let daemon = Self {
            child,
            port,
            host,
            base: base.to_owned(),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect((host, port)).is_ok() {
                return Ok(daemon);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("git daemon did not listen on {port}")
    }

    /// `git://` URL of `repo` (a path under the base).
    pub fn url(&self, repo: &str) -> String {
        format!("git://{}:{}/{repo}", self.host, self.port)
    }

    /// Stops the daemon (the remote "goes away").
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        *self = Self::listen(&self.base.clone(), self.host, self.port)?;
        Ok(())
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}
