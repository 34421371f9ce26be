//! Compose's variable interpolation (compose-spec "Interpolation", as compose-go's `template`
//! package implements it): `$$` is a literal `$`; `$VAR` and `${VAR}` substitute; in braces
//! `:-` / `-` give a default when unset-or-empty / unset, `:?` / `?` fail when unset-or-empty /
//! unset, `:+` / `+` give a replacement when set-and-non-empty / set. Defaults, replacements and
//! messages are interpolated themselves (nesting). A `$` followed by anything else stays literal.

/// Why a string could not be interpolated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InterpolationError {
    /// `${` without a valid name and closing brace.
    #[error(
        "invalid interpolation {template:?}: expected ${{NAME}}, ${{NAME:-default}} or similar (write $$ for a literal $)"
    )]
    Invalid {
        /// The whole string.
        template: String,
    },
    /// Defaults or replacements nested deeper than [`MAX_NESTING`] (each level would take stack).
    #[error(
        "interpolation nested more than {MAX_NESTING} levels deep (`${{A:-${{B:-…}}}}`); flatten it"
    )]
    TooDeep,
    /// `${NAME?msg}` / `${NAME:?msg}` with the variable missing.
    #[error("required variable {name} is missing a value{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Required {
        /// The variable.
        name: String,
        /// The author's message.
        message: String,
    },
}

/// The deepest nesting of `${…}` in defaults, replacements and messages that is interpolated
/// (the YAML reader's own nesting limit is 64 too).
pub const MAX_NESTING: usize = 64;

