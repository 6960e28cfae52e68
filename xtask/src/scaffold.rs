//! The path a newcomer walks, run from the READMEs that show it, line by line: the main
//! README's "Writing a handler" block (a Rust handler, `cmq-host new` without flags),
//! then the README `cmq-host new` writes into each language's project. Each line runs
//! as a reader pastes it, in a folder outside the repository with the checkout beside
//! it (as `cmq-wasm`, a link), with the debug `cmq-host` the tests built first on
//! `PATH`. A line's comment states what it must show: `decision: X` in its output,
//! `exit status N`; `cmq-host serve` lines are started, answer the documented push `200`,
//! and are stopped. A README line that no longer works fails this step.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, ensure};

use crate::bench::{Server, free_port};
use crate::repo_root;

/// The line of the main README's block that starts the path.
const README_START: &str = "cmq-host new orders";

/// The other languages: a name and its `--lang`.
const SCRIPT_CASES: [(&str, &str); 2] = [("scaffold_py", "python"), ("scaffold_js", "js")];

pub fn run() -> Result<()> {
    let root = repo_root();
    let bin = root.join("target/debug");
    ensure!(
        bin.join("cmq-host").is_file(),
        "{} is not built",
        bin.join("cmq-host").display()
    );
    let base = std::env::temp_dir().join(format!("cmq-scaffold-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    std::os::unix::fs::symlink(&root, base.join("cmq-wasm"))?;
    let mut path = OsString::from(&bin);
    if let Some(old) = std::env::var_os("PATH") {
        path.push(":");
        path.push(old);
    }
    let shell = Shell {
        path,
        log: base.join("serve.log"),
    };

    let readme = std::fs::read_to_string(root.join("README.md"))?;
    let block = block_with(&readme, README_START)
        .with_context(|| format!("no block in README.md starts with `{README_START}`"))?;
    eprintln!(
        "xtask scaffold: README.md, \"Writing a handler\", in {}",
        base.display()
    );
    shell.run_block(&block, &base)?;
    let mut projects = vec![base.join("orders")];

    for (name, lang) in SCRIPT_CASES {
        eprintln!("xtask scaffold: cmq-host new {name} --lang {lang}");
        shell.run_line(&format!("cmq-host new {name} --lang {lang}"), &base)?;
        projects.push(base.join(name));
    }
    for project in projects {
        let readme = std::fs::read_to_string(project.join("README.md"))?;
        let block = first_block(&readme).context("the project's README shows no commands")?;
        eprintln!("xtask scaffold: {}/README.md", project.display());
        shell.run_block(&block, &project)?;
    }
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}

/// Runs README lines with `PATH` leading to the debug `cmq-host`.
struct Shell {
    path: OsString,
    /// Where a served line's log goes.
    log: PathBuf,
}

impl Shell {
    /// The lines in order, in `dir`: a `cd` in one carries to the next, as in a terminal.
    fn run_block(&self, block: &[String], dir: &Path) -> Result<()> {
        let mut dir = dir.to_path_buf();
        for line in block {
            dir = self.run_line(line, &dir)?;
        }
        Ok(())
    }

    /// Runs one line in `dir` and checks what its comment says; returns the folder the
    /// line left the shell in.
    fn run_line(&self, line: &str, dir: &Path) -> Result<PathBuf> {
        let (command, comment) = match line.split_once(" # ") {
            Some((command, comment)) => (command.trim(), comment.trim()),
            None => (line.trim(), ""),
        };
        eprintln!("xtask scaffold: $ {command}");
        if command.starts_with("cmq-host serve ") {
            self.serve(command, dir)?;
            return Ok(dir.to_path_buf());
        }
        let after = dir.join(".scaffold-pwd");
        let script = format!(
            "{command}\nstatus=$?\npwd > {}\nexit $status",
            quoted(&after)
        );
        let output = Command::new("bash")
            .args(["-c", &script])
            .current_dir(dir)
            .env("PATH", &self.path)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .context("running bash")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        eprint!("{stdout}");
        let expected = expected_exit(comment);
        ensure!(
            output.status.code() == Some(expected),
            "`{command}` (in {}) exited with {}, the README says {expected}",
            dir.display(),
            output.status
        );
        if let Some(decision) = expected_decision(comment) {
            ensure!(
                stdout.contains(decision),
                "`{command}` printed no `{decision}`, which the README says it does"
            );
        }
        let left = std::fs::read_to_string(&after).context("the folder the line left")?;
        let _ = std::fs::remove_file(&after);
        Ok(PathBuf::from(left.trim()))
    }

    /// Starts a `cmq-host serve` line on a free port instead of 8080, waits for the
    /// documented push's `200`, and stops it.
    fn serve(&self, command: &str, dir: &Path) -> Result<()> {
        let port = free_port()?;
        let mut serve = Command::new("bash");
        serve
            .args(["-c", &format!("exec {command} --listen 127.0.0.1:{port}")])
            .current_dir(dir)
            .env("PATH", &self.path);
        let _server = Server::start(serve, port, &self.log)
            .with_context(|| format!("`{command}` did not answer the documented push 200"))?;
        Ok(())
    }
}

/// The indented block (four spaces) that holds a line starting with `start`, from that
/// line on.
fn block_with(markdown: &str, start: &str) -> Option<Vec<String>> {
    blocks(markdown).into_iter().find_map(|block| {
        let from = block.iter().position(|line| line.starts_with(start))?;
        Some(block[from..].to_vec())
    })
}

fn first_block(markdown: &str) -> Option<Vec<String>> {
    blocks(markdown).into_iter().next()
}

/// Each run of four-space-indented lines (outside fenced blocks), unindented.
fn blocks(markdown: &str) -> Vec<Vec<String>> {
    let mut blocks = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        match line.strip_prefix("    ") {
            Some(code) if !fenced && !code.trim().is_empty() => current.push(code.to_owned()),
            _ if !current.is_empty() => blocks.push(std::mem::take(&mut current)),
            _ => {}
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
}

/// `exit status N` in a comment, else 0.
fn expected_exit(comment: &str) -> i32 {
    comment
        .split("exit status ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `decision: X` in a comment.
fn expected_decision(comment: &str) -> Option<&str> {
    let at = comment.find("decision: ")?;
    let rest = &comment[at..];
    let end = rest[10..]
        .find(|c: char| !c.is_ascii_alphabetic())
        .map_or(rest.len(), |end| end + 10);
    Some(&rest[..end])
}

fn quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_comments_are_read_as_a_reader_reads_them() {
        let markdown = "Intro\n\n    a one\n    b two  # exit status 3: decision: retry\n\n\
                        text\n```toml\n    not code\n```\n    cmq-host new orders  # x\n    next\n";
        let all = blocks(markdown);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], ["a one", "b two  # exit status 3: decision: retry"]);
        assert_eq!(
            block_with(markdown, "cmq-host new orders"),
            Some(vec![
                "cmq-host new orders  # x".to_owned(),
                "next".to_owned()
            ])
        );
        assert_eq!(expected_exit("exit status 3: decision: retry"), 3);
        assert_eq!(expected_exit("the receiver"), 0);
        assert_eq!(
            expected_decision("exit status 3: decision: retry"),
            Some("decision: retry")
        );
        assert_eq!(
            expected_decision("the documented push: decision: ack"),
            Some("decision: ack")
        );
        assert_eq!(expected_decision("the receiver"), None);
    }
}
