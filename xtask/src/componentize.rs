//! Handlers in Python and JavaScript: `componentize-py` (PyPI) and `componentize-js`
//! (npm) build them against the same `wit/` as the Rust ones. Both tools are installed
//! at pinned versions under `target/tools/` the first time they are needed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

/// The pinned tools: a new version is a deliberate change, checked by the tests.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.23.0";

/// The world handlers are built for: `push-handler`, with `wasi:config/store` for settings.
const WORLD: &str = "push-handler-with-config";

/// Debian's packages for the interpreters the tools run on.
const PYTHON_PACKAGES: [&str; 2] = ["python3", "python3-venv"];
const NODE_PACKAGES: [&str; 2] = ["nodejs", "npm"];

/// The language of a handler, from its file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Python,
    JavaScript,
}

impl Language {
    fn of(path: &Path) -> Option<Language> {
        match path.extension()?.to_str()? {
            "py" => Some(Language::Python),
            "js" | "mjs" => Some(Language::JavaScript),
            _ => None,
        }
    }

    /// What a component's file name starts with: `py_by_tag.wasm`, `js_by_tag.wasm`.
    fn prefix(self) -> &'static str {
        match self {
            Language::Python => "py",
            Language::JavaScript => "js",
        }
    }
}

/// One handler source file to build.
#[derive(Debug, Clone)]
pub struct Script {
    pub language: Language,
    pub source: PathBuf,
}

impl Script {
    /// The handler at `path`, a `.py` or `.js` file.
    pub fn read(path: &Path) -> Result<Script> {
        let source = path
            .canonicalize()
            .with_context(|| format!("no handler at {}", path.display()))?;
        let language = Language::of(&source).with_context(|| {
            format!(
                "{}: a Python handler ends in .py, a JavaScript one in .js",
                path.display()
            )
        })?;
        Ok(Script { language, source })
    }

    /// The component's file name: the language's prefix and the source's stem.
    pub fn component_name(&self) -> String {
        let stem = self
            .source
            .file_stem()
            .map_or_else(|| "handler".into(), |stem| stem.to_string_lossy());
        format!("{}_{stem}.wasm", self.language.prefix())
    }
}

/// The example handlers, every `.py` in `guest/python` and `.js` in `guest/js`, and the
/// tests' fixtures among `guest/fixtures`.
pub fn examples(root: &Path) -> Result<Vec<Script>> {
    let mut scripts = Vec::new();
    for folder in ["python", "js", "fixtures"] {
        let dir = root.join("guest").join(folder);
        for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry?.path();
            if path.is_file() && Language::of(&path).is_some() {
                scripts.push(Script::read(&path)?);
            }
        }
    }
    scripts.sort_by(|a, b| a.source.cmp(&b.source));
    Ok(scripts)
}

/// Builds `script` into `dest`, composed with the wasi-http `entrance` (see
/// [`crate::compose`]), unless `dest` is newer than the script, the WIT, the tool and
/// the SDK. Returns whether it built.
pub fn build(root: &Path, script: &Script, dest: &Path, entrance: Option<&[u8]>) -> Result<bool> {
    let entrance = entrance.context("a Python or JavaScript handler needs the entrance")?;
    let tool = match script.language {
        Language::Python => python_tool(root)?,
        Language::JavaScript => js_tool(root)?,
    };
    let wit = root.join("wit");
    let sdk = root.join("guest/sdk/src");
    let entrance_source = root.join("guest/entrance/src");
    if is_up_to_date(dest, &[&script.source, &wit, &tool, &sdk, &entrance_source]) {
        return Ok(false);
    }
    // The handler alone, before it is composed.
    let parts = dest.with_file_name("parts");
    std::fs::create_dir_all(&parts)?;
    let part = parts.join(dest.file_name().context("a component file name")?);
    let mut command = Command::new(&tool);
    match script.language {
        Language::Python => {
            // The module is found by name, in its own directory.
            let dir = script.source.parent().unwrap_or(Path::new("."));
            let module = script
                .source
                .file_stem()
                .context("a Python handler needs a file name")?;
            command
                .current_dir(dir)
                .arg("-d")
                .arg(&wit)
                .args(["-w", WORLD, "componentize"])
                .arg(module)
                .arg("-o")
                .arg(&part);
        }
        Language::JavaScript => {
            // Without the HTTP client and fetch-event support a handler imports only
            // what it uses: stdio, clocks and random.
            command
                .arg(&script.source)
                .arg("--wit")
                .arg(&wit)
                .args(["-n", WORLD, "-d", "http", "fetch-event", "-o"])
                .arg(&part);
        }
    }
    eprintln!(
        "xtask: building {} ({})",
        script.component_name(),
        script.source.display()
    );
    let status = command
        .status()
        .with_context(|| format!("running {}", tool.display()))?;
    if !status.success() {
        bail!("building {} failed ({status})", script.source.display());
    }
    let handler = std::fs::read(&part).with_context(|| format!("reading {}", part.display()))?;
    let composed = crate::compose::with_entrance(&handler, entrance)
        .with_context(|| format!("composing {} with the wasi-http entrance", part.display()))?;
    std::fs::write(dest, composed).with_context(|| format!("writing {}", dest.display()))?;
    Ok(true)
}

