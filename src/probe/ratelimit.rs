//! Docker Hub's pull-quota headers: `ratelimit-limit: 100;w=21600`,
//! `ratelimit-remaining: 76;w=21600`, `docker-ratelimit-source: 192.0.2.1`.
//!
//! Absent headers mean the registry does not limit this client (paid plans, other registries).

use http::HeaderMap;

use super::report::RateLimit;

/// One `N;w=SECONDS` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaValue {
    pub count: u64,
    pub window_seconds: Option<u64>,
}

/// Parses `N` or `N;w=SECONDS` (extra `;key=value` parameters are ignored).
pub fn parse_value(v: &str) -> Option<QuotaValue> {
    let mut parts = v.split(';').map(str::trim);
    let count = parts.next()?.parse::<u64>().ok()?;
    let mut window_seconds = None;
    for p in parts {
        if let Some((k, val)) = p.split_once('=')
            && k.trim().eq_ignore_ascii_case("w")
        {
            window_seconds = Some(val.trim().parse::<u64>().ok()?);
        }
    }
    Some(QuotaValue {
        count,
        window_seconds,
    })
}

/// The rate limit in a response's headers, if both limit and remaining are present and valid.
pub fn from_headers(headers: &HeaderMap) -> Option<RateLimit> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let limit = parse_value(get("ratelimit-limit")?)?;
    let remaining = parse_value(get("ratelimit-remaining")?)?;
    let source = get("docker-ratelimit-source")
        .map(str::trim)
        .filter(|s| is_safe_source(s))
        .map(str::to_owned);
    Some(RateLimit {
        limit: limit.count,
        remaining: remaining.count.min(limit.count),
        window_seconds: remaining.window_seconds.or(limit.window_seconds),
        source,
    })
}

/// The source is shown to people and may become a label: accept an IP address or a short,
/// plain token, never arbitrary remote text.
pub fn is_safe_source(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
        || (!s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(
            parse_value("100;w=21600"),
            Some(QuotaValue {
                count: 100,
                window_seconds: Some(21600)
            })
        );
        assert_eq!(
            parse_value(" 76 ; w=21600 "),
            Some(QuotaValue {
                count: 76,
                window_seconds: Some(21600)
            })
        );
        assert_eq!(
            parse_value("0"),
            Some(QuotaValue {
                count: 0,
                window_seconds: None
            })
        );
        assert_eq!(
            parse_value("10;W=3600;comment=x"),
            Some(QuotaValue {
                count: 10,
                window_seconds: Some(3600)
            })
        );
        for bad in [
            "",
            ";w=1",
            "-1;w=2",
            "abc",
            "10;w=",
            "10;w=x",
            "99999999999999999999999",
            "1\u{0};w=1",
        ] {
            assert_eq!(parse_value(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn headers_present_partial_and_absent() {
        let mut h = HeaderMap::new();
        assert_eq!(from_headers(&h), None);
        h.insert("ratelimit-limit", "100;w=21600".parse().unwrap());
        assert_eq!(from_headers(&h), None, "remaining missing");
        h.insert("ratelimit-remaining", "76;w=21600".parse().unwrap());
        h.insert("docker-ratelimit-source", "192.0.2.1".parse().unwrap());
        assert_eq!(
            from_headers(&h),
            Some(RateLimit {
                limit: 100,
                remaining: 76,
                window_seconds: Some(21600),
                source: Some("192.0.2.1".into())
            })
        );
        h.insert(
            "docker-ratelimit-source",
            "<script>x</script>".parse().unwrap(),
        );
        assert_eq!(from_headers(&h).unwrap().source, None);
        h.insert(
            "ratelimit-remaining",
            http::HeaderValue::from_bytes(b"7\xff").unwrap(),
        );
        assert_eq!(
            from_headers(&h),
            None,
            "invalid UTF-8 is ignored, not a panic"
        );
    }
}
