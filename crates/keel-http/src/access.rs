//! What both servers decide the same way about who may connect: which
//! hosts are loopback (a non-loopback bind needs authentication), and a
//! bearer token compared in constant time.

use axum::http::{HeaderMap, header};

/// Whether `host` is a loopback address: `localhost`, or an IP address that
/// is loopback once parsed (`127.0.0.1.nip.io` is a name, not loopback).
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `given` equals `expected`, in time that depends on the length of
/// `expected` only (not on where the first difference is).
pub fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = given.len() ^ expected.len();
    for (i, byte) in expected.iter().enumerate() {
        let other = given.get(i).copied().unwrap_or(!byte);
        difference |= usize::from(std::hint::black_box(other ^ byte));
    }
    difference == 0
}

/// Whether the request carries `Authorization: Bearer <expected>`.
pub fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|given| token_matches(given, expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_means_an_address_or_localhost() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "localhost",
            "LOCALHOST",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "0.0.0.0",
            "127.0.0.1.nip.io",
            "10.0.0.1",
            "::",
            "example.com",
            "",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn tokens_match_exactly() {
        assert!(token_matches(b"secret", b"secret"));
        for given in [
            &b""[..],
            b"secre",
            b"secret2",
            b"Secret",
            b"secreT",
            b"\0ecret",
        ] {
            assert!(!token_matches(given, b"secret"), "{given:?}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer s3".parse().unwrap());
        assert!(bearer_matches(&headers, "s3"));
        assert!(!bearer_matches(&headers, "s4"));
        headers.insert(header::AUTHORIZATION, "Basic s3".parse().unwrap());
        assert!(!bearer_matches(&headers, "s3"));
    }
}
