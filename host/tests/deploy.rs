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
