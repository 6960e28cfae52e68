//! The path a newcomer walks, for each language: `cmq-host new` in an empty folder,
//! the project's own tests, its build, the documented push through `cmq-host run`
//! (ack; a tag asks for a retry), and under `cmq-host serve` (`200`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, ensure};

use crate::bench::{Server, free_port, push_status};
use crate::{cargo, guests, repo_root};

/// One language's scaffold: its `--lang`, a name, and how its own tests run.
struct Case {
    lang: &'static str,
    name: &'static str,
}

const CASES: [Case; 3] = [
    Case {
        lang: "rust",
        name: "scaffold-rust",
    },
    Case {
        lang: "python",
        name: "scaffold_py",
    },
    Case {
        lang: "js",
        name: "scaffold_js",
    },
];

/// Runs every case with the debug `cmq-host` the tests built.
pub fn run() -> Result<()> {
    let root = repo_root();
    let host = root.join("target/debug/cmq-host");
    ensure!(host.is_file(), "{} is not built", host.display());
    let base = root.join("target/scaffold");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base)?;
    for case in &CASES {
        eprintln!(
            "xtask scaffold: cmq-host new {} --lang {}",
            case.name, case.lang
        );
        let dir = base.join(case.name);
        let mut new = Command::new(&host);
        new.args(["new", case.name, "--lang", case.lang, "--dir"])
            .arg(&dir);
        if case.lang == "rust" {
            new.arg("--sdk").arg(root.join("guest/sdk"));
        }
        succeeds(&mut new)?;
        own_tests(case, &dir)?;
        let component = build(case, &dir)?;
        documented_push(&host, &component)?;
    }
    Ok(())
}

/// The tests the project carries, run as its README says.
fn own_tests(case: &Case, dir: &Path) -> Result<()> {
    let mut test = match case.lang {
        "rust" => {
            let mut test = Command::new(cargo());
            test.args(["test", "--manifest-path"])
                .arg(dir.join("Cargo.toml"));
            test
        }
        "python" => {
            let mut test = Command::new("python3");
            test.args(["-m", "unittest", "-v"]);
            test
        }
        _ => {
            let mut test = Command::new("node");
            test.arg("--test");
            test
        }
    };
    succeeds(test.current_dir(dir))
}

/// Builds the project's component, as `cargo xtask guests` builds a handler.
fn build(case: &Case, dir: &Path) -> Result<PathBuf> {
    let module = case.name.replace('-', "_");
    let selection = match case.lang {
        "rust" => guests::Selection {
            crates: vec![dir.to_path_buf()],
            scripts: Vec::new(),
        },
        "python" => guests::Selection {
            crates: Vec::new(),
            scripts: vec![dir.join(format!("{module}.py"))],
        },
        _ => guests::Selection {
            crates: Vec::new(),
            scripts: vec![dir.join(format!("{module}.js"))],
        },
    };
    let built = guests::run(&selection)?;
    built
        .into_iter()
        .next()
        .context("the build made no component")
}

/// `cmq-host run` acks the documented push and a `retry` tag exits 3; `cmq-host serve`
/// answers the documented push `200`.
fn documented_push(host: &Path, component: &Path) -> Result<()> {
    let run = |tag: Option<&str>| -> Result<(Option<i32>, String)> {
        let mut command = Command::new(host);
        command.arg("run").arg(component);
        if let Some(tag) = tag {
            command.args(["--tag", tag]);
        }
        let output = command.stderr(Stdio::inherit()).output()?;
        Ok((
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        ))
    };
    let (code, out) = run(None)?;
    ensure!(
        code == Some(0) && out.ends_with("decision: ack\n"),
        "run {}: exit {code:?}: {out}",
        component.display()
    );
    let (code, out) = run(Some("retry"))?;
    ensure!(
        code == Some(3) && out.contains("decision: retry: tagged retry"),
        "run --tag retry {}: exit {code:?}: {out}",
        component.display()
    );

    let port = free_port()?;
    let mut serve = Command::new(host);
    serve
        .args([
            "serve",
            "--no-state",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg(component);
    let log = repo_root().join("target/scaffold/serve.log");
    // Started once it answers the documented push 200; and once more, served.
    let _server = Server::start(serve, port, &log)?;
    let status = push_status(port);
    ensure!(
        status == Some(200),
        "serve {} answered {status:?}",
        component.display()
    );
    Ok(())
}

fn succeeds(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    ensure!(status.success(), "{command:?} exited with {status}");
    Ok(())
}
