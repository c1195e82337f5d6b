//! `kubectl_complete-ship`: kubectl's plugin completion convention (kubectl 1.26 and later).
//! kubectl's own completion runs this with the words typed after `kubectl ship`; it answers
//! through `kubectl-ship __complete`, which holds the definition of every command and flag.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    // kubectl-ship beside this binary (where `cargo install` put both), else on PATH.
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("kubectl-ship")))
        .filter(|path| path.is_file());
    let program = beside.map_or_else(|| "kubectl-ship".into(), std::path::PathBuf::into_os_string);
    match Command::new(program)
        .arg("__complete")
        .args(std::env::args_os().skip(1))
        .status()
    {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        _ => {
            // Still a valid answer: no candidates, no file names.
            println!(":4");
            ExitCode::SUCCESS
        }
    }
}
