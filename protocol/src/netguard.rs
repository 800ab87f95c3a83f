//! The SSRF guard: webhooks and downloads go only to public addresses.
//!
//! The host is resolved once, every address is checked, and the connection is
//! pinned to a checked address (no second lookup that a hostile DNS server
//! could answer differently). Redirects are never followed. An allow-list
//! lets local demos and tests call 127.0.0.1.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use url::Url;

/// Where webhooks may go.
#[derive(Debug, Clone, Default)]
pub struct DestinationPolicy {
    /// Allow plain http (local use only).
    pub allow_http: bool,
    /// Hosts or IP addresses allowed even though they are private.
    pub allow_hosts: HashSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a valid URL: {0}")]
    Invalid(String),
    #[error("the scheme must be https{}", if *.0 { " or http" } else { "" })]
    Scheme(bool),
    #[error("{host} resolves to {addr}, a {kind} address; webhooks only go to public addresses")]
    Forbidden { host: String, addr: IpAddr, kind: &'static str },
    #[error("cannot resolve {host}: {reason}")]
    Unresolvable { host: String, reason: String },
}

/// A checked destination: connect to `addr` for `host`.
#[derive(Debug, Clone)]
pub struct Destination {
    pub url: Url,
    pub host: String,
    pub addr: SocketAddr,
}

/// Why an address is not public, if it is not.
pub fn forbidden_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4).map(|_| "IPv4-mapped non-public");
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if first & 0xfe00 == 0xfc00 {
                // Unique local, which includes AWS's metadata address fd00:ec2::254.
                Some("private (unique local)")
            } else if v6.segments()[..6] == [0, 0, 0, 0, 0, 0] {
                Some("IPv4-compatible")
            } else if v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                Some("NAT64")
            } else if first == 0x2001 && v6.segments()[1] == 0x0db8 {
                Some("documentation")
            } else {
                None
            }
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip == Ipv4Addr::new(169, 254, 169, 254) {
        Some("cloud metadata")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if a == 100 && (64..128).contains(&b) {
        Some("carrier-grade NAT")
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Some("multicast or reserved")
    } else if ip.is_documentation() || (a == 198 && (b == 18 || b == 19)) || (a == 192 && b == 0 && ip.octets()[2] == 0) {
        Some("reserved")
    } else {
        None
    }
}

impl DestinationPolicy {
    fn allowed(&self, host: &str, ip: IpAddr) -> bool {
        self.allow_hosts.contains(&host.to_ascii_lowercase()) || self.allow_hosts.contains(&ip.to_string())
    }

    /// Checks what can be checked without DNS (at submit time): scheme, and
    /// the address when the host is a literal IP.
    pub fn check_static(&self, raw: &str) -> Result<Url, Refusal> {
        let url = Url::parse(raw).map_err(|e| Refusal::Invalid(e.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err(Refusal::Scheme(self.allow_http)),
        }
        let host = url.host().ok_or_else(|| Refusal::Invalid("no host".into()))?;
        let literal = match host {
            url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
            url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
            url::Host::Domain(_) => None,
        };
        if let Some(ip) = literal {
            let host = url.host_str().unwrap_or_default().to_string();
            if let (Some(kind), false) = (forbidden_kind(ip), self.allowed(&host, ip)) {
                return Err(Refusal::Forbidden { host, addr: ip, kind });
            }
        }
        Ok(url)
    }

    /// Resolves and checks every address; the first one is used to connect.
    pub async fn resolve(&self, raw: &str) -> Result<Destination, Refusal> {
        let url = self.check_static(raw)?;
        let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']).to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| Refusal::Unresolvable { host: host.clone(), reason: e.to_string() })?
            .collect();
        if addrs.is_empty() {
            return Err(Refusal::Unresolvable { host, reason: "no addresses".into() });
        }
        // Every address must pass: a name that resolves to one public and one
        // private address could otherwise be steered to the private one.
        for addr in &addrs {
            if let (Some(kind), false) = (forbidden_kind(addr.ip()), self.allowed(&host, addr.ip())) {
                return Err(Refusal::Forbidden { host, addr: addr.ip(), kind });
            }
        }
        Ok(Destination { addr: addrs[0], url, host })
    }
}

impl Destination {
    /// An HTTP client that connects only to the checked address (no second
    /// DNS lookup), follows no redirects and ignores proxy settings.
    pub fn pinned_client(&self, timeout: std::time::Duration, user_agent: &str) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .resolve(&self.host, self.addr)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .user_agent(user_agent)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_every_non_public_address() {
        for ip in [
            "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "127.0.0.1", "0.0.0.0", "100.64.0.1",
            "224.0.0.1", "255.255.255.255", "::1", "::ffff:127.0.0.1", "::ffff:10.1.2.3", "fd00:ec2::254", "fe80::1",
            "::", "ff02::1", "64:ff9b::a00:1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(forbidden_kind(ip).is_some(), "{ip} must be refused");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert_eq!(forbidden_kind(ip.parse().unwrap()), None, "{ip} is public");
        }
    }

    #[test]
    fn static_check_covers_scheme_and_literal_addresses() {
        let strict = DestinationPolicy::default();
        assert!(matches!(strict.check_static("http://example.com/hook"), Err(Refusal::Scheme(false))));
        assert!(strict.check_static("https://example.com/hook").is_ok());
        for url in ["https://10.0.0.1/x", "https://[::1]/x", "https://[::ffff:127.0.0.1]/x", "https://0.0.0.0/x"] {
            assert!(matches!(strict.check_static(url), Err(Refusal::Forbidden { .. })), "{url}");
        }
        let local = DestinationPolicy { allow_http: true, allow_hosts: ["127.0.0.1".to_string()].into() };
        assert!(local.check_static("http://127.0.0.1:9000/hook").is_ok());
        assert!(local.check_static("http://10.0.0.1/hook").is_err());
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_unless_allowed() {
        let strict = DestinationPolicy { allow_http: true, ..Default::default() };
        assert!(matches!(strict.resolve("http://localhost:1/x").await, Err(Refusal::Forbidden { .. })));
        let local = DestinationPolicy { allow_http: true, allow_hosts: ["localhost".to_string()].into() };
        let destination = local.resolve("http://localhost:1/x").await.unwrap();
        assert!(destination.addr.ip().is_loopback());
    }
}
