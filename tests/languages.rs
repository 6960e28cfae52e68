//! The same handlers written in Rust, Python (componentize-py) and JavaScript
//! (componentize-js), against the same WIT: every push case gets the same answer from
//! each, and `log-ack` prints the same lines.

use cmq_host::{ReceiverOptions, RouteOptions};
use cmq_tests::{TestHost, capture_logs, json_body, log_lines_with, push};

/// The languages, by the prefix `cargo xtask guests` gives their components.
const LANGUAGES: [(&str, &str); 3] = [("rust", ""), ("python", "py_"), ("javascript", "js_")];

/// Compiling a Python or JavaScript component takes seconds: keep the native code
/// between runs of the suite.
fn options() -> ReceiverOptions {
    ReceiverOptions {
        compile_cache: Some(cmq_tests::test_dir().join("compile-cache")),
        ..ReceiverOptions::default()
    }
}

/// A push case: message id, tag header, body, whether it is a SIMPLIFIED push.
struct Case {
    id: &'static str,
    tags: &'static str,
    body: Vec<u8>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            id: "7001",
            tags: "",
            body: json_body("7001").into_bytes(),
        },
        Case {
            id: "7002",
            tags: "a, retry",
            body: json_body("7002").into_bytes(),
        },
        Case {
            id: "7003",
            tags: "drop",
            body: json_body("7003").into_bytes(),
        },
        // SIMPLIFIED: the body is the message itself, here not even UTF-8.
        Case {
            id: "7004",
            tags: "retry",
            body: b"plain text".to_vec(),
        },
        Case {
            id: "7005",
            tags: "b",
            body: vec![0xff, 0x00, 0xc3, 0x28],
        },
    ]
}

/// Each case's answer (status and body) from `component`, with message ids made unique
/// to `language`.
async fn answers(component: &str, language: &str) -> anyhow::Result<Vec<(u16, String)>> {
    let host = TestHost::start(component, options()).await?;
    let client = reqwest::Client::new();
    let mut answers = Vec::new();
    for case in cases() {
        let id = format!("{language}-{component}-{}", case.id);
        let body = String::from_utf8(case.body.clone())
            .map(|text| text.replace(case.id, &id).into_bytes())
            .unwrap_or(case.body);
        let response = push(&client, &host.url(), &id, case.tags, body)
            .send()
            .await?;
        answers.push((response.status().as_u16(), response.text().await?));
    }
    host.stop().await?;
    Ok(answers)
}

#[tokio::test]
async fn by_tag_answers_every_push_alike_in_every_language() -> anyhow::Result<()> {
    let mut by_language = Vec::new();
    for (language, prefix) in LANGUAGES {
        by_language.push((
            language,
            answers(&format!("{prefix}by_tag"), language).await?,
        ));
    }
    let (_, rust) = &by_language[0];
    let expected: Vec<(u16, String)> = [
        (200, "ok"),
        (503, "retry"),
        (200, "ok"),
        (503, "retry"),
        (200, "ok"),
    ]
    .map(|(status, body)| (status, body.to_owned()))
    .to_vec();
    assert_eq!(rust, &expected);
    for (language, answers) in &by_language[1..] {
        assert_eq!(answers, rust, "{language} answers differently from Rust");
    }
    Ok(())
}

#[tokio::test]
async fn log_ack_prints_the_same_lines_in_every_language() -> anyhow::Result<()> {
    capture_logs();
    let mut printed = Vec::new();
    for (language, prefix) in LANGUAGES {
        let component = format!("{prefix}log_ack");
        let answers = answers(&component, language).await?;
        assert!(
            answers.iter().all(|(status, _)| *status == 200),
            "{language}: {answers:?}"
        );
        // What the guest printed for each message, its id written as ID.
        let mut lines = Vec::new();
        for case in cases() {
            let id = format!("{language}-{component}-{}", case.id);
            for line in log_lines_with(&format!("messaging.message.id=\"{id}\"")) {
                if let Some(text) = guest_output(&line) {
                    lines.push(text.replace(&id, "ID"));
                }
            }
        }
        printed.push((language, lines));
    }
    let (_, rust) = &printed[0];
    assert_eq!(rust.len(), 5 * 9, "9 lines per message: {rust:#?}");
    assert!(
        rust.contains(&"body (4 bytes, not UTF-8): ff00c328".to_owned()),
        "{rust:#?}"
    );
    assert!(
        rust.contains(&"topic name: MyTopic".to_owned()),
        "{rust:#?}"
    );
    for (language, lines) in &printed[1..] {
        assert_eq!(lines, rust, "{language} prints differently from Rust");
    }
    Ok(())
}

/// The text of a guest stdout line in the host's log.
fn guest_output(line: &str) -> Option<&str> {
    if !line.contains("stream=\"stdout\"") {
        return None;
    }
    let text = line.split("cmq_host::guest: ").nth(1)?;
    // The line's fields follow its text, the route first.
    Some(text.split(" messaging.cmq.route=").next().unwrap_or(text))
}

#[tokio::test]
async fn a_memory_cap_below_what_an_interpreter_needs_is_refused_at_start_with_the_setting()
-> anyhow::Result<()> {
    // Python and JavaScript components start with about 12 MiB and 9 MiB of memory.
    for component in ["py_by_tag", "js_by_tag"] {
        let options = ReceiverOptions {
            route: RouteOptions {
                max_memory: 8 << 20,
                ..Default::default()
            },
            ..options()
        };
        let err = TestHost::start(component, options)
            .await
            .expect_err("a component that cannot fit is refused");
        let text = format!("{err:#}");
        assert!(text.contains("raise --max-memory"), "{component}: {text}");
        assert!(text.contains("8192 KiB"), "{component}: {text}");
    }
    Ok(())
}

#[tokio::test]
async fn an_exception_escaping_the_handler_is_a_guest_fault_answered_500() -> anyhow::Result<()> {
    for (component, id) in [("py_raises", "7101"), ("js_throws", "7102")] {
        let host = TestHost::start(component, options()).await?;
        let client = reqwest::Client::new();
        let response = push(&client, &host.url(), id, "", json_body(id))
            .send()
            .await?;
        assert_eq!(response.status(), 500, "{component}");
        assert_eq!(response.text().await?, "guest failed", "{component}");
        host.stop().await?;
        let not_handled = log_lines_with(&format!("messaging.message.id=\"{id}\""))
            .into_iter()
            .any(|line| line.contains("message not handled: guest trapped"));
        assert!(not_handled, "{component}: no trap logged for {id}");
    }
    Ok(())
}
