//! `.env` and `env_file` files with Compose's rules (compose-go's `dotenv` parser): `KEY=VALUE`
//! or `KEY: VALUE`, optional `export `, `#` comment lines; unquoted values end at the line's end
//! or at ` #`, are trimmed and interpolated; single-quoted values are literal; double-quoted
//! values may span lines, understand `\n`, `\t`, `\"`, `\\`, `\$` and are interpolated; a bare
//! `KEY` takes the variable from the lookup (and is skipped when it is unset). Variables defined
//! earlier in the file can be used by later lines.

use std::collections::BTreeMap;

use super::interpolate::interpolate;

/// A problem in an env file, with its 1-based line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DotenvError {
    /// 1-based line.
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

/// Parses an env file; `lookup` resolves variables not defined in the file itself (the
/// process environment, the project's `.env`). Returns the variables in file order.
///
/// # Errors
/// [`DotenvError`] with the line of the first problem.
pub fn parse(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, DotenvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out: Vec<(String, String)> = Vec::new();
    let mut rest = text;
    let mut line = 1u64;
    loop {
        // Skip blank space and comment lines.
        let trimmed = rest.trim_start_matches(|c: char| c.is_whitespace());
        line += rest[..rest.len() - trimmed.len()].matches('\n').count() as u64;
        rest = trimmed;
        if rest.is_empty() {
            break;
        }
        if rest.starts_with('#') {
            rest = rest.find('\n').map_or("", |i| &rest[i..]);
            continue;
        }
        if let Some(r) = rest.strip_prefix("export")
            && r.starts_with([' ', '\t'])
        {
            rest = r.trim_start_matches([' ', '\t']);
        }
        let end = rest.find(['=', ':', '\n']).unwrap_or(rest.len());
        let key = rest[..end].trim_end();
        if key.is_empty() {
            return Err(DotenvError {
                line,
                message: "expected KEY=VALUE".into(),
            });
        }
        if let Some(bad) = key
            .chars()
            .find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '[' | ']')))
        {
            return Err(DotenvError {
                line,
                message: format!("unexpected character {bad:?} in variable name {key:?}"),
            });
        }
        let key = key.to_string();
        let defined = |k: &str, out: &Vec<(String, String)>| {
            out.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .or_else(|| lookup(k))
        };
        if end == rest.len() || rest.as_bytes()[end] == b'\n' {
            // A bare KEY: inherited.
            if let Some(v) = lookup(&key) {
                out.push((key, v));
            }
            rest = &rest[end..];
            continue;
        }
        let value_start = rest[end + 1..].trim_start_matches([' ', '\t']);
        let look = |k: &str| defined(k, &out);
        let (value, after, lines) = match value_start.chars().next() {
            Some(q @ ('"' | '\'')) => {
                quoted(value_start, q, &look).map_err(|message| DotenvError { line, message })?
            }
            _ => {
                let cut = value_start.find('\n').unwrap_or(value_start.len());
                let (raw, after) = value_start.split_at(cut);
                let raw = raw.split_once(" #").map_or(raw, |(v, _)| v).trim_end();
                let v = interpolate(raw, &look).map_err(|e| DotenvError {
                    line,
                    message: e.to_string(),
                })?;
                (v, after, 1)
            }
        };
        line += lines - 1;
        out.retain(|(k, _)| *k != key);
        out.push((key, value));
        rest = after;
    }
    Ok(out)
}

/// A quoted value starting at `s` (its first char is the quote `q`): (value, rest, lines spanned).
fn quoted<'a>(
    s: &'a str,
    q: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, &'a str, u64), String> {
    let mut raw = String::new();
    let mut escape = false;
    for (i, c) in s.char_indices().skip(1) {
        if c == q && !escape {
            let value = if q == '"' {
                interpolate(&unescape(&raw), lookup).map_err(|e| e.to_string())?
            } else {
                raw
            };
            let lines = s[..i].matches('\n').count() as u64 + 1;
            let after = &s[i + 1..];
            // The rest of the line (a comment) is ignored.
            let after = after.find('\n').map_or("", |n| &after[n..]);
            return Ok((value, after, lines));
        }
        if escape {
            escape = false;
            if c != q {
                raw.push('\\');
            }
            raw.push(c);
        } else if c == '\\' {
            escape = true;
        } else {
            raw.push(c);
        }
    }
    Err(format!(
        "unterminated quoted value {}",
        s.lines().next().unwrap_or(s)
    ))
}

/// Shell escapes of a double-quoted value; `\$` becomes `$$` (a literal `$` after
/// interpolation).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('a') => out.push('\u{7}'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('$') => out.push_str("$$"),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// The variables as a map (the last definition wins).
pub fn to_map(vars: Vec<(String, String)>) -> BTreeMap<String, String> {
    vars.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(text: &str) -> Vec<(String, String)> {
        parse(text, &|k| {
            (k == "INHERITED").then(|| "from-env".to_string())
        })
        .expect("valid")
    }

    fn get(vars: &[(String, String)], k: &str) -> Option<String> {
        vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn compose_quoting_rules() {
        let vars = env(concat!(
            "# comment\n",
            "PLAIN=value  # trailing comment\n",
            "export EXPORTED=yes\n",
            "YAML_STYLE: colon\n",
            "SINGLE='literal $PLAIN \\n'\n",
            "DOUBLE=\"line1\\nline2 $PLAIN \\$HOME \\\"q\\\"\"\n",
            "HASH=a#b\n",
            "MULTI=\"first\n",
            "second\"\n",
            "EMPTY=\n",
            "REF=${PLAIN}-${UNSET:-dflt}\n",
            "INHERITED\n",
            "NOT_SET_ANYWHERE\n",
            "SPACED =  padded  \n",
        ));
        assert_eq!(get(&vars, "PLAIN").as_deref(), Some("value"));
        assert_eq!(get(&vars, "EXPORTED").as_deref(), Some("yes"));
        assert_eq!(get(&vars, "YAML_STYLE").as_deref(), Some("colon"));
        assert_eq!(get(&vars, "SINGLE").as_deref(), Some("literal $PLAIN \\n"));
        assert_eq!(
            get(&vars, "DOUBLE").as_deref(),
            Some("line1\nline2 value $HOME \"q\"")
        );
        assert_eq!(get(&vars, "HASH").as_deref(), Some("a#b"));
        assert_eq!(get(&vars, "MULTI").as_deref(), Some("first\nsecond"));
        assert_eq!(get(&vars, "EMPTY").as_deref(), Some(""));
        assert_eq!(get(&vars, "REF").as_deref(), Some("value-dflt"));
        assert_eq!(get(&vars, "INHERITED").as_deref(), Some("from-env"));
        assert_eq!(get(&vars, "NOT_SET_ANYWHERE"), None);
        assert_eq!(get(&vars, "SPACED").as_deref(), Some("padded"));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("A=1\n\nB C=2\n", &|_| None).expect_err("error");
        assert_eq!(e.line, 3, "{e:?}");
        let e = parse("A=1\nB=\"open\n", &|_| None).expect_err("error");
        assert_eq!(e.line, 2, "{e:?}");
        assert!(e.message.contains("unterminated"), "{e:?}");
    }
}
