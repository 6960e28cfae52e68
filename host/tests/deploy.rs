//! Every command line in `deploy/` is one the binary takes: the systemd unit's
//! `ExecStart`, the Containerfile's `ENTRYPOINT` and `CMD`, and the Kubernetes
//! container's arguments, each run as `cmq-host check` with exactly its arguments (the
//! absolute paths they name moved under a scratch folder holding a real config and a
//! real precompiled component), so that a flag renamed or a combination refused breaks
//! this test instead of a deployment.
//!
//! A test of the `cmq-host` package, so that cargo builds the binary for it.

mod binary;

use std::path::{Path, PathBuf};

use binary::*;

fn deploy_file(name: &str) -> anyhow::Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(name);
    Ok(std::fs::read_to_string(&path)?)
}

/// The unit's `ExecStart`, continuation lines joined, split into words.
fn exec_start(unit: &str) -> Vec<String> {
    let mut joined = String::new();
    let mut lines = unit
        .lines()
        .skip_while(|line| !line.starts_with("ExecStart="));
    for line in lines.by_ref() {
        let line = line.trim_start_matches("ExecStart=");
        match line.strip_suffix('\\') {
            Some(more) => joined.push_str(more),
            None => {
                joined.push_str(line);
                break;
            }
        }
    }
    joined.split_whitespace().map(str::to_owned).collect()
}

/// The JSON array after `instruction` on its line of a Containerfile.
fn exec_form(containerfile: &str, instruction: &str) -> anyhow::Result<Vec<String>> {
    let line = containerfile
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{instruction} ")))
        .ok_or_else(|| anyhow::anyhow!("no {instruction}"))?;
    Ok(serde_json::from_str(line)?)
}

/// The container's `args: [...]` of the Kubernetes manifest (written as a JSON array).
fn container_args(manifest: &str) -> anyhow::Result<Vec<String>> {
    let line = manifest
        .lines()
        .find_map(|line| line.trim().strip_prefix("args: "))
        .ok_or_else(|| anyhow::anyhow!("no args"))?;
    Ok(serde_json::from_str(line)?)
}

/// The `cmq.toml` of the manifest's ConfigMap.
fn config_map_toml(manifest: &str) -> String {
    manifest
        .lines()
        .skip_while(|line| line.trim() != "cmq.toml: |")
        .skip(1)
        .take_while(|line| line.starts_with("    ") || line.trim().is_empty())
        .map(|line| format!("{}\n", line.strip_prefix("    ").unwrap_or(line)))
        .collect()
}

/// The paths the deploy files name, under `root`.
fn moved(arg: &str, root: &Path) -> String {
    arg.replace("/etc/cmq-host", &root.join("etc").display().to_string())
        .replace(
            "/var/cache/cmq-host",
            &root.join("cache").display().to_string(),
        )
        .replace("/srv/", &format!("{}/", root.join("srv").display()))
}

/// A scratch root with the ConfigMap's config in `etc/cmq.toml` and a real component,
/// precompiled by this binary, at `srv/handler.cwasm`.
fn scratch_root(manifest: &str) -> anyhow::Result<PathBuf> {
    let root = cmq_tests::test_dir().join(format!("deploy-{}", next_number()));
    for dir in ["etc", "cache", "srv"] {
        std::fs::create_dir_all(root.join(dir))?;
    }
    let compiled = cmq_host()
        .arg("compile")
        .arg(guest("ack"))
        .arg("-o")
        .arg(root.join("srv/handler.cwasm"))
        .output()?;
    assert!(compiled.status.success(), "{compiled:?}");
    std::fs::write(
        root.join("etc/cmq.toml"),
        moved(&config_map_toml(manifest), &root),
    )?;
    Ok(root)
}

/// `cmq-host check` with `serve`'s `args` (the word `serve` and what precedes it
/// dropped), the paths moved under `root`, and the deployment's `secrets` set.
fn check(args: &[String], root: &Path, secrets: &[(&str, &str)]) -> anyhow::Result<String> {
    let serve = args
        .iter()
        .position(|arg| arg == "serve")
        .ok_or_else(|| anyhow::anyhow!("no serve in {args:?}"))?;
    let args: Vec<String> = args[serve + 1..].iter().map(|a| moved(a, root)).collect();
    let output = cmq_host()
        .arg("check")
        .args(&args)
        .envs(secrets.iter().copied())
        .env_remove("CMQ_HOST_STATE")
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "check {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout)
}

#[test]
fn every_command_line_in_deploy_is_one_the_binary_takes() -> anyhow::Result<()> {
    let manifest = deploy_file("kubernetes/cmq-host.yaml")?;
    let root = scratch_root(&manifest)?;

    let unit = exec_start(&deploy_file("cmq-host.service")?);
    assert_eq!(
        unit.first().map(String::as_str),
        Some("/usr/local/bin/cmq-host")
    );
    // The route's token from the unit's environment file.
    let route_token = [("CMQ_ORDERS_TOKEN", "deploy-test-token-9876543210")];
    let checked = check(&unit, &root, &route_token)?;
    assert!(checked.contains(": ok, 1 route"), "{checked}");

    let containerfile = deploy_file("Containerfile")?;
    let mut image = exec_form(&containerfile, "ENTRYPOINT")?;
    image.extend(exec_form(&containerfile, "CMD")?);
    // `podman run -e CMQ_HOST_TOKEN=...`, as its header says.
    let checked = check(
        &image,
        &root,
        &[("CMQ_HOST_TOKEN", "deploy-test-token-0123456789")],
    )?;
    assert!(checked.contains("handler.cwasm: ok, 1 route"), "{checked}");

    // The pod runs the image's ENTRYPOINT with the manifest's args in place of CMD.
    let mut pod = exec_form(&containerfile, "ENTRYPOINT")?;
    pod.extend(container_args(&manifest)?);
    let checked = check(&pod, &root, &route_token)?;
    assert!(checked.contains("listening on 0.0.0.0:8080"), "{checked}");
    assert!(checked.contains("/orders"), "{checked}");
    Ok(())
}

