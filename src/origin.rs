//! Which page origins may open a WebSocket (and call the HTTP routes).
//!
//! Browsers attach `Origin` to every WebSocket handshake, and cookies ride
//! along: a server that accepts any origin lets any web page act as its
//! visitors (cross-site WebSocket hijacking, the seed's `CheckOrigin` that
//! returns true). Clients that are not browsers send no `Origin` and are
//! always let in.
//!
//! Origins are parsed with a URL parser, never split on ':' by hand:
//! `http://localhost:80@evil.com` is a page on evil.com (with user info,
//! which no browser sends as an origin) and `http://[::1].evil.com` is no
//! origin at all.
//!
//! A page whose `Origin` equals the request's `Host` is same-origin (served
//! by wshub itself) only when that Host is one this server is known by:
//! otherwise DNS rebinding (evil.com re-pointed at 127.0.0.1) would make
//! any site "same-origin" with a local wshub. Known hosts are loopback
//! names and addresses, IP literals (a rebinding page always has a name),
//! and the hosts of the `--allowed-origin` entries.

use std::net::IpAddr;

use url::{Host, Url};

/// A page origin: scheme, host and port (the default port filled in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    secure: bool,
    host: Host<String>,
    port: u16,
}

impl Origin {
    /// Parses an origin as a browser sends it (`http://host[:port]`; a
    /// trailing `/` and any case accepted). `None` for anything else: other
    /// schemes, `null`, user info, a path, a query, whitespace.
    pub fn parse(text: &str) -> Option<Origin> {
        let text = text.trim();
        // The URL parser drops tabs and newlines inside a URL; an origin
        // with any is not one a browser sent.
        if text.is_empty() || text.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return None;
        }
        let url = Url::parse(text).ok()?;
        let secure = match url.scheme() {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        let bare = url.username().is_empty()
            && url.password().is_none()
            && url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none();
        if !bare {
            return None;
        }
        Some(Origin {
            secure,
            host: url.host()?.to_owned(),
            port: url.port_or_known_default()?,
        })
    }

    fn default_port(&self) -> u16 {
        if self.secure {
            443
        } else {
            80
        }
    }
}

/// Why [`OriginPolicy::check`] refused a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginDenied {
    /// The origin is not allowed (or is not an origin at all).
    NotAllowed,
    /// The Origin equals the Host, but that Host is not one this server is
    /// known by: a DNS-rebinding page, or wshub behind a hostname that
    /// `--allowed-origin` should list.
    UnknownHost,
}

/// The allow-list, parsed once at start.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    any: bool,
    allowed: Vec<Origin>,
}

impl OriginPolicy {
    /// Builds the policy from `--allowed-origin` values: empty means pages on
    /// localhost, 127.0.0.1 and [::1] (any port); `*` means any origin.
    /// Entries that are not origins (the configuration refuses them) are
    /// left out.
    pub fn new(origins: &[String]) -> Self {
        OriginPolicy {
            any: origins.iter().any(|o| o == "*"),
            allowed: origins.iter().filter_map(|o| Origin::parse(o)).collect(),
        }
    }

    /// Whether every origin is allowed (start-up warns about it).
    pub fn allows_any(&self) -> bool {
        self.any
    }

    /// Whether a request with this `Origin` (if any) and `Host` may go on.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        self.check(origin, host).is_ok()
    }

    /// Decides for a request with this `Origin` (if any) and `Host` header.
    ///
    /// # Errors
    /// [`OriginDenied`]: why the page may not.
    pub fn check(&self, origin: Option<&str>, host: Option<&str>) -> Result<(), OriginDenied> {
        let Some(origin) = origin else {
            return Ok(());
        };
        if self.any {
            return Ok(());
        }
        let origin = Origin::parse(origin).ok_or(OriginDenied::NotAllowed)?;
        let listed = if self.allowed.is_empty() {
            is_loopback(&origin.host)
        } else {
            self.allowed.contains(&origin)
        };
        if listed {
            return Ok(());
        }
        match host.and_then(|host| parse_host(host, &origin)) {
            Some((host, port)) if host == origin.host && port == origin.port => {
                if self.knows_host(&host) {
                    Ok(())
                } else {
                    Err(OriginDenied::UnknownHost)
                }
            }
            _ => Err(OriginDenied::NotAllowed),
        }
    }

    /// Whether `host` is a name or address this server is known by, for
    /// the same-origin rule.
    fn knows_host(&self, host: &Host<String>) -> bool {
        matches!(host, Host::Ipv4(_) | Host::Ipv6(_))
            || is_loopback(host)
            || self.allowed.iter().any(|allowed| &allowed.host == host)
    }
}

/// A `Host` header's host and port, read with the scheme of the page's
/// origin (which decides the default port). `None` when it is not a bare
/// `host[:port]`.
fn parse_host(host: &str, origin: &Origin) -> Option<(Host<String>, u16)> {
    let host = host.trim();
    let bare = !host.is_empty()
        && !host
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || matches!(b, b'/' | b'\\' | b'@' | b'?' | b'#'));
    if !bare {
        return None;
    }
    let scheme = if origin.secure { "https" } else { "http" };
    let url = Url::parse(&format!("{scheme}://{host}/")).ok()?;
    let port = url.port().unwrap_or(origin.default_port());
    Some((url.host()?.to_owned(), port))
}

