//! The server under test: a `ws://` URL, resolved once, and the loopback-only rule.

use std::net::{IpAddr, SocketAddr};

/// A resolved `ws://host[:port]/path` URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// Where connections go (the first IPv4 address the host resolves to, else the first one).
    pub addr: SocketAddr,
    /// `Host` header value: the URL's authority.
    pub host_header: String,
    /// Request target: path and query, `/` when the URL has none.
    pub path: String,
}

impl Target {
    /// Parses and resolves `url`.
    ///
    /// # Errors
    /// The URL is not `ws://` (TLS is not supported), does not resolve, or resolves to an address
    /// outside 127.0.0.0/8 and ::1 while `allow_remote` is false: load is only ever aimed at
    /// this machine unless the user says otherwise.
    pub async fn resolve(url: &str, allow_remote: bool) -> anyhow::Result<Self> {
        let (host, port, path) = split_url(url)?;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| anyhow::anyhow!("cannot resolve {host}: {e}"))?
            .collect();
        anyhow::ensure!(!addrs.is_empty(), "{host} resolves to no address");
        if !allow_remote {
            if let Some(remote) = addrs.iter().find(|a| !is_loopback(a.ip())) {
                anyhow::bail!(
                    "{host} resolves to {}, which is not a loopback address; \
                     pass --allow-remote to load a server on another machine",
                    remote.ip()
                );
            }
        }
        let addr = addrs.iter().find(|a| a.is_ipv4()).copied().unwrap_or(addrs[0]);
        let authority = url["ws://".len()..].split(['/', '?']).next().unwrap_or_default();
        Ok(Self {
            url: url.to_string(),
            addr,
            host_header: authority.to_string(),
            path,
        })
    }
}

/// True for 127.0.0.0/8 and ::1 (and IPv4-mapped 127.x).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// Splits `ws://host[:port][/path]` into host, port (80 by default) and path.
fn split_url(url: &str) -> anyhow::Result<(String, u16, String)> {
    let rest = match url.strip_prefix("ws://") {
        Some(rest) => rest,
        None if url.starts_with("wss://") => anyhow::bail!("wss:// is not supported: use ws://"),
        None => anyhow::bail!("{url:?} is not a ws:// URL"),
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let path = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    anyhow::ensure!(!authority.contains('@'), "user info in the URL is not supported");
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| anyhow::anyhow!("unclosed [ in {url:?}"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse()?,
            None if after.is_empty() => 80,
            None => anyhow::bail!("bad authority in {url:?}"),
        };
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (
                host.to_string(),
                port.parse()
                    .map_err(|_| anyhow::anyhow!("bad port {port:?} in {url:?}"))?,
            ),
            None => (authority.to_string(), 80),
        }
    };
    anyhow::ensure!(!host.is_empty(), "no host in {url:?}");
    Ok((host, port, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        let cases = [
            ("ws://127.0.0.1:8080/echo", ("127.0.0.1", 8080, "/echo")),
            ("ws://localhost/ws?room=a", ("localhost", 80, "/ws?room=a")),
            ("ws://[::1]:9000", ("::1", 9000, "/")),
            ("ws://h:1?x", ("h", 1, "/?x")),
        ];
        for (url, (host, port, path)) in cases {
            assert_eq!(split_url(url).unwrap(), (host.to_string(), port, path.to_string()));
        }
        assert!(split_url("wss://127.0.0.1/").is_err());
        assert!(split_url("http://127.0.0.1/").is_err());
    }

    #[tokio::test]
    async fn refuses_remote_hosts_unless_allowed() {
        let local = Target::resolve("ws://127.0.0.2:1/x", false).await.unwrap();
        assert_eq!(local.host_header, "127.0.0.2:1");
        assert!(Target::resolve("ws://[::1]:1/", false).await.is_ok());
        let err = Target::resolve("ws://192.0.2.1:80/", false).await.unwrap_err();
        assert!(err.to_string().contains("--allow-remote"));
        assert!(Target::resolve("ws://192.0.2.1:80/", true).await.is_ok());
    }
}