/// The `podman run ...` lines of the Containerfile's header, continuation lines joined,
/// split into words.
fn header_runs(containerfile: &str) -> Vec<Vec<String>> {
    let mut runs = Vec::new();
    let mut current: Option<String> = None;
    for line in containerfile
        .lines()
        .take_while(|line| line.starts_with('#'))
    {
        let text = line.trim_start_matches('#').trim();
        let text = match current.take() {
            Some(mut joined) => {
                joined.push(' ');
                joined.push_str(text);
                joined
            }
            None if text.starts_with("podman run ") => text.to_owned(),
            None => continue,
        };
        match text.strip_suffix('\\') {
            Some(more) => current = Some(more.trim_end().to_owned()),
            None => runs.push(text.split_whitespace().map(str::to_owned).collect()),
        }
    }
    runs
}

/// A container's environment: `-e NAME=VALUE` pairs.
type Environment = Vec<(String, String)>;

/// What a `podman run` line gives the container: its environment (`-e`), and
/// `serve`'s arguments (the image's CMD, or the words after the image's name).
fn container_command(
    run: &[String],
    containerfile: &str,
) -> anyhow::Result<(Environment, Vec<String>)> {
    let image = run
        .iter()
        .position(|word| word == "cmq-host")
        .ok_or_else(|| anyhow::anyhow!("no image in {run:?}"))?;
    let mut env = Vec::new();
    let mut words = run[2..image].iter();
    while let Some(word) = words.next() {
        if word == "-e" {
            let pair = words.next().ok_or_else(|| anyhow::anyhow!("-e alone"))?;
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            // `...` stands for the reader's secret.
            let value = value.replace("...", "header-test-token-0123456789");
            env.push((name.to_owned(), value));
        }
    }
    let mut command = exec_form(containerfile, "ENTRYPOINT")?;
    if run.len() > image + 1 {
        command.extend(run[image + 1..].iter().cloned());
    } else {
        command.extend(exec_form(containerfile, "CMD")?);
    }
    Ok((env, command))
}

#[test]
fn every_command_line_in_the_containerfile_header_is_one_the_binary_takes() -> anyhow::Result<()> {
    let containerfile = deploy_file("Containerfile")?;
    let manifest = deploy_file("kubernetes/cmq-host.yaml")?;
    let root = scratch_root(&manifest)?;
    // `-v ./h.wasm:/srv/h.wasm:ro`: a component of the reader's.
    std::fs::copy(guest("ack"), root.join("srv/h.wasm"))?;
    let runs = header_runs(&containerfile);
    assert_eq!(runs.len(), 3, "the header's podman run lines: {runs:?}");
    for run in &runs {
        let (env, command) = container_command(run, &containerfile)?;
        let mut secrets: Vec<(&str, &str)> = env
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        // The config's own route token (the Kubernetes ConfigMap's, mounted as ./conf).
        secrets.push(("CMQ_ORDERS_TOKEN", "header-orders-token-0123456789"));
        let checked = check(&command, &root, &secrets)?;
        assert!(checked.contains(": ok, 1 route"), "{run:?}: {checked}");
    }
    Ok(())
}

#[tokio::test]
async fn the_endpoint_the_kubernetes_manifest_names_answers_the_documented_push()
-> anyhow::Result<()> {
    let manifest = deploy_file("kubernetes/cmq-host.yaml")?;
    let endpoint = manifest
        .lines()
        .find_map(|line| line.split("http://<the Service's address>").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or_else(|| anyhow::anyhow!("no endpoint in the manifest's header"))?
        .to_owned();
    let root = scratch_root(&manifest)?;
    // Served as the pod serves it, on a port of this test's.
    let config = root.join("etc/cmq.toml");
    let text = std::fs::read_to_string(&config)?
        .replace("0.0.0.0:8080", "127.0.0.1:0")
        .replace("0.0.0.0:9090", "127.0.0.1:0");
    std::fs::write(&config, text)?;
    let token = "k8s-endpoint-token-0123456789";
    let (_host, _lines, url) = spawn_listening(
        cmq_host()
            .args(["serve", "--config"])
            .arg(&config)
            .env("CMQ_ORDERS_TOKEN", token),
    )?;
    let answer = reqwest::Client::new()
        .post(format!("{url}{}", endpoint.replace("<token>", token)))
        .header("x-cmq-message-id", "6942316962")
        .body(DOCUMENTED_JSON_BODY)
        .send()
        .await?;
    let status = answer.status();
    let body = answer.text().await?;
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (200, "ok"),
        "POST {endpoint} (the manifest's endpoint)"
    );
    Ok(())
}
