//! Which page origins may open a WebSocket (and call the HTTP routes).
//!
//! Browsers attach `Origin` to every WebSocket handshake, and cookies ride
//! along: a server that accepts any origin lets any web page act as its
//! visitors (cross-site WebSocket hijacking, the seed's `CheckOrigin` that
//! returns true). Clients that are not browsers send no `Origin` and are
//! always let in; same-origin pages (served by wshub itself) always are too.

/// The allow-list, normalised once at start.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    any: bool,
    allowed: Vec<String>,
}

impl OriginPolicy {
    /// Builds the policy from `--allowed-origin` values: empty means pages on
    /// localhost, 127.0.0.1 and [::1] (any port); `*` means any origin.
    pub fn new(origins: &[String]) -> Self {
        OriginPolicy {
            any: origins.iter().any(|o| o == "*"),
            allowed: origins.iter().map(|o| normalise(o)).collect(),
        }
    }

    /// Whether every origin is allowed (start-up warns about it).
    pub fn allows_any(&self) -> bool {
        self.any
    }

    /// Decides for a request with this `Origin` (if any) and `Host` header.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if self.any {
            return true;
        }
        let origin = normalise(origin);
        let Some(authority) = authority(&origin) else {
            return false;
        };
        if host.is_some_and(|host| host.eq_ignore_ascii_case(authority)) {
            return true;
        }
        if self.allowed.is_empty() {
            is_loopback_authority(authority)
        } else {
            self.allowed.contains(&origin)
        }
    }
}

fn normalise(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// `host[:port]` of an `http(s)://` origin.
fn authority(origin: &str) -> Option<&str> {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

fn is_loopback_authority(authority: &str) -> bool {
    let host = if authority.starts_with('[') {
        authority.split_inclusive(']').next().unwrap_or(authority)
    } else {
        authority.split(':').next().unwrap_or(authority)
    };
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
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
        ] {
            assert!(policy.allows(Some(origin), Some("wshub.example:8080")), "{origin}");
        }
        for origin in [
            "https://evil.example",
            "http://localhost.evil.example",
            "null",
            "file://",
            "http://127.0.0.1.evil.example",
        ] {
            assert!(!policy.allows(Some(origin), Some("wshub.example:8080")), "{origin}");
        }
    }

    #[test]
    fn same_origin_pages_are_always_allowed() {
        let policy = OriginPolicy::new(&["https://app.example".into()]);
        assert!(policy.allows(Some("https://chat.example:8443"), Some("chat.example:8443")));
        assert!(!policy.allows(Some("https://other.example"), Some("chat.example:8443")));
    }

    #[test]
    fn a_list_replaces_the_localhost_default() {
        let policy = OriginPolicy::new(&["https://App.Example/".into()]);
        assert!(policy.allows(Some("https://app.example"), None));
        assert!(!policy.allows(Some("http://localhost:3000"), None));
        assert!(OriginPolicy::new(&["*".into()]).allows(Some("https://any.example"), None));
    }
}
