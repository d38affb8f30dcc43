//! The target: URL parsing, name resolution (once, before the load starts)
//! and the loopback rule.

use std::net::{IpAddr, SocketAddr};

use http::Uri;

use crate::LoadtestError;

/// Where the load goes: one resolved socket address plus what each request
/// carries in its request line and `Host` header.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as the user gave it.
    pub url: String,
    /// The address every connection goes to (resolved once).
    pub addr: SocketAddr,
    /// The `Host` header value (`host[:port]` as written in the URL).
    pub authority: String,
    /// Path and query sent in the request line (`/` when the URL has none).
    pub path_and_query: Uri,
}

impl Target {
    /// Parses `url` (plain `http://` only), resolves its host and, unless
    /// `allow_remote`, refuses any target that resolves to a non-loopback
    /// address. Every resolved address must be loopback, so a name that
    /// resolves to a mix is refused too.
    pub async fn resolve(url: &str, allow_remote: bool) -> Result<Target, LoadtestError> {
        let bad = |reason: &str| LoadtestError::Url {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if !url.contains("://") {
            return Err(bad(
                "the URL needs a scheme, e.g. http://127.0.0.1:5000/ping",
            ));
        }
        let uri: Uri = url
            .parse()
            .map_err(|error: http::uri::InvalidUri| bad(&error.to_string()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "https is not supported: keel loadtest speaks plain HTTP/1.1",
                ));
            }
            Some(other) => return Err(bad(&format!("unsupported scheme {other:?}"))),
            None => {
                return Err(bad(
                    "the URL needs a scheme, e.g. http://127.0.0.1:5000/ping",
                ));
            }
        }
        let authority = uri
            .authority()
            .ok_or_else(|| bad("the URL has no host"))?
            .clone();
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the URL are not supported; use -H"));
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = authority.port_u16().unwrap_or(80);
        let path_and_query: Uri = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .parse()
            .map_err(|error: http::uri::InvalidUri| bad(&error.to_string()))?;

        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|source| LoadtestError::Resolve {
                    host: host.to_owned(),
                    source,
                })?
                .collect(),
        };
        let Some(&first) = addrs.first() else {
            return Err(LoadtestError::Resolve {
                host: host.to_owned(),
                source: std::io::Error::other("no addresses"),
            });
        };
        if !allow_remote && let Some(remote) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            return Err(LoadtestError::NotLoopback {
                host: host.to_owned(),
                addr: remote.ip(),
            });
        }
        // Prefer an IPv4 address (what servers bound to 127.0.0.1 listen on).
        let addr = addrs
            .iter()
            .copied()
            .find(SocketAddr::is_ipv4)
            .unwrap_or(first);
        Ok(Target {
            url: url.to_owned(),
            addr,
            authority: authority.as_str().to_owned(),
            path_and_query,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn resolve(url: &str, allow_remote: bool) -> Result<Target, LoadtestError> {
        Target::resolve(url, allow_remote).await
    }

    #[tokio::test]
    async fn loopback_targets_are_accepted() {
        let t = resolve("http://127.0.0.1:8080/invocations?x=1", false)
            .await
            .unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.path_and_query.to_string(), "/invocations?x=1");
        let t = resolve("http://127.1.2.3", false).await.unwrap();
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.path_and_query.to_string(), "/");
        let t = resolve("http://[::1]:9000/ping", false).await.unwrap();
        assert_eq!(t.addr, "[::1]:9000".parse().unwrap());
        let t = resolve("http://localhost:9000/ping", false).await.unwrap();
        assert!(t.addr.ip().is_loopback());
    }

    #[tokio::test]
    async fn remote_targets_need_allow_remote() {
        for url in [
            "http://10.0.0.1:80/",
            "http://[2001:db8::1]/",
            "http://0.0.0.0:80/",
        ] {
            match resolve(url, false).await {
                Err(LoadtestError::NotLoopback { .. }) => {}
                other => panic!("{url}: expected NotLoopback, got {other:?}"),
            }
            assert!(resolve(url, true).await.is_ok(), "{url} with allow_remote");
        }
    }

    #[tokio::test]
    async fn bad_urls_are_named() {
        for (url, needle) in [
            ("https://127.0.0.1/", "https is not supported"),
            ("127.0.0.1:80/x", "scheme"),
            ("ftp://127.0.0.1/", "unsupported scheme"),
            ("http://user:pw@127.0.0.1/", "credentials"),
        ] {
            let error = resolve(url, false).await.unwrap_err().to_string();
            assert!(error.contains(needle), "{url}: {error}");
            assert!(error.contains(url), "{url}: {error}");
        }
    }
}
