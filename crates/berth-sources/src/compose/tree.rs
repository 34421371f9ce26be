//! A YAML tree whose every node knows its file, line and column, read with serde-saphyr (anchors,
//! aliases and `<<` merge keys resolved by the reader). Compose is read into this tree, then
//! interpolated, merged and mapped by hand, so that every finding can point at its key.

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// One YAML node and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// The file it was read from (as shown in findings).
    pub file: Arc<str>,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
}

/// A YAML value. Mapping keys keep their order and their own positions.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping.
    Map(Vec<(Key, Node)>),
}

/// A mapping key and its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    /// The key as text.
    pub name: String,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
}

impl Node {
    /// A node without a position (made by the loader, e.g. a default).
    pub fn synthetic(value: Value, at: &Node) -> Node {
        Node {
            value,
            file: at.file.clone(),
            line: at.line,
            column: at.column,
        }
    }

    /// The entries when this is a mapping.
    pub fn as_map(&self) -> Option<&Vec<(Key, Node)>> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The entry `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .rev()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    /// The scalar as text (strings, numbers and booleans as written), `None` for collections
    /// and null.
    pub fn scalar(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// What kind of value this is, in a finding's words.
    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "a number",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Applies `f` to every string scalar (not to keys), depth first.
    pub fn visit_strings_mut<E>(
        &mut self,
        f: &mut impl FnMut(&mut String, &Node) -> Result<(), E>,
        errors: &mut Vec<E>,
    ) {
        let here = Node {
            value: Value::Null,
            file: self.file.clone(),
            line: self.line,
            column: self.column,
        };
        match &mut self.value {
            Value::Str(s) => {
                if let Err(e) = f(s, &here) {
                    errors.push(e);
                }
            }
            Value::Seq(items) => items
                .iter_mut()
                .for_each(|n| n.visit_strings_mut(f, errors)),
            Value::Map(entries) => entries
                .iter_mut()
                .for_each(|(_, n)| n.visit_strings_mut(f, errors)),
            _ => {}
        }
    }
}

/// A YAML syntax error with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line (1 when unknown).
    pub line: u64,
    /// 1-based column (1 when unknown).
    pub column: u64,
    /// The reader's message.
    pub message: String,
}

/// Parses one YAML document into a [`Node`] tree attributed to `file`. An empty document is
/// `Null`.
///
/// # Errors
/// [`SyntaxError`] for text that is not YAML.
pub fn parse(file: &str, text: &str) -> Result<Node, SyntaxError> {
    let file: Arc<str> = Arc::from(file);
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(Node {
            value: Value::Null,
            file,
            line: 1,
            column: 1,
        });
    }
    // Compose reads YAML with go-yaml v3: only `true`/`false` are booleans (`yes`, `n` and `on`
    // are strings) and `0440` is octal (file modes).
    let options = serde_saphyr::options! {
        strict_booleans: true,
        legacy_octal_numbers: true,
    };
    let raw: Spanned<Raw> = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        let message = crate::decode::saphyr_message(&e);
        SyntaxError {
            line,
            column,
            message,
        }
    })?;
    Ok(into_node(raw, &file))
}

fn into_node(raw: Spanned<Raw>, file: &Arc<str>) -> Node {
    let value = match raw.value {
        Raw::Null => Value::Null,
        Raw::Bool(b) => Value::Bool(b),
        Raw::Int(i) => Value::Int(i),
        Raw::Float(f) => Value::Float(f),
        Raw::Str(s) => Value::Str(s),
        Raw::Seq(items) => Value::Seq(items.into_iter().map(|n| into_node(n, file)).collect()),
        Raw::Map(entries) => {
            let mut out: Vec<(Key, Node)> = Vec::new();
            for (k, v) in entries {
                let key = Key {
                    name: k.value.0,
                    line: k.referenced.line(),
                    column: k.referenced.column(),
                };
                let node = into_node(v, file);
                // A key given twice (an explicit key after a `<<` merge): the later one wins.
                out.retain(|(old, _)| old.name != key.name);
                out.push((key, node));
            }
            Value::Map(out)
        }
    };
    Node {
        value,
        file: file.clone(),
        line: raw.referenced.line(),
        column: raw.referenced.column(),
    }
}

enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<KeyText>, Spanned<Raw>)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Raw, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key::<Spanned<KeyText>>()? {
                    out.push((k, m.next_value()?));
                }
                Ok(Raw::Map(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Raw, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = s.next_element()? {
                    out.push(v);
                }
                Ok(Raw::Seq(out))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
                Ok(Raw::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
                Ok(Raw::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
                Ok(i64::try_from(v).map_or(Raw::Float(v as f64), Raw::Int))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
                Ok(i64::try_from(v).map_or(Raw::Float(v as f64), Raw::Int))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Raw, E> {
                Ok(i64::try_from(v).map_or(Raw::Float(v as f64), Raw::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
                Ok(Raw::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
                Ok(Raw::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Raw, E> {
                Ok(Raw::Str(v))
            }
            fn visit_unit<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
                Raw::deserialize(d)
            }
        }
        d.deserialize_any(V)
    }
}

/// A mapping key rendered as text, whatever its YAML type.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<KeyText, E> {
                Ok(KeyText("null".into()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_and_merge_keys_resolve_with_positions() {
        let text = "x-base: &base\n  image: busybox\n  environment: {A: '1'}\nservices:\n  web:\n    <<: *base\n    image: other\n    n: 0440\n    s: 8080:80\n";
        let root = parse("c.yaml", text).expect("yaml");
        let web = root
            .get("services")
            .and_then(|s| s.get("web"))
            .expect("web");
        assert_eq!(
            web.get("image").and_then(Node::scalar).as_deref(),
            Some("other")
        );
        assert!(web.get("environment").is_some(), "{web:?}");
        let n = web.get("n").expect("n");
        assert_eq!((n.line, n.column), (8, 8));
        assert_eq!(n.value, Value::Int(0o440), "octal as in go-yaml");
        assert_eq!(
            web.get("s").and_then(Node::scalar).as_deref(),
            Some("8080:80")
        );
        let keys: Vec<_> = web
            .as_map()
            .expect("map")
            .iter()
            .map(|(k, _)| k.name.clone())
            .collect();
        assert!(!keys.contains(&"<<".to_string()), "{keys:?}");
    }
}
