//! `WWW-Authenticate` challenge parsing (RFC 7235 auth-params, as the registry token spec
//! and distribution's client use them).
//!
//! `scheme` is a token (compared case-insensitively), followed by comma-separated
//! `key=token` or `key="quoted string"` pairs; keys are lower-cased, backslash escapes work
//! inside quotes, and commas inside quotes (realms with query strings, multi-action scopes)
//! do not split. One header may carry several challenges; the first Bearer or Basic wins.

use std::collections::BTreeMap;

/// A parsed challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic { realm: Option<String> },
    Bearer(BearerChallenge),
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BearerChallenge {
    pub realm: String,
    pub service: Option<String>,
    pub scope: Option<String>,
    /// `invalid_token` or `insufficient_scope` when the registry refused a token.
    pub error: Option<String>,
}

/// Why a challenge could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("the header is empty")]
    Empty,
    #[error("malformed auth-params at byte {0}")]
    Syntax(usize),
    #[error("unsupported authentication scheme {0:?} (registries use Bearer or Basic)")]
    UnsupportedScheme(String),
    #[error("the Bearer challenge has no realm")]
    MissingRealm,
}

/// Parses one `WWW-Authenticate` header value.
///
/// # Errors
/// When the value is malformed, has no Bearer/Basic challenge, or a Bearer challenge lacks a realm.
pub fn parse(value: &str) -> Result<Challenge, ChallengeError> {
    let challenges = split_challenges(value)?;
    let mut first_unsupported = None;
    for (scheme, params) in challenges {
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                return Ok(Challenge::Basic {
                    realm: params.get("realm").cloned(),
                });
            }
            "bearer" => {
                let realm = params
                    .get("realm")
                    .filter(|r| !r.is_empty())
                    .ok_or(ChallengeError::MissingRealm)?;
                return Ok(Challenge::Bearer(BearerChallenge {
                    realm: realm.clone(),
                    service: params.get("service").cloned(),
                    scope: params.get("scope").cloned(),
                    error: params.get("error").cloned(),
                }));
            }
            _ => {
                first_unsupported.get_or_insert(scheme);
            }
        }
    }
    Err(first_unsupported.map_or(ChallengeError::Empty, ChallengeError::UnsupportedScheme))
}

type Params = BTreeMap<String, String>;

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Splits `Scheme k=v, k="v", Scheme2 k=v` into challenges.
fn split_challenges(value: &str) -> Result<Vec<(String, Params)>, ChallengeError> {
    let s: Vec<char> = value.chars().collect();
    let mut i = 0;
    let mut out: Vec<(String, Params)> = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && (s[*i] == ' ' || s[*i] == '\t') {
            *i += 1;
        }
    };
    let read_token = |i: &mut usize| {
        let start = *i;
        while *i < s.len() && is_tchar(s[*i]) {
            *i += 1;
        }
        s[start..*i].iter().collect::<String>()
    };
    loop {
        // Skip separators between challenges / params.
        while i < s.len() && (s[i] == ' ' || s[i] == '\t' || s[i] == ',') {
            i += 1;
        }
        if i >= s.len() {
            break;
        }
        let start = i;
        let token = read_token(&mut i);
        if token.is_empty() {
            return Err(ChallengeError::Syntax(start));
        }
        skip_ws(&mut i);
        if i < s.len() && s[i] == '=' {
            // A parameter of the current challenge.
            let Some((_, params)) = out.last_mut() else {
                return Err(ChallengeError::Syntax(start));
            };
            i += 1;
            skip_ws(&mut i);
            let val = if i < s.len() && s[i] == '"' {
                i += 1;
                let mut v = String::new();
                loop {
                    match s.get(i) {
                        None => return Err(ChallengeError::Syntax(i)),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            v.push(*s.get(i + 1).ok_or(ChallengeError::Syntax(i))?);
                            i += 2;
                        }
                        Some(c) => {
                            v.push(*c);
                            i += 1;
                        }
                    }
                }
                v
            } else {
                let v = read_token(&mut i);
                // token68-style values such as base64 with '/' or '=' are not used by registries.
                if v.is_empty() {
                    return Err(ChallengeError::Syntax(i));
                }
                v
            };
            params.insert(token.to_ascii_lowercase(), val);
            skip_ws(&mut i);
            if i < s.len() && s[i] != ',' {
                return Err(ChallengeError::Syntax(i));
            }
        } else {
            // A new challenge scheme.
            out.push((token, Params::new()));
        }
    }
    if out.is_empty() {
        return Err(ChallengeError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(v: &str) -> BearerChallenge {
        match parse(v).unwrap() {
            Challenge::Bearer(b) => b,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn docker_hub_challenges() {
        let b =
            bearer(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#);
        assert_eq!(b.realm, "https://auth.docker.io/token");
        assert_eq!(b.service.as_deref(), Some("registry.docker.io"));
        assert_eq!(b.scope, None);
        let b = bearer(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/x:pull",error="insufficient_scope""#,
        );
        assert_eq!(b.scope.as_deref(), Some("repository:library/x:pull"));
        assert_eq!(b.error.as_deref(), Some("insufficient_scope"));
    }

    #[test]
    fn quoting_case_and_spacing() {
        let b = bearer(
            r#"bearer  Realm = "https://r.example/t?a=1,b=2" , scope="repository:a/b:pull,push", service=svc"#,
        );
        assert_eq!(b.realm, "https://r.example/t?a=1,b=2");
        assert_eq!(b.scope.as_deref(), Some("repository:a/b:pull,push"));
        assert_eq!(b.service.as_deref(), Some("svc"));
        let b = bearer(r#"Bearer realm="a\"b\\c""#);
        assert_eq!(b.realm, r#"a"b\c"#);
    }

    #[test]
    fn basic_and_multiple_challenges() {
        assert_eq!(
            parse(r#"Basic realm="Registry Realm""#).unwrap(),
            Challenge::Basic {
                realm: Some("Registry Realm".into())
            }
        );
        assert_eq!(parse("Basic").unwrap(), Challenge::Basic { realm: None });
        let b = bearer(r#"Negotiate, Bearer realm="https://t""#);
        assert_eq!(b.realm, "https://t");
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let cases: &[(&str, ChallengeError)] = &[
            ("", ChallengeError::Empty),
            ("   ", ChallengeError::Empty),
            ("Bearer service=x", ChallengeError::MissingRealm),
            ("Bearer realm=\"\"", ChallengeError::MissingRealm),
            (
                "Negotiate abc",
                ChallengeError::UnsupportedScheme("Negotiate".into()),
            ),
            ("Bearer realm=\"unterminated", ChallengeError::Syntax(26)),
            ("=x", ChallengeError::Syntax(0)),
            ("Bearer realm=\"x\" junk\"", ChallengeError::Syntax(17)),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).as_ref().unwrap_err(), want, "{input:?}");
        }
        for hostile in [
            "\u{0}\u{1}\u{7f}",
            "Bearer realm=\"\\",
            "Bearer realm=",
            "Bearer ,,,, realm=\"x\"",
            "ü=ö",
            &"a=".repeat(1000),
        ] {
            let _ = parse(hostile);
        }
    }
}
