//! A small check of the server URL, and its printable form without credentials.

use crate::secret::MASK;

/// The parts of a server URL that the wrapper cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrlParts {
    /// `http` or `https`.
    pub scheme: String,
    /// The host name or address (IPv6 addresses keep their brackets).
    pub host: String,
    /// The explicit port, if any.
    pub port: Option<u16>,
    /// Whether the URL carries `user:password@` credentials.
    pub has_credentials: bool,
}

impl ServerUrlParts {
    /// Whether the host is this machine (`localhost`, `127.0.0.0/8`, `::1`).
    pub fn is_loopback(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host == "::1"
            || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// Checks that `url` is an `http://` or `https://` URL with a host; says what is wrong if not.
pub fn parse_server_url(url: &str) -> Result<ServerUrlParts, String> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains white space or control characters".into());
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("has no scheme; it must start with http:// or https://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!("has scheme {scheme:?}; only http and https are supported"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (has_credentials, host_port) = match authority.rsplit_once('@') {
        Some((_, hp)) => (true, hp),
        None => (false, authority),
    };
    let (host, port) = if let Some(inner) = host_port.strip_prefix('[') {
        let (v6, after) = inner.split_once(']').ok_or("has an unclosed '[' in its host")?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("has an invalid IPv6 address {v6:?}"));
        }
        (format!("[{v6}]"), after.strip_prefix(':'))
    } else {
        match host_port.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (host_port.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    if !host.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(format!("has an invalid host {host:?}"));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(format!("has an invalid port {p:?} (expected 1 to 65535)")),
        },
    };
    Ok(ServerUrlParts {
        scheme,
        host,
        port,
        has_credentials,
    })
}

/// The URL safe to print: any `user:password@` credentials replaced by `***@`, every query
/// value by `***` (a key may be passed as `?api_key=...`; the names are kept), and a fragment
/// by `#***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let rest = match rest[..end].rfind('@') {
        Some(at) => format!("***@{}", &rest[at + 1..]),
        None => rest.to_owned(),
    };
    let (rest, fragment) = match rest.split_once('#') {
        Some((before, _)) => (before, "#***"),
        None => (rest.as_str(), ""),
    };
    let rest = match rest.split_once('?') {
        Some((path, query)) => {
            let masked: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) => format!("{name}={MASK}"),
                    None if pair.is_empty() => String::new(),
                    None => MASK.to_owned(),
                })
                .collect();
            format!("{path}?{}", masked.join("&"))
        }
        None => rest.to_owned(),
    };
    format!("{scheme}://{rest}{fragment}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_urls_parse() {
        let p = parse_server_url("http://127.0.0.1:5555").unwrap();
        assert_eq!(
            (p.scheme.as_str(), p.host.as_str(), p.port),
            ("http", "127.0.0.1", Some(5555))
        );
        assert!(p.is_loopback());
        let p = parse_server_url("https://microsandbox.example.com/prefix").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("microsandbox.example.com", None));
        assert!(!p.is_loopback());
        assert!(parse_server_url("http://[::1]:5555").unwrap().is_loopback());
        assert!(parse_server_url("HTTP://localhost").unwrap().is_loopback());
        assert!(parse_server_url("http://u:p@host:1").unwrap().has_credentials);
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, why) in [
            ("127.0.0.1:5555", "has no scheme"),
            ("ftp://host", "has scheme \"ftp\""),
            ("http://", "has no host"),
            ("http://:80", "has no host"),
            ("http://host:0", "invalid port \"0\""),
            ("http://host:99999", "invalid port"),
            ("http://host:", "invalid port \"\""),
            ("http://ho st", "white space"),
            ("http://h$st", "invalid host"),
            ("http://[zz]:1", "invalid IPv6"),
        ] {
            let err = parse_server_url(url).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(redact_url("http://user:pw@host:1/x@y"), "http://***@host:1/x@y");
        assert_eq!(redact_url("http://host:1/a"), "http://host:1/a");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn keys_in_query_strings_and_fragments_are_redacted() {
        assert_eq!(
            redact_url("http://host:1/p?api_key=msb_secret&x=1"),
            "http://host:1/p?api_key=***&x=***"
        );
        assert_eq!(redact_url("https://h/?msb_secret"), "https://h/?***");
        assert_eq!(redact_url("http://u:p@h/?k=v#tok"), "http://***@h/?k=***#***");
        assert_eq!(redact_url("http://h?a=b@c"), "http://h?a=***");
    }
}
