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
    /// [default: the SDK of the checkout this cmq-host was built from]
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
    (
        "wasi.test-stand-ins.js",
        include_str!("../../templates/js/wasi.test-stand-ins.js"),
    ),
    ("cmq.d.ts", include_str!("../../templates/js/cmq.d.ts")),
    (
        "wasi-config.d.ts",
        include_str!("../../templates/js/wasi-config.d.ts"),
    ),
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
    // Everything that can refuse is checked before the first file is written.
    let absolute = std::path::absolute(&dir).context("finding the project's folder")?;
    let (template, values) = match args.lang {
        Lang::Rust => (
            RUST,
            rust_values(args.sdk.as_deref(), &absolute, &args.name)?,
        ),
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

/// The values a Rust project's templates are filled with: the SDK (the checkout this
/// binary was built from, or `sdk`), and how to build the project at `absolute`.
fn rust_values(
    sdk: Option<&Path>,
    absolute: &Path,
    name: &str,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let module = name.replace('-', "_");
    let sdk = sdk_folder(sdk)?;
    // The checkout holding the SDK builds the component: guest/sdk's grandparent.
    let checkout = sdk
        .parent()
        .and_then(Path::parent)
        .context("the SDK's checkout")?
        .display()
        .to_string();
    Ok(vec![
        (
            "{{sdk}}",
            format!("cmq-guest = {{ path = {:?} }}", sdk.display().to_string()),
        ),
        (
            "{{build_here}}",
            format!(
                "(cd {checkout} && cargo xtask guests --crate {})",
                absolute.display()
            ),
        ),
        (
            "{{component}}",
            format!("{checkout}/target/guests/{module}.wasm"),
        ),
        ("{{type}}", type_name(name)),
        (
            "{{wasm}}",
            format!("target/wasm32-wasip2/release/{module}.wasm"),
        ),
        (
            "{{build}}",
            "cargo build --release --target wasm32-wasip2 --features cmq-guest/spin".to_owned(),
        ),
    ])
}

/// Where the SDK of the checkout this binary was built from would be. `cmq-guest` is
/// not on crates.io yet, so that is the default.
const CHECKOUT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest/sdk");

/// The `cmq-guest` SDK a Rust handler depends on: the one at `--sdk`, or else the
/// checkout's (said on stderr). With neither, stops with the `--sdk` to pass.
fn sdk_folder(sdk: Option<&Path>) -> anyhow::Result<PathBuf> {
    let sdk = match sdk {
        Some(sdk) => {
            anyhow::ensure!(
                is_sdk(sdk),
                "no cmq-guest SDK at {} (--sdk takes a checkout's guest/sdk folder)",
                sdk.display()
            );
            sdk.canonicalize().context("finding the SDK")?
        }
        None => {
            let sdk = Path::new(CHECKOUT_SDK);
            anyhow::ensure!(
                is_sdk(sdk),
                "cmq-guest is not on crates.io yet, and this cmq-host was not built from a \
                 checkout that still has its SDK ({} is gone): pass --sdk \
                 PATH/TO/cmq-wasm/guest/sdk, the guest/sdk folder of a checkout of cmq-wasm",
                sdk.display()
            );
            let sdk = sdk.canonicalize().context("finding the checkout's SDK")?;
            eprintln!(
                "using the cmq-guest SDK of the checkout this cmq-host was built from: {} \
                 (--sdk DIR for another)",
                sdk.display()
            );
            sdk
        }
    };
    Ok(sdk)
}

/// Whether `dir` holds the `cmq-guest` crate.
fn is_sdk(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .is_ok_and(|manifest| manifest.contains("name = \"cmq-guest\""))
}

/// The build command and component of a Python or JavaScript handler: componentize-py
/// or componentize-js, as a cmq-wasm checkout's xtask installs and runs them.
/// The checkout is this binary's when it still has its SDK (and so its xtask), else a
/// placeholder the README asks the reader to fill.
fn script_values(dir: &Path, module: &str, extension: &str) -> Vec<(&'static str, String)> {
    let script = dir.join(format!("{module}.{extension}"));
    let checkout = Path::new(CHECKOUT_SDK)
        .canonicalize()
        .ok()
        .filter(|sdk| is_sdk(sdk))
        .and_then(|sdk| Some(sdk.parent()?.parent()?.display().to_string()))
        .unwrap_or_else(|| "PATH/TO/cmq-wasm".into());
    vec![
        (
            "{{build}}",
            format!(
                "(cd {checkout} && cargo xtask guests --script {})",
                script.display()
            ),
        ),
        (
            "{{wasm}}",
            format!("{checkout}/target/guests/{extension}_{module}.wasm"),
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
    fn the_sdk_is_the_checkout_s_unless_another_is_named() {
        // Built from this checkout, whose guest/sdk is there.
        let default = sdk_folder(None).expect("this checkout's SDK");
        assert!(
            default.ends_with("guest/sdk") && is_sdk(&default),
            "{default:?}"
        );
        let named = sdk_folder(Some(Path::new(CHECKOUT_SDK))).expect("a named SDK");
        assert_eq!(named, default);
        let err = sdk_folder(Some(Path::new("/nonexistent/guest/sdk")))
            .expect_err("no SDK there")
            .to_string();
        assert!(
            err.contains("no cmq-guest SDK at /nonexistent/guest/sdk"),
            "{err}"
        );
        // A folder with a Cargo.toml of another crate is not the SDK.
        assert!(!is_sdk(Path::new(env!("CARGO_MANIFEST_DIR"))));
    }

    #[test]
    fn a_refused_sdk_writes_nothing() {
        let dir = std::env::temp_dir().join(format!("cmq-new-refused-{}", std::process::id()));
        let args = NewArgs {
            name: "refused".into(),
            lang: Lang::Rust,
            dir: Some(dir.clone()),
            sdk: Some(PathBuf::from("/nonexistent/guest/sdk")),
        };
        assert!(run(args).is_err());
        assert!(!dir.exists(), "{} was written", dir.display());
    }

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
