//! The browser the console's test drives: Debian's `chromium` and its `chromedriver`
//! (package `chromium-driver`), installed when missing. The test starts its own
//! driver on a free port, headless, with a fresh profile, and stops it.
//!
//! `CMQ_TEST_CHROMIUM` and `CMQ_TEST_CHROMEDRIVER`, when set, name binaries of your own
//! instead (a driver and a browser of the same version).

use anyhow::Result;

/// The variable the tests read: the browser.
pub const BROWSER_VAR: &str = "CMQ_TEST_CHROMIUM";

/// The variable the tests read: its WebDriver server.
pub const DRIVER_VAR: &str = "CMQ_TEST_CHROMEDRIVER";

/// The browser and its driver for the tests: the caller's own, or Debian's, installed
/// now if missing.
pub fn ensure() -> Result<(String, String)> {
    let needed_by = "the console's browser test";
    let browser =
        crate::system::test_program(BROWSER_VAR, "/usr/bin/chromium", "chromium", needed_by)?;
    let driver = crate::system::test_program(
        DRIVER_VAR,
        "/usr/bin/chromedriver",
        "chromium-driver",
        needed_by,
    )?;
    Ok((browser, driver))
}
