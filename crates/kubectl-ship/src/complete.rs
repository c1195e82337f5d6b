//! Shell completion in kubectl's plugin convention: kubectl (1.26 and later) completes
//! `kubectl ship ...` by running `kubectl_complete-ship` with the words typed so far (the last one
//! is the word being completed, maybe empty), and reads one candidate per line, then a line
//! `:DIRECTIVE` (cobra's convention; 4 = no file names). The `kubectl_complete-ship` binary runs
//! `kubectl-ship __complete WORDS...`, which lands here.
//!
//! Which kind of word is wanted is decided by [`wanted`] (pure, unit-tested); only environment
//! and release names are read from the cluster.

use clap::Command;

/// Cobra's `ShellCompDirectiveNoFileComp`: the shell offers no file names.
pub const NO_FILE_COMPLETION: u8 = 4;

/// Global flags that take a value (their value is not a subcommand or an argument).
const VALUE_FLAGS: &[&str] = &[
    "-n",
    "--namespace",
    "--ship-namespace",
    "--context",
    "--kubeconfig",
    "-o",
    "--output",
    "--limit",
    "--to",
    "--reason",
    "--timeout",
    "--repo",
];

/// What the word being completed should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// A subcommand.
    Subcommand,
    /// A flag of this subcommand (or a global one, with `None`).
    Flag(Option<String>),
    /// The value of `-o`.
    OutputFormat,
    /// An environment name (history, rollback, hold, resume, diff).
    Environment,
    /// A release name (logs).
    Release,
    /// A shell name (completion).
    Shell,
    /// Nothing known (a free-text value such as --reason).
    Nothing,
}

/// What `words` (the last being the partial word) asks for.
pub fn wanted(words: &[String]) -> Wanted {
    let Some((partial, before)) = words.split_last() else {
        return Wanted::Subcommand;
    };
    if let Some(previous) = before.last() {
        if previous == "-o" || previous == "--output" {
            return Wanted::OutputFormat;
        }
        if VALUE_FLAGS.contains(&previous.as_str()) {
            return Wanted::Nothing;
        }
    }
    // The subcommand and how many positional words follow it.
    let mut subcommand: Option<&str> = None;
    let mut positionals = 0usize;
    let mut skip_value = false;
    for word in before {
        if skip_value {
            skip_value = false;
            continue;
        }
        if word.starts_with('-') {
            skip_value = VALUE_FLAGS.contains(&word.as_str()) && !word.contains('=');
            continue;
        }
        match subcommand {
            None => subcommand = Some(word),
            Some(_) => positionals += 1,
        }
    }
    if partial.starts_with('-') {
        return Wanted::Flag(subcommand.map(str::to_owned));
    }
    match (subcommand, positionals) {
        (None, _) => Wanted::Subcommand,
        (Some("history" | "rollback" | "hold" | "resume"), 0) => Wanted::Environment,
        (Some("diff"), 0 | 1) => Wanted::Environment,
        (Some("logs" | "revert"), 0) => Wanted::Release,
        (Some("completion"), 0) => Wanted::Shell,
        _ => Wanted::Nothing,
    }
}

/// The value of the global flag `names` in `words`, as `--flag value` or `--flag=value`.
pub fn flag_value(words: &[String], names: &[&str]) -> Option<String> {
    let mut iter = words.iter();
    while let Some(word) = iter.next() {
        for name in names {
            if word == name {
                return iter.next().cloned();
            }
            if let Some(value) = word.strip_prefix(&format!("{name}=")) {
                return Some(value.to_owned());
            }
        }
    }
    None
}

/// The subcommand names and flags `command` offers (hidden ones left out).
pub fn subcommands(command: &Command) -> Vec<String> {
    command
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_owned())
        .collect()
}

/// The long flags of `subcommand` (or the global ones), as `--name`.
pub fn flags(command: &Command, subcommand: Option<&str>) -> Vec<String> {
    let chosen = subcommand
        .and_then(|name| command.find_subcommand(name))
        .unwrap_or(command);
    let mut flags: Vec<String> = chosen
        .get_arguments()
        .chain(command.get_arguments().filter(|a| a.is_global_set()))
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| a.get_long().map(|long| format!("--{long}")))
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

/// The candidates among `all` that start with `partial`, one per line, then the directive.
pub fn answer(all: &[String], partial: &str) -> String {
    let mut out = String::new();
    for candidate in all.iter().filter(|c| c.starts_with(partial)) {
        out.push_str(candidate);
        out.push('\n');
    }
    out.push_str(&format!(":{NO_FILE_COMPLETION}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        let mut words: Vec<String> = line.split(' ').map(str::to_owned).collect();
        if line.is_empty() {
            words = vec![String::new()];
        }
        words
    }

    #[test]
    fn each_position_asks_for_its_kind_of_word() {
        assert_eq!(wanted(&words("")), Wanted::Subcommand);
        assert_eq!(wanted(&words("hi")), Wanted::Subcommand);
        assert_eq!(wanted(&words("-n ship st")), Wanted::Subcommand);
        assert_eq!(wanted(&words("--ship-namespace=ship st")), Wanted::Subcommand);
        assert_eq!(wanted(&words("history ")), Wanted::Environment);
        assert_eq!(wanted(&words("history prod")), Wanted::Environment);
        assert_eq!(wanted(&words("history production ")), Wanted::Nothing);
        assert_eq!(wanted(&words("rollback --to abc p")), Wanted::Environment);
        assert_eq!(wanted(&words("diff main ")), Wanted::Environment);
        assert_eq!(wanted(&words("diff main production ")), Wanted::Nothing);
        assert_eq!(wanted(&words("logs ")), Wanted::Release);
        assert_eq!(wanted(&words("completion ")), Wanted::Shell);
        assert_eq!(wanted(&words("status -o ")), Wanted::OutputFormat);
        assert_eq!(wanted(&words("hold main --reason ")), Wanted::Nothing);
        assert_eq!(wanted(&words("promote --")), Wanted::Flag(Some("promote".into())));
        assert_eq!(wanted(&words("--")), Wanted::Flag(None));
    }

    #[test]
    fn flag_values_are_read_in_both_spellings() {
        let typed = words("-n team --context=prod history ");
        assert_eq!(
            flag_value(&typed, &["-n", "--ship-namespace"]),
            Some("team".into())
        );
        assert_eq!(flag_value(&typed, &["--context"]), Some("prod".into()));
        assert_eq!(flag_value(&typed, &["--kubeconfig"]), None);
    }

    #[test]
    fn the_answer_filters_by_prefix_and_ends_with_the_directive() {
        let all = vec!["main".to_owned(), "production".to_owned()];
        assert_eq!(answer(&all, "pr"), "production\n:4\n");
        assert_eq!(answer(&all, ""), "main\nproduction\n:4\n");
        assert_eq!(answer(&all, "x"), ":4\n");
    }
}
