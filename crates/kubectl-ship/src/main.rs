//! `kubectl ship`: what Ship deployed where, at a glance; history; promote; roll back; the
//! difference between the environments; post-deployment test logs.
//!
//! A kubectl plugin: installed as `kubectl-ship` on PATH, run as `kubectl ship ...`. It follows
//! kubectl's conventions: `-n/--namespace`, `--context`, `--kubeconfig`, `-o json|yaml|wide`;
//! exit code 0 on success, 1 when the operation failed or was refused, 2 on a usage error.
// A command-line tool reads the wall clock of the person running it; the engine's rule
// (decisions take the time from one clock) is about shipd.
#![allow(clippy::disallowed_methods)]

mod commands;
mod complete;
mod diff;
use ship_view::report;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  # What runs where, and how far production is behind main
  kubectl ship status

  # The releases of production, newest first
  kubectl ship history production

  # Promote the newest tested main commit now, and follow it to the end
  kubectl ship promote --wait

  # Roll production back to its last good release (or to a given commit)
  kubectl ship rollback production --wait
  kubectl ship rollback production --to 3f2c1ab --wait

  # Roll back first, then talk: roll back and hold production (no push or Tuesday undoes it)
  kubectl ship rollback production --hold --reason 'checkout errors, see incident 42'
  kubectl ship resume production

  # How do the two stacks differ, beyond namespace and image tags? (run inside a clone)
  kubectl ship diff main production --hide-expected
  # Any difference ship.yaml does not declare? (exit 1 if so; for CI)
  kubectl ship diff main production --undeclared

  # The log of a release's post-deployment tests
  kubectl ship logs production-3f2c1ab9e0";

/// Ship's view of your environments: status, history, promote, rollback, hold, diff, logs.
#[derive(Debug, Parser)]
#[command(name = "kubectl-ship", bin_name = "kubectl ship", version, after_help = EXAMPLES)]
struct Cli {
    /// Namespace where Ship runs and keeps its ShipReleases. Default: $SHIP_NAMESPACE, else
    /// the namespace of the Ship installation in the cluster (its Deployment's
    /// `ship.dev/component=shipd` label), else `ship`.
    #[arg(
        short = 'n',
        long = "ship-namespace",
        visible_alias = "namespace",
        env = "SHIP_NAMESPACE",
        global = true
    )]
    namespace: Option<String>,

    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,

    /// Path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,

    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,

    #[command(subcommand)]
    command: Command,
}

