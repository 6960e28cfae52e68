//! `cargo xtask api`: what a handler compiles against, recorded in `guest/api.txt`, so
//! that a change to it comes with a line in `CHANGELOG.md`.
//!
//! The record holds the WIT package (every line but comments and blank ones) and the
//! SDK's public items as their declaring lines say them: each `pub` item of
//! `guest/sdk/src` (not `pub(crate)`), the variants of its public enums, the public
//! fields of its public structs, and its exported macros. A listing, not a compiler's view: it errs on the
//! side of asking (a reworded signature counts as a change).
//!
//! `cargo xtask test` fails while the record is behind; `cargo xtask api --accept`
//! writes it anew, and only once `CHANGELOG.md` differs from the last commit.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Where the record is kept, from the repository's root.
const RECORD: &str = "guest/api.txt";

/// Fails when the record differs from the API as it is now, naming the lines.
pub fn check(root: &Path) -> Result<()> {
    let now = listing(root)?;
    let recorded = std::fs::read_to_string(root.join(RECORD)).unwrap_or_default();
    if recorded == now {
        eprintln!("xtask api: {RECORD} matches the SDK and the WIT package");
        return Ok(());
    }
    let (gone, new) = difference(&recorded, &now);
    for line in &gone {
        eprintln!("  - {line}");
    }
    for line in &new {
        eprintln!("  + {line}");
    }
    bail!(
        "what a handler compiles against changed ({} lines gone, {} new, above): say how \
         in CHANGELOG.md (under Unreleased), then run `cargo xtask api --accept`",
        gone.len(),
        new.len()
    )
}

/// Writes the record anew, once `CHANGELOG.md` has changed since the last commit.
pub fn accept(root: &Path) -> Result<()> {
    let now = std::fs::read(root.join("CHANGELOG.md")).context("reading CHANGELOG.md")?;
    let committed = Command::new("git")
        .current_dir(root)
        .args(["show", "HEAD:CHANGELOG.md"])
        .output()
        .context("running git show")?;
    // A changelog the last commit lacks is a change too.
    if committed.status.success() && committed.stdout == now {
        bail!("CHANGELOG.md is as committed: say what changed for handlers there first");
    }
    std::fs::write(root.join(RECORD), listing(root)?)
        .with_context(|| format!("writing {RECORD}"))?;
    eprintln!("xtask api: {RECORD} written");
    Ok(())
}

/// The record's text for the tree at `root`.
fn listing(root: &Path) -> Result<String> {
    let mut out = String::from(
        "# What a handler compiles against (cargo xtask api). Do not edit: change\n\
         # CHANGELOG.md, then run `cargo xtask api --accept`.\n",
    );
    for (dir, extension, lines) in [
        ("wit", "wit", wit_lines as fn(&str) -> Vec<String>),
        ("guest/sdk/src", "rs", public_lines),
    ] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
            .with_context(|| format!("reading {dir}"))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == extension))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            for line in lines(&text) {
                out.push_str(&format!("{dir}/{name}: {line}\n"));
            }
        }
    }
    Ok(out)
}

/// A WIT file's lines, comments and blank lines left out, each trimmed.
fn wit_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("//"))
        .map(str::to_owned)
        .collect()
}

/// The lines of a Rust file that declare what a handler can name: `pub` items (their
/// first line, without a body), the variants and fields of `pub` enums and structs,
/// and `#[macro_export]` macros.
fn public_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Inside the braces of a public enum or struct: the depth its members are at, and
    // whether all are public (an enum's variants) or only those marked `pub`.
    let mut members_at: Option<(usize, bool)> = None;
    let mut depth = 0usize;
    let mut exported_macro = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("//") || line.is_empty() {
            continue;
        }
        let member = members_at.filter(|(at, _)| *at == depth);
        if let Some((_, all)) = member {
            if !line.starts_with('#') && !line.starts_with('}') && (all || line.starts_with("pub "))
            {
                out.push(format!("  {}", head(line)));
            }
        } else if line == "#[macro_export]" {
            exported_macro = true;
        } else if let Some(name) = line.strip_prefix("macro_rules! ") {
            if exported_macro {
                out.push(format!("macro {}", head(name)));
            }
            exported_macro = false;
        } else if line.starts_with("pub ") {
            out.push(head(line).to_owned());
            let is_enum = line.starts_with("pub enum ");
            if (is_enum || line.starts_with("pub struct ")) && line.ends_with('{') {
                members_at = Some((depth + 1, is_enum));
            }
        }
        depth += line.matches('{').count();
        depth = depth.saturating_sub(line.matches('}').count());
        if members_at.is_some_and(|(at, _)| depth < at) {
            members_at = None;
        }
    }
    out
}

/// A declaration without its body or trailing punctuation.
fn head(line: &str) -> &str {
    line.split(" {")
        .next()
        .unwrap_or(line)
        .trim_end_matches(['{', ',', ';', ' '])
}

/// The lines only `before` has, and those only `after` has.
fn difference<'a>(before: &'a str, after: &'a str) -> (Vec<&'a str>, Vec<&'a str>) {
    let gone = before
        .lines()
        .filter(|line| !after.contains(line))
        .collect();
    let new = after
        .lines()
        .filter(|line| !before.contains(line))
        .collect();
    (gone, new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_items_their_members_and_exported_macros_are_listed_and_nothing_private() {
        let text = r#"
/// Docs are not listed.
pub enum Decision {
    /// Acknowledged.
    Ack,
    Retry(String),
}
pub(crate) fn hidden() {}
fn private() -> u32 {
    let inner = 1;
    inner
}
pub struct Handled {
    pub decision: Decision,
    output: Vec<String>,
}
impl Handled {
    pub fn assert_ack(self) {
        if true { }
    }
}
#[macro_export]
macro_rules! export {
    () => {};
}
macro_rules! local {
    () => {};
}
pub type Result<T = Decision> = core::result::Result<T, Error>;
"#;
        assert_eq!(
            public_lines(text),
            [
                "pub enum Decision",
                "  Ack",
                "  Retry(String)",
                "pub struct Handled",
                "  pub decision: Decision",
                "pub fn assert_ack(self)",
                "macro export",
                "pub type Result<T = Decision> = core::result::Result<T, Error>",
            ]
        );
    }

    #[test]
    fn wit_lines_leave_out_comments_and_blank_lines() {
        let text =
            "/// The contract.\npackage cmq:push@0.2.0;\n\n  // a note\n  record message {\n";
        assert_eq!(
            wit_lines(text),
            ["package cmq:push@0.2.0;", "record message {"]
        );
    }

    #[test]
    fn a_difference_names_the_lines_gone_and_new() {
        let (gone, new) = difference("a\nb\n", "b\nc\n");
        assert_eq!((gone, new), (vec!["a"], vec!["c"]));
    }
}
