//! `cmq-host new`: a handler project in Rust, Python or JavaScript that builds, carries
//! its own tests, and answers the documented push, written from the templates in
//! `host/templates/`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The languages a handler can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Lang {
    Rust,
    Python,
    Js,
}

#[derive(Debug, clap::Args)]
pub(crate) struct NewArgs {
    /// The handler's name: lowercase letters, digits, `-` and `_`, starting with a
    /// letter (the crate's, module's and component's name).
    name: String,
    /// The language to write it in.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
    /// Where to write it (default: ./NAME); it must not exist, or be empty.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Rust: depend on the cmq-guest SDK in this folder (a checkout's guest/sdk)
    /// instead of cmq-guest 0.1 from crates.io.
    #[arg(long, value_name = "DIR")]
    sdk: Option<PathBuf>,
}

/// One file of a template: where it goes in the project, and its text.
type Template = &'static [(&'static str, &'static str)];

const RUST: Template = &[
    (
        "Cargo.toml",
        include_str!("../../templates/rust/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/rust/src/lib.rs"),
    ),
    ("spin.toml", include_str!("../../templates/rust/spin.toml")),
    ("README.md", include_str!("../../templates/rust/README.md")),
    (".gitignore", include_str!("../../templates/rust/gitignore")),
];

const PYTHON: Template = &[
    (
        "{{module}}.py",
        include_str!("../../templates/python/handler.py"),
    ),
    (
        "test_handler.py",
        include_str!("../../templates/python/test_handler.py"),
    ),
    ("cmq.pyi", include_str!("../../templates/python/cmq.pyi")),
    (
        "README.md",
        include_str!("../../templates/python/README.md"),
    ),
];

const JS: Template = &[
    (
        "{{module}}.js",
        include_str!("../../templates/js/handler.js"),
    ),
    (
        "handler.test.js",
        include_str!("../../templates/js/handler.test.js"),
    ),
    ("cmq.d.ts", include_str!("../../templates/js/cmq.d.ts")),
    (
        "package.json",
        include_str!("../../templates/js/package.json"),
    ),
    ("README.md", include_str!("../../templates/js/README.md")),
];

pub(crate) fn run(args: NewArgs) -> anyhow::Result<()> {
    check_name(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        anyhow::bail!("{} exists and is not empty", dir.display());
    }
    let module = args.name.replace('-', "_");
    let absolute = std::path::absolute(&dir).context("finding the project's folder")?;
    let (template, values) = match args.lang {
        Lang::Rust => {
            let sdk = match &args.sdk {
                Some(sdk) => {
                    let sdk = std::path::absolute(sdk).context("finding the SDK")?;
                    anyhow::ensure!(
                        sdk.join("Cargo.toml").is_file(),
                        "no cmq-guest SDK at {} (a checkout's guest/sdk)",
                        sdk.display()
                    );
                    format!("cmq-guest = {{ path = {:?} }}", sdk.display().to_string())
                }
                None => "cmq-guest = \"0.1\"".to_owned(),
            };
            let values = vec![
                ("{{sdk}}", sdk),
                ("{{type}}", type_name(&args.name)),
                (
                    "{{wasm}}",
                    format!("target/wasm32-wasip2/release/{module}.wasm"),
                ),
                (
                    "{{build}}",
                    "cargo build --release --target wasm32-wasip2".to_owned(),
                ),
            ];
            (RUST, values)
        }
        Lang::Python => (PYTHON, script_values(&absolute, &module, "py")),
        Lang::Js => (JS, script_values(&absolute, &module, "js")),
    };
    let fill = |text: &str| {
        values
            .iter()
            .fold(
                text.replace("{{name}}", &args.name),
                |text, (key, value)| text.replace(key, value),
            )
            .replace("{{module}}", &module)
    };
    for (path, text) in template {
        let path = dir.join(fill(path));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, fill(text)).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "{}: a {} handler; its README says how to test, build and run it",
        dir.display(),
        match args.lang {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        }
    );
    Ok(())
}

/// The build command and component of a Python or JavaScript handler: componentize-py
/// or componentize-js, as a cmq-wasm checkout's xtask installs and runs them.
fn script_values(dir: &Path, module: &str, extension: &str) -> Vec<(&'static str, String)> {
    let script = dir.join(format!("{module}.{extension}"));
    vec![
        (
            "{{build}}",
            format!("cargo xtask guests --script {}", script.display()),
        ),
        (
            "{{wasm}}",
            format!("target/guests/{extension}_{module}.wasm"),
        ),
    ]
}

/// Refuses a name that is not a crate's, a Python module's and a file's alike.
fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64;
    anyhow::ensure!(
        valid,
        "{name:?} is not a handler name: lowercase letters, digits, - and _, starting with \
         a letter, at most 64"
    );
    Ok(())
}

/// `order-events` → `OrderEvents`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_a_type_and_bad_ones_are_refused() {
        assert_eq!(type_name("order-events"), "OrderEvents");
        assert_eq!(type_name("orders_v2"), "OrdersV2");
        for bad in ["", "Orders", "1st", "a b", "a/b", "ü"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("orders-v2_x").is_ok());
    }
}
