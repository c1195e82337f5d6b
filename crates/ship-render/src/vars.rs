//! Per-environment variables in shared manifests, in the manner of Flux's post-build
//! substitution: an environment that declares `vars` in ship.yaml has `${name}` in its
//! manifests (plain files, or kustomize's output) replaced by the value, before the YAML is
//! read.
//!
//! - `${name}`: the value; a name that is not declared fails the release in Pending, naming
//!   the file and line.
//! - `${name:=default}`: the value, or `default` when the environment does not declare it.
//! - `$${name}`: the text `${name}` itself (the escape, for a shell script in a ConfigMap).
//! - A `$` not followed by `{` (`$HOME`, `$1`) is left as it is.
//!
//! Names are `[A-Za-z_][A-Za-z0-9_]*`. Values go in as text: quote them in YAML where a value
//! could read as another type (`tag: "${tag}"`). Substitution is one pass: a value is never
//! substituted again. Pure.

use std::collections::BTreeMap;

/// Why substitution failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VarsError {
    /// `${name}` with no value and no default.
    #[error(
        "{file}:{line}: ${{{name}}} is not declared: add it to the environment's `vars` in ship.yaml, give it a default (${{{name}:=value}}), or write $${{{name}}} for the text itself"
    )]
    Undeclared {
        /// The file (and document) it is in.
        file: String,
        /// The line, from 1.
        line: usize,
        /// The name.
        name: String,
    },
    /// `${` that does not close, or holds something that is not a name.
    #[error(
        "{file}:{line}: {found:?} is not a variable: write ${{name}} with a name of letters, digits and _, or $${{ for the text ${{"
    )]
    Malformed {
        /// The file.
        file: String,
        /// The line, from 1.
        line: usize,
        /// What was found (at most 40 characters).
        found: String,
    },
}

impl VarsError {
    /// Stable label.
    pub fn label(&self) -> &'static str {
        match self {
            VarsError::Undeclared { .. } => "UndeclaredVariable",
            VarsError::Malformed { .. } => "MalformedVariable",
        }
    }
}

/// Whether `name` can be a variable's name.
pub fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `text` (from `source`) with the variables in `vars` substituted.
pub fn substitute(text: &str, vars: &BTreeMap<String, String>, source: &str) -> Result<String, VarsError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // Lines before `rest`, for messages.
    let mut line = 1;
    while let Some(at) = rest.find('$') {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        line += before.matches('\n').count();
        if let Some(escaped) = from.strip_prefix("$${") {
            out.push_str("${");
            rest = escaped;
            continue;
        }
        let Some(body) = from.strip_prefix("${") else {
            out.push('$');
            rest = &from[1..];
            continue;
        };
        let malformed = || VarsError::Malformed {
            file: source.to_owned(),
            line,
            found: from.chars().take(40).collect(),
        };
        let end = body.find(['}', '\n']).ok_or_else(malformed)?;
        if body.as_bytes()[end] != b'}' {
            return Err(malformed());
        }
        let inner = &body[..end];
        let (name, default) = match inner.split_once(":=") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if !is_name(name) {
            return Err(malformed());
        }
        match (vars.get(name), default) {
            (Some(value), _) => out.push_str(value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(VarsError::Undeclared {
                    file: source.to_owned(),
                    line,
                    name: name.to_owned(),
                });
            }
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn names_defaults_and_escapes() {
        let v = vars(&[("replicas", "3"), ("tag", "1.4.2")]);
        let text = "replicas: ${replicas}\nimage: web:${tag}\nhost: ${host:=main.example.com}\n\
                    script: echo $${HOME} $HOME $1 costs $5\n";
        assert_eq!(
            substitute(text, &v, "deploy/base/web.yaml").unwrap(),
            "replicas: 3\nimage: web:1.4.2\nhost: main.example.com\nscript: echo ${HOME} $HOME $1 costs $5\n"
        );
        // A declared value wins over the default; an empty default is a value too.
        assert_eq!(substitute("${tag:=0.0.0}|${x:=}", &v, "f").unwrap(), "1.4.2|");
        // One pass: a value that looks like a variable stays as it is.
        let tricky = vars(&[("a", "${b}")]);
        assert_eq!(substitute("${a}", &tricky, "f").unwrap(), "${b}");
    }

    #[test]
    fn an_undeclared_variable_names_the_file_and_line() {
        let err = substitute(
            "a: 1\nb: 2\nc: ${missing}\n",
            &vars(&[]),
            "deploy/base/web.yaml#1",
        )
        .unwrap_err();
        assert_eq!(
            err,
            VarsError::Undeclared {
                file: "deploy/base/web.yaml#1".into(),
                line: 3,
                name: "missing".into()
            }
        );
        assert!(
            err.to_string()
                .starts_with("deploy/base/web.yaml#1:3: ${missing} is not declared"),
            "{err}"
        );
        for bad in [
            "x: ${",
            "x: ${unclosed\ny: 1",
            "x: ${1abc}",
            "x: ${a-b}",
            "x: ${}",
        ] {
            let err = substitute(bad, &vars(&[("a", "1")]), "f").unwrap_err();
            assert_eq!(err.label(), "MalformedVariable", "{bad}");
        }
    }

    /// From a seed: random texts of `$`, braces, names and newlines never panic, and a text
    /// without `$` comes back unchanged; an escaped text comes back as the original.
    #[test]
    fn random_texts_substitute_or_fail_cleanly() {
        let mut seed: u64 = 0x5eed_7a25;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pieces = [
            "$", "${", "}", "$${", "tag", ":=", "x", "\n", " ", "é", "${tag}", "${nope}",
        ];
        let v = vars(&[("tag", "1.0")]);
        for _ in 0..2000 {
            let n = (next() % 12) as usize;
            let text: String = (0..n)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            let _ = substitute(&text, &v, "f");
            let plain = text.replace('$', "");
            assert_eq!(substitute(&plain, &v, "f").unwrap(), plain);
            // Escaping every `${` gives the text back.
            let escaped = text.replace("${", "$${");
            if let Ok(out) = substitute(&escaped, &v, "f") {
                assert_eq!(out, text, "{escaped:?}");
            }
        }
    }
}
