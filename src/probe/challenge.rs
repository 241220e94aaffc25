//! `WWW-Authenticate` challenges, read as containerd's `remotes/docker/auth/parse.go` reads
//! them.
//!
//! `ParseAuthHeader` looks at every `WWW-Authenticate` header line and reads **one** challenge
//! from each (`parseValueAndParams`): a scheme token, lower-cased, then `key=token` or
//! `key="quoted string"` pairs separated by commas (keys lower-cased, backslash escapes inside
//! quotes). It stops quietly at the first thing that is not such a pair, so a malformed tail
//! is ignored, never an error. Schemes other than Basic, Digest and Bearer (`Negotiate`,
//! `NTLM`, …) are skipped. The challenges are then sorted by priority, Bearer before Digest
//! before Basic, keeping header order within a scheme (`sort.Stable(byScheme)`). containerd's
//! authorizer takes the first Bearer (or Basic) of that list; Digest it does not implement.

use std::collections::BTreeMap;

/// A challenge containerd can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Bearer(BearerChallenge),
    Basic { realm: Option<String> },
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BearerChallenge {
    /// The token endpoint; empty when the challenge named none (containerd then fails with
    /// "no realm specified for token auth challenge").
    pub realm: String,
    pub service: Option<String>,
    pub scope: Option<String>,
    /// `invalid_token` or `insufficient_scope` when the registry refused a token.
    pub error: Option<String>,
}

/// Every usable challenge in `lines` (the values of the `WWW-Authenticate` headers, in order),
/// Bearer first then Basic, as containerd's `ParseAuthHeader` orders them.
pub fn from_header_lines<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Vec<Challenge> {
    let mut bearer = Vec::new();
    let mut basic = Vec::new();
    for line in lines {
        let (scheme, mut params) = parse_line(line);
        match scheme.as_str() {
            "bearer" => bearer.push(Challenge::Bearer(BearerChallenge {
                realm: params.remove("realm").unwrap_or_default(),
                service: params.remove("service"),
                scope: params.remove("scope"),
                error: params.remove("error").filter(|e| !e.is_empty()),
            })),
            "basic" => basic.push(Challenge::Basic {
                realm: params.remove("realm"),
            }),
            _ => {}
        }
    }
    bearer.extend(basic);
    bearer
}

/// The first usable challenge of one header value (convenience for tests and benches).
pub fn parse(value: &str) -> Option<Challenge> {
    from_header_lines([value.as_bytes()]).into_iter().next()
}

/// The names of the schemes in `lines` that containerd cannot use, for messages.
pub fn unusable_schemes<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Vec<String> {
    lines
        .into_iter()
        .map(parse_line)
        .filter(|(s, _)| !matches!(s.as_str(), "bearer" | "basic"))
        .map(|(s, _)| if s.is_empty() { "?".to_owned() } else { s })
        .collect()
}

/// RFC 2616 token characters: any CHAR except CTLs and separators.
fn is_token(b: u8) -> bool {
    b.is_ascii() && !b.is_ascii_control() && !b" \t\"(),/:;<=>?@[]\\{}".contains(&b)
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn token(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|b| is_token(**b)).count();
    s.split_at(n)
}

/// containerd `expectTokenOrQuoted`: an unterminated quoted string reads as empty and ends
/// the line.
fn token_or_quoted(s: &[u8]) -> (Vec<u8>, &[u8]) {
    let Some(rest) = s.strip_prefix(b"\"") else {
        let (t, r) = token(s);
        return (t.to_vec(), r);
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            b'"' => return (out, &rest[i + 1..]),
            b'\\' if i + 1 < rest.len() => {
                out.push(rest[i + 1]);
                i += 2;
            }
            b'\\' => break,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    (Vec::new(), &[])
}

/// containerd `parseValueAndParams` for one header line.
fn parse_line(line: &[u8]) -> (String, BTreeMap<String, String>) {
    let mut params = BTreeMap::new();
    let (scheme, mut s) = token(line);
    let scheme = String::from_utf8_lossy(scheme).to_ascii_lowercase();
    if scheme.is_empty() {
        return (scheme, params);
    }
    loop {
        let start = s.iter().take_while(|b| is_space(**b)).count();
        let (key, rest) = token(&s[start..]);
        if key.is_empty() {
            break;
        }
        let Some(rest) = rest.strip_prefix(b"=") else {
            break;
        };
        let (value, rest) = token_or_quoted(rest);
        params.insert(
            String::from_utf8_lossy(key).to_ascii_lowercase(),
            String::from_utf8_lossy(&value).into_owned(),
        );
        let skip = rest.iter().take_while(|b| is_space(**b)).count();
        let Some(rest) = rest[skip..].strip_prefix(b",") else {
            break;
        };
        s = rest;
    }
    (scheme, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(v: &str) -> BearerChallenge {
        match parse(v) {
            Some(Challenge::Bearer(b)) => b,
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

    // parse.go parseValueAndParams: keys lower-cased, quoted values keep commas, escapes.
    #[test]
    fn quoting_and_case() {
        let b = bearer(
            r#"bearer Realm="https://r.example/t?a=1,b=2", scope="repository:a/b:pull,push",service=svc"#,
        );
        assert_eq!(b.realm, "https://r.example/t?a=1,b=2");
        assert_eq!(b.scope.as_deref(), Some("repository:a/b:pull,push"));
        assert_eq!(b.service.as_deref(), Some("svc"));
        let b = bearer(r#"Bearer realm="a\"b\\c""#);
        assert_eq!(b.realm, r#"a"b\c"#);
        // Space before '=' ends the parameters (expectToken then HasPrefix "=").
        assert_eq!(bearer(r#"Bearer realm ="x""#).realm, "");
    }

    // parse.go ParseAuthHeader: one challenge per header line, Bearer sorted before Basic,
    // unknown schemes skipped.
    #[test]
    fn several_header_lines_bearer_first() {
        let lines: [&[u8]; 3] = [
            b"Negotiate",
            br#"Basic realm="r""#,
            br#"Bearer realm="https://t/token",service="s""#,
        ];
        let all = from_header_lines(lines);
        assert_eq!(all.len(), 2);
        assert!(matches!(&all[0], Challenge::Bearer(b) if b.realm == "https://t/token"));
        assert!(matches!(&all[1], Challenge::Basic { realm: Some(r) } if r == "r"));
        assert_eq!(unusable_schemes(lines), ["negotiate"]);
        // Two challenges in one line: only the first is read.
        assert_eq!(
            parse(r#"Basic realm="r", Bearer realm="https://t""#),
            Some(Challenge::Basic {
                realm: Some("r".into())
            })
        );
        assert_eq!(parse("Negotiate abc"), None);
    }

    #[test]
    fn malformed_input_is_lenient_not_a_panic() {
        assert_eq!(parse(""), None);
        assert_eq!(bearer("Bearer service=x").realm, "");
        assert_eq!(bearer("Bearer realm=\"unterminated").realm, "");
        assert_eq!(bearer(r#"Bearer realm="x" junk""#).realm, "x");
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
