//! A real browser for the tests: Debian's `chromium`, headless, driven by its
//! `chromedriver` over the W3C WebDriver protocol (JSON over HTTP, spoken here with
//! reqwest). `cargo xtask test` installs both and names them in `CMQ_TEST_CHROMIUM` and
//! `CMQ_TEST_CHROMEDRIVER`; the test starts its own driver on a free port and stops it.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use serde_json::{Value, json};

/// The key W3C WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A binary a variable names, or why the test cannot run.
fn program(var: &str) -> anyhow::Result<String> {
    std::env::var(var).map_err(|_| {
        anyhow::anyhow!("{var} is not set: run `cargo xtask test`, which installs Chromium")
    })
}

/// A running `chromedriver` and one browser session on it. Dropping it ends both.
pub struct Browser {
    driver: Child,
    base: String,
    client: reqwest::Client,
    _profile: PathBuf,
}

/// An element of the current page.
pub struct Element(String);

impl Browser {
    /// Starts a driver and a headless browser whose window is `width` × `height`, with a
    /// fresh profile in `dir`.
    pub async fn start(dir: &Path, width: u32, height: u32) -> anyhow::Result<Browser> {
        let driver_bin = program("CMQ_TEST_CHROMEDRIVER")?;
        let chromium = program("CMQ_TEST_CHROMIUM")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            // Its own process group, the browsers it starts included: ended together.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {driver_bin}"))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile)?;
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            client,
            _profile: profile.clone(),
        };
        let started = Instant::now();
        loop {
            let ready = browser
                .client
                .get(format!("{}/status", browser.base))
                .send()
                .await;
            if let Ok(ready) = ready
                && serde_json::from_slice::<Value>(&ready.bytes().await?)?["value"]["ready"] == true
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("chromedriver did not become ready in 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let args = [
            "--headless=new".to_owned(),
            // Tests run as root in containers, where Chromium's sandbox cannot start.
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            format!("--user-data-dir={}", profile.display()),
            format!("--window-size={width},{height}"),
        ];
        let session = browser
            .call(
                reqwest::Method::POST,
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": chromium, "args": args},
                }}})),
            )
            .await?;
        let id = session["sessionId"]
            .as_str()
            .context("no session id")?
            .to_owned();
        browser.base = format!("{}/session/{id}", browser.base);
        Ok(browser)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        // WebDriver wants a JSON body, even an empty one, on every POST.
        let body = match (body, method == reqwest::Method::POST) {
            (Some(body), _) => Some(body),
            (None, true) => Some(json!({})),
            (None, false) => None,
        };
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body)?),
            None => request,
        };
        let answer: Value = serde_json::from_slice(&request.send().await?.bytes().await?)?;
        let value = answer["value"].clone();
        if let Some(error) = value.get("error") {
            bail!("WebDriver {path}: {error}: {}", value["message"]);
        }
        Ok(value)
    }

    /// Opens `url` and waits for it to load.
    pub async fn go(&self, url: &str) -> anyhow::Result<()> {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await?;
        Ok(())
    }

    /// The current page's URL.
    pub async fn url(&self) -> anyhow::Result<String> {
        let url = self.call(reqwest::Method::GET, "/url", None).await?;
        Ok(url.as_str().unwrap_or_default().to_owned())
    }

    /// The visible text of the current page.
    pub async fn text(&self) -> anyhow::Result<String> {
        let body = self.find("body").await?;
        self.text_of(&body).await
    }

    /// The element `css` selects, waiting up to 10 s for it to appear.
    pub async fn find(&self, css: &str) -> anyhow::Result<Element> {
        let started = Instant::now();
        loop {
            let found = self
                .call(
                    reqwest::Method::POST,
                    "/element",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            match found {
                Ok(element) => {
                    let id = element[ELEMENT].as_str().context("no element id")?;
                    return Ok(Element(id.to_owned()));
                }
                Err(err) if started.elapsed() > Duration::from_secs(10) => {
                    bail!("no element {css:?} in 10 s: {err}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// How many elements `css` selects now.
    pub async fn count(&self, css: &str) -> anyhow::Result<usize> {
        let found = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        Ok(found.as_array().map_or(0, Vec::len))
    }

    /// Clicks what `css` selects.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let element = self.find(css).await?;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{}/click", element.0),
            None,
        )
        .await?;
        Ok(())
    }

    /// Types `text` into what `css` selects.
    pub async fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let element = self.find(css).await?;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{}/value", element.0),
            Some(json!({ "text": text })),
        )
        .await?;
        Ok(())
    }

    /// An element's visible text.
    pub async fn text_of(&self, element: &Element) -> anyhow::Result<String> {
        let text = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{}/text", element.0),
                None,
            )
            .await?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    /// Waits up to 10 s for the page's text to hold `needle`; the text then. (A page
    /// still loading may fail to answer meanwhile.)
    pub async fn wait_for_text(&self, needle: &str) -> anyhow::Result<String> {
        let started = Instant::now();
        loop {
            let text = self.text().await.unwrap_or_default();
            if text.contains(needle) {
                return Ok(text);
            }
            if started.elapsed() > Duration::from_secs(10) {
                bail!("no {needle:?} on the page in 10 s; it shows:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `script` in the page; its return value.
    pub async fn run(&self, script: &str) -> anyhow::Result<Value> {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Resizes the window.
    pub async fn resize(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await?;
        Ok(())
    }

    /// Saves a screenshot of the window as the PNG `path`.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let shot = self.call(reqwest::Method::GET, "/screenshot", None).await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot.as_str().context("no screenshot")?)?;
        anyhow::ensure!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png)?;
        Ok(())
    }

    /// Ends the session (the browser closes), then the driver.
    pub async fn quit(self) -> anyhow::Result<()> {
        self.call(reqwest::Method::DELETE, "", None).await?;
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver and whatever browser is left of a failed test, at once.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.wait();
    }
}