/// Why this machine cannot build `language`'s handlers, if it cannot: its interpreter
/// is missing and xtask, not being root, cannot install it.
pub fn unavailable(language: Language) -> Option<String> {
    let (program, packages) = match language {
        Language::Python => ("python3", &PYTHON_PACKAGES),
        Language::JavaScript => ("npm", &NODE_PACKAGES),
    };
    if crate::system::is_root() || runs(program, &["--version"]) {
        return None;
    }
    Some(format!(
        "{program} is missing (install Debian's {})",
        packages.join(", ")
    ))
}

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|output| output.status.success())
}

/// `componentize-py`, installed in a virtual environment under `target/tools/python`.
fn python_tool(root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/tools/python");
    let tool = dir.join("bin/componentize-py");
    if installed(&dir, COMPONENTIZE_PY) && tool.is_file() {
        return Ok(tool);
    }
    pip_install(&dir, COMPONENTIZE_PY)?;
    mark_installed(&dir, COMPONENTIZE_PY)?;
    Ok(tool)
}

/// Installs `spec` from PyPI into a new Python virtual environment at `dir` (whatever
/// was there is removed first).
pub(crate) fn pip_install(dir: &Path, spec: &str) -> Result<()> {
    ensure_command("python3", &["--version"], &PYTHON_PACKAGES)?;
    eprintln!("xtask: installing {spec} from PyPI into {}", dir.display());
    let _ = fs::remove_dir_all(dir);
    run(Command::new("python3").arg("-m").arg("venv").arg(dir))
        .context("making a Python virtual environment (Debian: apt-get install python3-venv)")?;
    run(Command::new(dir.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        spec,
    ]))
}

/// `componentize-js`, installed with npm under `target/tools/js`.
fn js_tool(root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/tools/js");
    let tool = dir.join("node_modules/.bin/componentize-js");
    if installed(&dir, COMPONENTIZE_JS) && tool.is_file() {
        return Ok(tool);
    }
    ensure_command("npm", &["--version"], &NODE_PACKAGES)?;
    eprintln!(
        "xtask: installing {COMPONENTIZE_JS} from npm into {}",
        dir.display()
    );
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    run(Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel",
            "error",
            "--prefix",
        ])
        .arg(&dir)
        .arg(COMPONENTIZE_JS))?;
    mark_installed(&dir, COMPONENTIZE_JS)?;
    Ok(tool)
}

/// Whether `dir` holds `spec`, as [`mark_installed`] recorded it.
pub(crate) fn installed(dir: &Path, spec: &str) -> bool {
    fs::read_to_string(dir.join(".installed")).is_ok_and(|text| text.trim() == spec)
}

pub(crate) fn mark_installed(dir: &Path, spec: &str) -> Result<()> {
    fs::write(dir.join(".installed"), spec)
        .with_context(|| format!("writing {}", dir.join(".installed").display()))
}

/// Makes sure `program` runs, installing Debian's `packages` when it does not and this
/// is root; otherwise says what to install.
fn ensure_command(program: &str, args: &[&str], packages: &[&str]) -> Result<()> {
    let runs = || runs(program, args);
    if runs() {
        return Ok(());
    }
    if !crate::system::is_root() {
        bail!(
            "{program} is missing: install Debian's {} (apt-get install {})",
            packages.join(", "),
            packages.join(" ")
        );
    }
    crate::system::install(packages)?;
    if !runs() {
        bail!(
            "{program} still does not run after installing {}",
            packages.join(", ")
        );
    }
    Ok(())
}

fn run(command: &mut Command) -> Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let status = command
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("{program} failed ({status})");
    }
    Ok(())
}

/// Whether `output` exists and is newer than every file in `inputs` (directories are
/// looked into, one level).
fn is_up_to_date(output: &Path, inputs: &[&Path]) -> bool {
    let Some(built) = modified(output) else {
        return false;
    };
    inputs.iter().all(|input| {
        let mut times = vec![modified(input)];
        if input.is_dir()
            && let Ok(entries) = fs::read_dir(input)
        {
            times.extend(entries.filter_map(Result::ok).map(|e| modified(&e.path())));
        }
        times
            .into_iter()
            .all(|time| time.is_some_and(|time| time < built))
    })
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).ok()?.modified().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_come_from_extensions_and_name_the_component() {
        assert_eq!(
            Language::of(Path::new("a/by_tag.py")),
            Some(Language::Python)
        );
        assert_eq!(
            Language::of(Path::new("by_tag.js")),
            Some(Language::JavaScript)
        );
        assert_eq!(Language::of(Path::new("by_tag.rs")), None);
        let script = Script {
            language: Language::JavaScript,
            source: PathBuf::from("/x/log_ack.js"),
        };
        assert_eq!(script.component_name(), "js_log_ack.wasm");
    }
}