/// Interpolates `template` with `lookup` (the variable's value, `None` when unset).
///
/// # Errors
/// [`InterpolationError`] for a malformed `${…}`, a missing required variable or nesting deeper
/// than [`MAX_NESTING`].
pub fn interpolate(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolationError> {
    interpolate_at(template, lookup, 0)
}

fn interpolate_at(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<String, InterpolationError> {
    if depth > MAX_NESTING {
        return Err(InterpolationError::TooDeep);
    }
    let invalid = || InterpolationError::Invalid {
        template: template.to_string(),
    };
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(inner) = after.strip_prefix('{') {
            let close = closing_brace(inner).ok_or_else(invalid)?;
            out.push_str(
                &braced(&inner[..close], lookup, depth).map_err(|e| match e {
                    InterpolationError::Invalid { .. } => invalid(),
                    other => other,
                })?,
            );
            rest = &inner[close + 1..];
        } else {
            let len = name_len(after);
            if len == 0 {
                out.push('$');
            } else {
                out.push_str(&lookup(&after[..len]).unwrap_or_default());
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Index of the `}` closing a `${` whose content starts `s` (nested `${…}` counted).
fn closing_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => depth += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Length of the variable name at the start of `s` (`[_A-Za-z][_A-Za-z0-9]*`), 0 if none.
fn name_len(s: &str) -> usize {
    let mut n = 0;
    for (i, b) in s.bytes().enumerate() {
        let ok = b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit());
        if !ok {
            break;
        }
        n = i + 1;
    }
    n
}

fn braced(
    content: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<String, InterpolationError> {
    let len = name_len(content);
    if len == 0 {
        return Err(InterpolationError::Invalid {
            template: content.into(),
        });
    }
    let name = &content[..len];
    let op_and_arg = &content[len..];
    let value = lookup(name);
    if op_and_arg.is_empty() {
        return Ok(value.unwrap_or_default());
    }
    let (op, arg) = ["?", "-", "+"]
        .iter()
        .flat_map(|o| [format!(":{o}"), (*o).to_string()])
        .find_map(|o| op_and_arg.strip_prefix(o.as_str()).map(|a| (o, a)))
        .ok_or_else(|| InterpolationError::Invalid {
            template: content.into(),
        })?;
    let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    let set = value.is_some();
    let nested = |s: &str| interpolate_at(s, lookup, depth + 1);
    match op.as_str() {
        ":-" if !non_empty => nested(arg),
        "-" if !set => nested(arg),
        ":+" if non_empty => nested(arg),
        "+" if set => nested(arg),
        ":+" | "+" => Ok(String::new()),
        ":?" if !non_empty => Err(InterpolationError::Required {
            name: name.into(),
            message: nested(arg)?,
        }),
        "?" if !set => Err(InterpolationError::Required {
            name: name.into(),
            message: nested(arg)?,
        }),
        _ => Ok(value.unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// compose-go template_test.go's `defaults`.
    fn lookup(name: &str) -> Option<String> {
        match name {
            "FOO" => Some("first".into()),
            "BAR" => Some(String::new()),
            "JSON" => Some(r#"{"json":2}"#.into()),
            _ => None,
        }
    }

    fn sub(t: &str) -> Result<String, InterpolationError> {
        interpolate(t, &lookup)
    }

    #[test]
    fn compose_go_template_cases() {
        let cases = [
            ("$${foo}", "${foo}"),
            ("foo", "foo"),
            ("a $ string", "a $ string"),
            ("^REGEX$", "^REGEX$"),
            ("$}", "$}"),
            ("$", "$"),
            ("$FOO-bar", "first-bar"),
            ("This ${missing} var", "This  var"),
            ("This ${BAR} var", "This  var"),
            ("This $FOO var", "This first var"),
            ("This ${FOO} var", "This first var"),
            ("ok ${missing:-def}", "ok def"),
            ("ok ${missing-def}", "ok def"),
            ("${A:+${A},}B", "B"),
            ("ok ${BAR:-def}", "ok def"),
            ("ok ${FOO:-def}", "ok first"),
            ("ok ${BAR-def}", "ok "),
            ("ok ${UNSET_VAR:+presence_value}", "ok "),
            ("ok ${UNSET_VAR+presence_value}", "ok "),
            ("ok ${FOO:+presence_value}", "ok presence_value"),
            ("ok ${BAR:+presence_value}", "ok "),
            ("ok ${BAR+presence_value}", "ok presence_value"),
            ("${missing:-${FOO}}", "first"),
            ("${missing:-${missing2:-${FOO}x}}", "firstx"),
            ("${missing:-{\"json\":1}}", "{\"json\":1}"),
            ("${JSON}", r#"{"json":2}"#),
            ("${FOO:?err}", "first"),
            ("${BAR?err}", ""),
            ("$$FOO ${FOO}$$", "$FOO first$"),
        ];
        for (t, want) in cases {
            assert_eq!(sub(t).as_deref(), Ok(want), "{t}");
        }
    }

    #[test]
    fn invalid_templates() {
        for t in ["${", "${}", "${ }", "${ foo}", "${foo }", "${foo!}"] {
            assert!(
                matches!(sub(t), Err(InterpolationError::Invalid { .. })),
                "{t}: {:?}",
                sub(t)
            );
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let nest = |n: usize| "${A:-".repeat(n) + "x" + &"}".repeat(n);
        assert_eq!(sub(&nest(MAX_NESTING)), Ok("x".to_string()));
        assert_eq!(
            sub(&nest(MAX_NESTING + 1)),
            Err(InterpolationError::TooDeep)
        );
        // Deep enough to overflow a worker thread's stack without the bound.
        assert_eq!(sub(&nest(20_000)), Err(InterpolationError::TooDeep));
    }

    #[test]
    fn required_variables() {
        assert_eq!(
            sub("${missing:?set it in .env}"),
            Err(InterpolationError::Required {
                name: "missing".into(),
                message: "set it in .env".into()
            })
        );
        assert!(sub("${BAR:?}").is_err(), "empty fails with :?");
        assert!(sub("${missing?}").is_err());
        assert_eq!(
            sub("${missing:?need ${FOO}}")
                .expect_err("error")
                .to_string(),
            "required variable missing is missing a value: need first"
        );
    }
}
