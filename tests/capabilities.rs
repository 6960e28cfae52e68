//! Guests get nothing by default: no environment, no files. An operator may
//! grant named environment variables and one read-only directory; each grant works and
//! each refusal holds.

use cmq_host::{DirGrant, EnvGrant, Grants, ReceiverOptions};
use cmq_tests::{TestHost, json_body, log_lines_with, push};
use reqwest::StatusCode;

/// Pushes a probe for `tag`; true when the guest could use the capability.
async fn probe(host: &TestHost, id: &str, tag: &str) -> anyhow::Result<bool> {
    let response = push(&reqwest::Client::new(), &host.url(), id, tag, json_body(id))
        .send()
        .await?;
    match response.status() {
        StatusCode::OK => Ok(true),
        StatusCode::SERVICE_UNAVAILABLE => Ok(false),
        other => anyhow::bail!("probe {tag}: unexpected {other}"),
    }
}

#[tokio::test]
async fn by_default_a_guest_has_no_environment_and_no_files() -> anyhow::Result<()> {
    let host = TestHost::start("probe", ReceiverOptions::default()).await?;
    for tag in ["env", "read", "write"] {
        let id = format!("default-{tag}");
        assert!(
            !probe(&host, &id, tag).await?,
            "{tag} was allowed by default"
        );
        assert!(
            log_lines_with(&id).iter().any(|l| l.contains("denied")),
            "no reason for {tag}"
        );
    }
    host.stop().await
}

#[tokio::test]
async fn granted_environment_and_read_only_directory_work_and_writes_are_refused()
-> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("cmq-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("probe.txt"), "granted")?;
    let grants = Grants {
        env: vec![EnvGrant {
            name: "PROBE_VAR".into(),
            value: "yes".into(),
        }],
        dir: Some(DirGrant {
            host: dir.clone(),
            guest: "/data".into(),
        }),
    };
    let host = TestHost::start(
        "probe",
        ReceiverOptions {
            grants,
            ..Default::default()
        },
    )
    .await?;
    assert!(
        probe(&host, "granted-env", "env").await?,
        "granted env var not visible"
    );
    assert!(
        probe(&host, "granted-read", "read").await?,
        "granted directory not readable"
    );
    assert!(
        !probe(&host, "granted-write", "write").await?,
        "read-only directory was written"
    );
    let denied = log_lines_with("granted-write");
    assert!(
        denied.iter().any(|l| l.contains("denied")),
        "the write was not refused by the guest's filesystem: {denied:#?}"
    );
    assert!(!dir.join("written.txt").exists());
    host.stop().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
