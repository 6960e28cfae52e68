//! HTTPS for endpoints with no proxy in front: the documented push over TLS is answered
//! like over plain HTTP; plain HTTP to a TLS port gets no answer; bad key files are
//! refused at start.

use std::sync::Arc;
use std::time::Duration;

use cmq_host::{ReceiverOptions, Tls};
use cmq_tests::{DOCUMENTED_JSON_BODY, TestHost};
use rustls::pki_types::ServerName;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

struct Pem {
    dir: std::path::PathBuf,
    cert_der: CertificateDer<'static>,
}

/// A self-signed certificate for `localhost`, written as PEM files.
fn self_signed(name: &str) -> anyhow::Result<Pem> {
    let dir = cmq_tests::test_dir().join(format!("cmq-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    std::fs::write(dir.join("cert.pem"), certified.cert.pem())?;
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem())?;
    Ok(Pem {
        dir,
        cert_der: certified.cert.der().clone(),
    })
}

fn request() -> String {
    format!(
        "POST /cgi HTTP/1.1\r\nHost: localhost\r\nx-cmq-message-id: 6942316962\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{DOCUMENTED_JSON_BODY}",
        DOCUMENTED_JSON_BODY.len()
    )
}

#[tokio::test]
async fn the_documented_push_over_tls_is_acknowledged() -> anyhow::Result<()> {
    let pem = self_signed("ok")?;
    let tls = Tls::from_pem_files(&pem.dir.join("cert.pem"), &pem.dir.join("key.pem"))?;
    let host = TestHost::start_tls("log_ack", ReceiverOptions::default(), tls).await?;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(pem.cert_der.clone())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(host.addr).await?;
    let mut stream = connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    stream.write_all(request().as_bytes()).await?;
    let mut answer = Vec::new();
    // `Connection: close`: the whole answer, then the end of the stream (a TLS peer may
    // end without close_notify, which reads as an error after the bytes).
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the TLS connection still open after 10 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer:?}");
    assert!(answer.ends_with("ok"), "{answer:?}");

    // Plain HTTP to the TLS port is not served.
    let mut plain = TcpStream::connect(host.addr).await?;
    plain.write_all(request().as_bytes()).await?;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut answer)).await;
    // No HTTP answer of any kind (at most TLS's own alert), and the connection closed.
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(read.is_ok(), "plain HTTP left the connection open for 10 s");

    host.stop().await?;
    std::fs::remove_dir_all(&pem.dir)?;
    Ok(())
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused() -> anyhow::Result<()> {
    let one = self_signed("one")?;
    let other = self_signed("other")?;
    let err = Tls::from_pem_files(&one.dir.join("cert.pem"), &other.dir.join("key.pem"))
        .expect_err("mismatch accepted");
    assert!(format!("{err:#}").contains("does not match"), "{err:#}");
    let err = Tls::from_pem_files(&one.dir.join("missing.pem"), &one.dir.join("key.pem"))
        .expect_err("missing file accepted");
    assert!(format!("{err:#}").contains("missing.pem"), "{err:#}");
    std::fs::remove_dir_all(&one.dir)?;
    std::fs::remove_dir_all(&other.dir)?;
    Ok(())
}