fn is_loopback(host: &Host<String>) -> bool {
    match host {
        Host::Domain(name) => name == "localhost",
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_allows_native_clients_and_local_pages_only() {
        let policy = OriginPolicy::new(&[]);
        assert!(policy.allows(None, Some("example.com")));
        for origin in [
            "http://localhost:5173",
            "http://127.0.0.1",
            "https://[::1]:8443",
            "HTTP://LOCALHOST",
            "http://localhost/",
        ] {
            assert!(policy.allows(Some(origin), Some("wshub.example:8080")), "{origin}");
        }
        for origin in [
            "https://evil.example",
            "http://localhost.evil.example",
            "null",
            "file://",
            "http://127.0.0.1.evil.example",
            "ws://localhost",
            "",
        ] {
            assert!(!policy.allows(Some(origin), Some("wshub.example:8080")), "{origin}");
        }
    }

    #[test]
    fn origins_that_only_look_local_are_refused() {
        let policy = OriginPolicy::new(&[]);
        for origin in [
            // user info: the host is evil.com
            "http://localhost:80@evil.com",
            "http://localhost@evil.com",
            "http://127.0.0.1:8080@evil.com:8080",
            "http://[::1]@evil.com",
            // not an IPv6 literal followed by anything
            "http://[::1].evil.com",
            "http://[::1]evil.com",
            "http://[::1]:80.evil.com",
            // a path, a query, a fragment: not an origin
            "http://localhost/evil",
            "http://localhost?x",
            "http://localhost#x",
            // whitespace the URL parser would quietly drop
            "http://local\thost",
            "http://localhost.",
            "http://localhost.evil.com:80",
        ] {
            assert!(!policy.allows(Some(origin), Some("127.0.0.1:8080")), "{origin}");
            assert!(!policy.allows(Some(origin), Some("evil.com")), "{origin}");
        }
    }

    #[test]
    fn origin_equal_to_an_unknown_host_is_dns_rebinding() {
        let policy = OriginPolicy::new(&[]);
        assert_eq!(
            policy.check(Some("http://evil.com:8080"), Some("evil.com:8080")),
            Err(OriginDenied::UnknownHost)
        );
        assert_eq!(
            policy.check(Some("http://evil.com"), Some("evil.com:80")),
            Err(OriginDenied::UnknownHost)
        );
        // A page served by wshub on a LAN address or a loopback name is
        // same-origin: no rebinding page has an IP literal for its origin.
        assert!(policy.allows(Some("http://192.168.1.5:8080"), Some("192.168.1.5:8080")));
        assert!(policy.allows(Some("http://[fd00::5]:8080"), Some("[fd00::5]:8080")));
        assert!(policy.allows(Some("https://localhost:8443"), Some("LOCALHOST:8443")));
        // The same host on another port or scheme is another origin.
        assert_eq!(
            policy.check(Some("http://192.168.1.5:9000"), Some("192.168.1.5:8080")),
            Err(OriginDenied::NotAllowed)
        );
        assert_eq!(
            policy.check(Some("https://192.168.1.5"), Some("192.168.1.5:80")),
            Err(OriginDenied::NotAllowed)
        );
        assert!(policy.allows(Some("https://192.168.1.5"), Some("192.168.1.5:443")));
        // A Host with user info or a path is no host at all.
        assert_eq!(
            policy.check(Some("http://evil.com"), Some("127.0.0.1@evil.com")),
            Err(OriginDenied::NotAllowed)
        );
    }

    #[test]
    fn the_hosts_of_allowed_origins_are_known() {
        let policy = OriginPolicy::new(&["https://chat.example".into()]);
        assert!(policy.allows(Some("https://chat.example"), Some("anything.example")));
        // Same-origin on the listed host, another port: allowed.
        assert!(policy.allows(Some("http://chat.example:8080"), Some("chat.example:8080")));
        assert_eq!(
            policy.check(Some("https://other.example"), Some("other.example")),
            Err(OriginDenied::UnknownHost)
        );
        assert!(!policy.allows(Some("https://other.example"), Some("chat.example:8443")));
    }

    #[test]
    fn a_list_replaces_the_localhost_default() {
        let policy = OriginPolicy::new(&["https://App.Example/".into()]);
        assert!(policy.allows(Some("https://app.example"), None));
        assert!(policy.allows(Some("https://app.example:443"), None));
        assert!(!policy.allows(Some("http://app.example"), None));
        assert!(!policy.allows(Some("http://localhost:3000"), None));
        // Same-origin on a loopback host still is.
        assert!(policy.allows(Some("http://localhost:3000"), Some("localhost:3000")));
        assert!(OriginPolicy::new(&["*".into()]).allows(Some("https://any.example"), Some("evil.example")));
    }

    #[test]
    fn origins_parse_as_browsers_send_them() {
        assert!(Origin::parse("https://app.example").is_some());
        assert!(Origin::parse("https://app.example/").is_some());
        assert_eq!(Origin::parse("http://127.1"), Origin::parse("http://127.0.0.1"));
        for bad in [
            "app.example",
            "https://",
            "https://a.example/x",
            "https://u:p@a.example",
            "null",
        ] {
            assert_eq!(Origin::parse(bad), None, "{bad}");
        }
    }
}