/// `-o` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Columns that fit an 80-column terminal.
    Table,
    /// More columns.
    Wide,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// What is deployed where, and how far production is behind main.
    ///
    /// Per environment: the deployed commit (short SHA and subject), the newest release's phase,
    /// tests and age, and the last good commit.
    Status,
    /// The releases of one environment, newest first.
    History {
        /// Environment, e.g. production.
        environment: String,
        /// Show at most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Promote the newest tested main commit now, outside the schedule.
    ///
    /// Asks shipd (through the ShipPromotion's `ship.dev/requested-at` annotation) to
    /// fast-forward production to the newest main commit whose release Succeeded.
    Promote {
        /// The promotion's target environment (default: the only ShipPromotion).
        #[arg(long)]
        to: Option<String>,
        /// Promote even though the target environment is held.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Roll an environment back to its last good release (or --to COMMIT).
    Rollback {
        /// Environment, e.g. production.
        environment: String,
        /// Commit (at least 4 characters) of an earlier release to go back to.
        #[arg(long)]
        to: Option<String>,
        /// Also hold the environment, so that no push or scheduled promotion undoes the
        /// rollback until `kubectl ship resume` ("rollback first, then talk").
        #[arg(long)]
        hold: bool,
        /// The hold's reason (with --hold; default: which commit was rolled back).
        #[arg(long, requires = "hold")]
        reason: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Push a `git revert` of RELEASE's commit onto its branch's tip (shipd pushes it, with its
    /// push credentials; never forced). The revert commit is then released like any other.
    ///
    /// Refused, with nothing pushed, when the revert conflicts with later changes or the branch
    /// moved meanwhile; asked again, it answers again.
    Revert {
        /// The release whose commit to revert, e.g. main-0123456789.
        release: String,
        /// Wait (at most this long) for shipd to answer.
        #[arg(long, default_value = "2m", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Stop the line: new tips of ENV's branch make no release and the promotion into ENV does
    /// not run, until `kubectl ship resume ENV`.
    ///
    /// Drift correction and manual rollbacks still work (with `--freeze`, drift correction
    /// pauses too); `promote --force` overrides the hold.
    Hold {
        /// Environment, e.g. production.
        environment: String,
        /// Why (shown by kubectl get, kubectl ship status and events).
        #[arg(long)]
        reason: String,
        /// Also pause drift correction, so that changes made by hand during an incident stay;
        /// `resume` checks everything once.
        #[arg(long)]
        freeze: bool,
    },
    /// Lift a hold: the newest tip of ENV's branch deploys.
    Resume {
        /// Environment, e.g. production.
        environment: String,
    },
    /// Diff two environments' manifests at their deployed commits.
    ///
    /// Renders both from a local clone (--repo) and prints a unified diff. Exit code 1 when
    /// they differ, 0 when they do not (like `kubectl diff`).
    Diff {
        /// First environment (e.g. main).
        from: String,
        /// Second environment (e.g. production).
        to: String,
        /// A clone of the repository holding both deployed commits.
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Hide the differences every pair of stacks has: namespaces and image tags.
        #[arg(long)]
        hide_expected: bool,
        /// Print only the differences that ship.yaml's `differences` does not declare, one per
        /// line; exit 1 when there are any, 0 when every difference is declared (for CI or a
        /// check before a promotion).
        #[arg(long)]
        undeclared: bool,
    },
    /// The kept log of a release's post-deployment tests.
    Logs {
        /// Release name (see `kubectl ship history ENV`).
        release: String,
    },
    /// Print a shell completion script (bash, zsh, fish, ...).
    ///
    /// For example: `kubectl ship completion bash > /etc/bash_completion.d/kubectl-ship`.
    /// Completing `kubectl ship ...` itself needs no script: put `kubectl_complete-ship`
    /// (installed beside kubectl-ship) on PATH, and kubectl's own completion asks it.
    Completion {
        /// Shell.
        shell: clap_complete::Shell,
    },
    /// kubectl's plugin completion (run by `kubectl_complete-ship`): candidates for the last of
    /// WORDS, one per line, then cobra's `:4` directive.
    #[command(name = "__complete", hide = true)]
    Complete {
        /// The words after `kubectl ship`, the last being the one completed.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
}

/// `--wait` and its timeout.
#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    /// Follow the release to its end state, printing each transition; the exit code says how it ended.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this long (e.g. 90s, 10m).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    timeout: Duration,
}

use ship_render::config::duration_flag as parse_duration;

/// Why a command failed. Each maps to exit code 1 and one line on stderr.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No kubeconfig, or the context is unknown.
    #[error("cannot load the kubeconfig: {0}")]
    Config(String),
    /// The API server refused or could not be reached.
    #[error("{0}")]
    Api(#[from] kube::Error),
    /// A rollback cannot be made.
    #[error(transparent)]
    Rollback(#[from] report::RollbackProblem),
    /// The operation ran and did not succeed (a release failed, a promotion was refused).
    #[error("{0}")]
    Failed(String),
    /// Something needed is missing (no releases, no promotion).
    #[error("{0}")]
    NotFound(String),
    /// The local repository cannot be read or rendered.
    #[error("{0}")]
    Repo(String),
    /// Output could not be written.
    #[error("cannot write output: {0}")]
    Output(String),
    /// Waited longer than --timeout.
    #[error("gave up after {0:?}: the release is still in progress (see kubectl ship status)")]
    Timeout(Duration),
}

/// Where output goes and how it looks.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// `-o`.
    pub output: Output,
    /// Colour (stdout is a terminal and NO_COLOR is unset).
    pub colour: bool,
}

impl Style {
    /// `text` in the colour of `phase` (green done, red failed, yellow in flight), on a TTY.
    pub fn phase(&self, phase: &str) -> String {
        if !self.colour {
            return phase.to_owned();
        }
        let code = match phase {
            "Succeeded" => "32",
            "Failed" | "RolledBack" => "31",
            "" | "Superseded" => return phase.to_owned(),
            _ => "33",
        };
        format!("\x1b[{code}m{phase}\x1b[0m")
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let style = Style {
        output: cli.output,
        colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    if let Command::Completion { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "kubectl-ship", &mut std::io::stdout());
        return std::process::ExitCode::SUCCESS;
    }
    if let Command::Complete { words } = &cli.command {
        print!("{}", commands::complete(words).await);
        return std::process::ExitCode::SUCCESS;
    }
    match run(cli, style).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli, style: Style) -> Result<std::process::ExitCode, CliError> {
    let target = commands::Target::connect(cli.kubeconfig, cli.context, cli.namespace).await?;
    match cli.command {
        Command::Status => commands::status(&target, style).await,
        Command::History { environment, limit } => {
            commands::history(&target, style, &environment, limit).await
        }
        Command::Promote { to, force, wait } => {
            commands::promote(&target, style, to.as_deref(), force, &wait).await
        }
        Command::Rollback {
            environment,
            to,
            hold,
            reason,
            wait,
        } => {
            let hold = hold.then_some(reason);
            commands::rollback(&target, style, &environment, to.as_deref(), hold, &wait).await
        }
        Command::Revert { release, timeout } => commands::revert(&target, &release, timeout).await,
        Command::Hold {
            environment,
            reason,
            freeze,
        } => commands::hold(&target, &environment, &reason, freeze).await,
        Command::Resume { environment } => commands::resume(&target, &environment).await,
        Command::Diff {
            from,
            to,
            repo,
            hide_expected,
            undeclared,
        } => commands::diff(&target, &from, &to, &repo, hide_expected, undeclared).await,
        Command::Logs { release } => commands::logs(&target, style, &release).await,
        Command::Completion { .. } | Command::Complete { .. } => Ok(std::process::ExitCode::SUCCESS),
    }
}
