//! `spec.hostSelector`: which hosts an object targets.
//!
//! Same shape and semantics as a Kubernetes `LabelSelector` (`matchLabels` and
//! `matchExpressions` with `In`, `NotIn`, `Exists`, `DoesNotExist`; all requirements are ANDed),
//! matched against the *host's* labels (the agent's `--node-label k=v` flags plus the labels it
//! sets itself, e.g. `kubernetes.io/hostname`).
//!
//! What an absent selector means: **every host** whose agent reads the object (every agent
//! watching its namespace, or reading the manifest directory) — the same as a DaemonSet without a
//! `nodeSelector`. An empty selector (`hostSelector: {}`) also matches every host, as an empty
//! Kubernetes `LabelSelector` matches everything.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A label query over host labels (Kubernetes' `LabelSelector`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Exact `key: value` pairs the host must carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements the host's labels must all meet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One requirement of a [`LabelSelector`] (Kubernetes' `LabelSelectorRequirement`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// How the key's value is compared with `values`.
    pub operator: SelectorOperator,
    /// Values for `In` and `NotIn` (non-empty); must be empty for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// Operator of a [`LabelSelectorRequirement`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SelectorOperator {
    /// The host has the key with one of `values`.
    #[default]
    In,
    /// The host lacks the key, or has it with a value not in `values`.
    NotIn,
    /// The host has the key (any value).
    Exists,
    /// The host lacks the key.
    DoesNotExist,
}

impl LabelSelector {
    /// True when `labels` meet every requirement (an empty selector matches everything).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

impl LabelSelectorRequirement {
    /// True when `labels` meet this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            SelectorOperator::In => value.is_some_and(|v| self.values.contains(v)),
            SelectorOperator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
        }
    }
}

/// True when an object with `selector` targets a host with `labels` (see the module docs: an
/// absent selector targets every host).
pub fn targets(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    selector.is_none_or(|s| s.matches(labels))
}

/// Checks a selector's shape (Kubernetes' rules): `In`/`NotIn` need values, `Exists` and
/// `DoesNotExist` take none, keys are non-empty. Returns `(path suffix, message)` pairs.
pub(crate) fn check(selector: &LabelSelector) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for k in selector.match_labels.keys() {
        if k.is_empty() {
            out.push(("matchLabels".into(), "label keys must not be empty".into()));
        }
    }
    for (i, r) in selector.match_expressions.iter().enumerate() {
        let path = format!("matchExpressions[{i}]");
        if r.key.is_empty() {
            out.push((format!("{path}.key"), "must not be empty".into()));
        }
        match r.operator {
            SelectorOperator::In | SelectorOperator::NotIn if r.values.is_empty() => out.push((
                format!("{path}.values"),
                format!("operator {:?} needs at least one value", r.operator),
            )),
            SelectorOperator::Exists | SelectorOperator::DoesNotExist if !r.values.is_empty() => {
                out.push((
                    format!("{path}.values"),
                    format!("operator {:?} takes no values", r.operator),
                ))
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, operator: SelectorOperator, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn selector_table() {
        use SelectorOperator::*;
        let host = labels(&[("zone", "eu-1"), ("role", "edge"), ("gpu", "")]);
        let cases: Vec<(&str, LabelSelector, bool)> = vec![
            ("empty matches all", LabelSelector::default(), true),
            (
                "matchLabels equal",
                LabelSelector {
                    match_labels: labels(&[("zone", "eu-1")]),
                    ..Default::default()
                },
                true,
            ),
            (
                "matchLabels other value",
                LabelSelector {
                    match_labels: labels(&[("zone", "us-1")]),
                    ..Default::default()
                },
                false,
            ),
            (
                "matchLabels missing key",
                LabelSelector {
                    match_labels: labels(&[("rack", "1")]),
                    ..Default::default()
                },
                false,
            ),
            (
                "In hit",
                LabelSelector {
                    match_expressions: vec![req("zone", In, &["us-1", "eu-1"])],
                    ..Default::default()
                },
                true,
            ),
            (
                "In miss",
                LabelSelector {
                    match_expressions: vec![req("zone", In, &["us-1"])],
                    ..Default::default()
                },
                false,
            ),
            (
                "In on absent key",
                LabelSelector {
                    match_expressions: vec![req("rack", In, &["1"])],
                    ..Default::default()
                },
                false,
            ),
            (
                "NotIn miss",
                LabelSelector {
                    match_expressions: vec![req("zone", NotIn, &["eu-1"])],
                    ..Default::default()
                },
                false,
            ),
            (
                "NotIn on absent key matches",
                LabelSelector {
                    match_expressions: vec![req("rack", NotIn, &["1"])],
                    ..Default::default()
                },
                true,
            ),
            (
                "Exists with empty value",
                LabelSelector {
                    match_expressions: vec![req("gpu", Exists, &[])],
                    ..Default::default()
                },
                true,
            ),
            (
                "Exists absent",
                LabelSelector {
                    match_expressions: vec![req("rack", Exists, &[])],
                    ..Default::default()
                },
                false,
            ),
            (
                "DoesNotExist absent",
                LabelSelector {
                    match_expressions: vec![req("rack", DoesNotExist, &[])],
                    ..Default::default()
                },
                true,
            ),
            (
                "DoesNotExist present",
                LabelSelector {
                    match_expressions: vec![req("role", DoesNotExist, &[])],
                    ..Default::default()
                },
                false,
            ),
            (
                "all requirements ANDed",
                LabelSelector {
                    match_labels: labels(&[("role", "edge")]),
                    match_expressions: vec![req("zone", In, &["eu-1"]), req("gpu", Exists, &[])],
                },
                true,
            ),
            (
                "one failing requirement fails",
                LabelSelector {
                    match_labels: labels(&[("role", "edge")]),
                    match_expressions: vec![
                        req("zone", In, &["eu-1"]),
                        req("gpu", DoesNotExist, &[]),
                    ],
                },
                false,
            ),
        ];
        for (name, sel, want) in cases {
            assert_eq!(sel.matches(&host), want, "{name}");
        }
        assert!(targets(None, &host), "absent selector targets every host");
        assert!(targets(None, &BTreeMap::new()));
    }

    #[test]
    fn shape_errors() {
        use SelectorOperator::*;
        let sel = LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![
                req("a", In, &[]),
                req("b", Exists, &["x"]),
                req("", DoesNotExist, &[]),
                req("c", NotIn, &["x"]),
            ],
        };
        let paths: Vec<String> = check(&sel).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            vec![
                "matchExpressions[0].values",
                "matchExpressions[1].values",
                "matchExpressions[2].key"
            ]
        );
    }
}
