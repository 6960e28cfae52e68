//! Settings a guest reads through `wasi:config/store`, as `wasmtime serve -S
//! config-var` and Spin's application variables give them: a name and a value, which
//! may be a secret and is never printed. Both versions of the interface a component
//! may import are served: `0.2.0-rc.1` (wasmtime 40 and later, the SDK's default) and
//! `0.2.0-draft-2024-09-27` (Spin 3 and 4, the SDK's `spin` feature): a pre-release
//! import must match its version exactly.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

/// One setting: `NAME=VALUE`.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigVar {
    /// The key the guest asks `wasi:config/store.get` for.
    pub name: String,
    /// Its value.
    pub value: String,
}

// Values are where handlers' secrets go (the SDK's token among them): never print them.
impl std::fmt::Debug for ConfigVar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConfigVar({}=***)", self.name)
    }
}

impl FromStr for ConfigVar {
    type Err = String;

    /// `NAME=VALUE`; the error never quotes the value.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let Some((name, value)) = text.split_once('=') else {
            // Not quoted: it may be a value whose name was forgotten.
            return Err("a setting is NAME=VALUE (no = found; the text is not shown)".into());
        };
        check_name(name)?;
        Ok(ConfigVar {
            name: name.to_owned(),
            value: value.to_owned(),
        })
    }
}

/// A setting's name: what a guest's code spells, so letters, digits, `_`, `-` and `.`.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let valid = |c: char| c.is_ascii_alphanumeric() || "_-.".contains(c);
    if name.is_empty() || name.len() > 256 || !name.chars().all(valid) {
        let shown: String = name.chars().take(64).collect();
        return Err(format!(
            "setting name {shown:?}: use 1 to 256 letters, digits, _, - and ."
        ));
    }
    Ok(())
}

/// A route's settings, as every instance of its guest reads them.
#[derive(Default)]
pub(crate) struct Settings(HashMap<String, String>);

impl Settings {
    /// `vars` by name; the last of two with one name wins, as on `wasmtime serve`'s
    /// command line.
    pub(crate) fn of(vars: &[ConfigVar]) -> Arc<Settings> {
        Arc::new(Settings(
            vars.iter()
                .map(|var| (var.name.clone(), var.value.clone()))
                .collect(),
        ))
    }

    fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }

    fn all(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    }
}

/// Links both versions of `wasi:config/store` into `linker`, each reading the settings
/// `settings` finds in an instance's state.
pub(crate) fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    settings: fn(&mut T) -> &Settings,
) -> wasmtime::Result<()> {
    rc::wasi::config0_2_0_rc_1::store::add_to_linker::<T, HasSettings>(linker, settings)?;
    spin::wasi::config0_2_0_draft_2024_09_27::store::add_to_linker::<T, HasSettings>(
        linker, settings,
    )?;
    Ok(())
}

struct HasSettings;

impl HasData for HasSettings {
    type Data<'a> = &'a Settings;
}

/// `wasi:config/store@0.2.0-rc.1` (wit/deps/config), as wasmtime 40 and later serve it.
mod rc {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasi:config/imports@0.2.0-rc.1",
    });
}

/// `wasi:config/store@0.2.0-draft-2024-09-27` (wit/deps/config-spin), as Spin serves it.
mod spin {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasi:config/imports@0.2.0-draft-2024-09-27",
    });
}

impl rc::wasi::config0_2_0_rc_1::store::Host for &Settings {
    fn get(
        &mut self,
        key: String,
    ) -> Result<Option<String>, rc::wasi::config0_2_0_rc_1::store::Error> {
        Ok(Settings::get(self, &key))
    }

    fn get_all(
        &mut self,
    ) -> Result<Vec<(String, String)>, rc::wasi::config0_2_0_rc_1::store::Error> {
        Ok(self.all())
    }
}

impl spin::wasi::config0_2_0_draft_2024_09_27::store::Host for &Settings {
    fn get(
        &mut self,
        key: String,
    ) -> Result<Option<String>, spin::wasi::config0_2_0_draft_2024_09_27::store::Error> {
        Ok(Settings::get(self, &key))
    }

    fn get_all(
        &mut self,
    ) -> Result<Vec<(String, String)>, spin::wasi::config0_2_0_draft_2024_09_27::store::Error> {
        Ok(self.all())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_is_name_equals_value_and_never_prints_its_value() {
        let var: ConfigVar = "greeting=hello=world".parse().expect("valid");
        assert_eq!(
            (var.name.as_str(), var.value.as_str()),
            ("greeting", "hello=world")
        );
        assert_eq!(format!("{var:?}"), "ConfigVar(greeting=***)");
        let empty: ConfigVar = "flag=".parse().expect("an empty value is a value");
        assert_eq!(empty.value, "");
        let err = "s3cret-without-a-name"
            .parse::<ConfigVar>()
            .expect_err("no =");
        assert!(
            err.contains("NAME=VALUE") && !err.contains("s3cret"),
            "{err}"
        );
        let err = "=s3cret".parse::<ConfigVar>().expect_err("no name");
        assert!(!err.contains("s3cret"), "{err}");
        assert!("a b=x".parse::<ConfigVar>().is_err());
    }
}
