//! The config file as TOML reads it, before any value is checked: [`RawConfig`],
//! its `[tls]` and its `[routes.NAME]` tables.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use cmq_message::ExpectedFormat;
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::options::ServeAs;
use crate::sandbox::grants::DirGrant;
use crate::sandbox::http_grant::HttpGrant;
use crate::units::{ByteSize, DedupeWindow, HumanDuration};

/// A value parsed from a TOML string by its `FromStr`; its error is located at the value.
#[derive(Debug)]
pub(super) struct Text<T>(pub(super) T);

impl<'de, T> Deserialize<'de> for Text<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map(Text).map_err(serde::de::Error::custom)
    }
}

/// A key that takes one value or a list of them: `dir = "a"` or `dir = ["a", "b"]`.
#[derive(Debug)]
pub(super) struct OneOrMore<T>(pub(super) Vec<T>);

impl<T> Default for OneOrMore<T> {
    fn default() -> Self {
        OneOrMore(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMore<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = OneOrMore<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, or a list of strings")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                let one = T::deserialize(serde::de::value::StrDeserializer::<E>::new(text))?;
                Ok(OneOrMore(vec![one]))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut all = Vec::new();
                while let Some(one) = seq.next_element()? {
                    all.push(one);
                }
                Ok(OneOrMore(all))
            }
        }
        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) listen: Option<Text<SocketAddr>>,
    pub(super) admin_listen: Option<Text<SocketAddr>>,
    pub(super) max_in_flight: Option<usize>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_body: Option<Text<ByteSize>>,
    pub(super) body_timeout: Option<Text<HumanDuration>>,
    #[serde(default)]
    pub(super) allow: Vec<Text<IpNet>>,
    pub(super) tls: Option<RawTls>,
    pub(super) allow_precompiled: Option<bool>,
    pub(super) routes: Spanned<BTreeMap<Spanned<String>, RawRoute>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert: Spanned<PathBuf>,
    pub(super) key: Spanned<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) path: Spanned<String>,
    pub(super) component: Spanned<PathBuf>,
    pub(super) format: Option<Text<ExpectedFormat>>,
    pub(super) serve_as: Option<Text<ServeAs>>,
    pub(super) token_env: Option<Spanned<String>>,
    pub(super) deadline: Option<Text<HumanDuration>>,
    pub(super) max_memory: Option<Text<ByteSize>>,
    pub(super) max_in_flight: Option<usize>,
    #[serde(default)]
    pub(super) env: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) dir: OneOrMore<Text<DirGrant>>,
    #[serde(default)]
    pub(super) http: Vec<Text<HttpGrant>>,
    #[serde(default)]
    pub(super) http_private: Vec<Text<HttpGrant>>,
    pub(super) dedupe_window: Option<Text<DedupeWindow>>,
    pub(super) max_attempts: Option<u32>,
    pub(super) max_instance_reuse_count: Option<u32>,
    pub(super) idle_instance_timeout: Option<Text<HumanDuration>>,
    #[serde(default)]
    pub(super) config: BTreeMap<Spanned<String>, Spanned<RawSetting>>,
}

/// A value of `[routes.NAME.config]`: a string as written, or where to read it when it
/// is a secret: `{ env = "VAR" }` or `{ file = "PATH" }`.
pub(super) enum RawSetting {
    Literal(String),
    Env(String),
    File(PathBuf),
}

// A literal may be a secret too: never print it.
impl fmt::Debug for RawSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawSetting::Literal(_) => f.write_str("Literal(***)"),
            RawSetting::Env(var) => write!(f, "Env({var})"),
            RawSetting::File(path) => write!(f, "File({})", path.display()),
        }
    }
}

impl<'de> Deserialize<'de> for RawSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        const EXPECTED: &str = "a string, { env = \"VAR\" } or { file = \"PATH\" }";
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawSetting;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(RawSetting::Literal(text.to_owned()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let setting = match map.next_key::<String>()?.as_deref() {
                    Some("env") => RawSetting::Env(map.next_value()?),
                    Some("file") => RawSetting::File(map.next_value()?),
                    _ => return Err(serde::de::Error::custom(format!("expected {EXPECTED}"))),
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(serde::de::Error::custom(format!(
                        "expected {EXPECTED}: one of them"
                    )));
                }
                Ok(setting)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}
