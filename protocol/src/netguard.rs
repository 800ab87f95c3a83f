//! The SSRF guard: webhooks and downloads go only to public addresses.
//!
//! The host is resolved once, every address is checked, and the connection is
//! pinned to a checked address (no second lookup that a hostile DNS server
//! could answer differently). Redirects are never followed. An allow-list
//! lets local demos and tests call 127.0.0.1.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

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
    #[error("{host} resolves to {addr}, a {kind} address; only public addresses are allowed")]
    Forbidden {
        host: String,
        addr: IpAddr,
        kind: &'static str,
    },
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
///
/// IPv6 ranges that carry an IPv4 address inside them (mapped, compatible,
/// translated, NAT64, 6to4, Teredo) are refused whole or by the IPv4 address
/// they embed: a gateway on the path may turn them into that IPv4 address,
/// which could be 127.0.0.1 or 169.254.169.254.
pub fn forbidden_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v6(v6: Ipv6Addr) -> Option<&'static str> {
    let s = v6.segments();
    if let Some(v4) = v6.to_ipv4_mapped() {
        // ::ffff:a.b.c.d is the IPv4 address itself on a dual-stack socket.
        return forbidden_v4(v4).map(|_| "IPv4-mapped non-public");
    }
    if v6.is_loopback() {
        Some("loopback")
    } else if v6.is_unspecified() {
        Some("unspecified")
    } else if v6.is_multicast() {
        Some("multicast")
    } else if s[0] & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if s[0] & 0xffc0 == 0xfec0 {
        // Deprecated (RFC 3879) but still routed inside some sites.
        Some("site-local")
    } else if s[0] & 0xfe00 == 0xfc00 {
        // Unique local, which includes AWS's metadata address fd00:ec2::254.
        Some("private (unique local)")
    } else if s[..6] == [0, 0, 0, 0, 0, 0] {
        // ::a.b.c.d, deprecated; no public host uses it.
        Some("IPv4-compatible")
    } else if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        // ::ffff:0:a.b.c.d (SIIT), translated to IPv4 by a stateless gateway.
        Some("IPv4-translated")
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Some("NAT64")
    } else if s[..3] == [0x64, 0xff9b, 1] {
        // Local-use NAT64 prefix (RFC 8215).
        Some("NAT64 (local use)")
    } else if s[0] == 0x2002 {
        // 6to4 (RFC 3056): the relay forwards to the IPv4 address in bits 16–48.
        Some("6to4")
    } else if s[0] == 0x2001 && s[1] == 0 {
        // Teredo (RFC 4380): the server and client IPv4 addresses are embedded.
        Some("Teredo")
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        Some("documentation")
    } else if s[..4] == [0x100, 0, 0, 0] {
        Some("discard-only")
    } else {
        None
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
    } else if ip.is_documentation()
        || (a == 198 && (b == 18 || b == 19))
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
    {
        Some("reserved")
    } else if a == 192 && b == 88 && ip.octets()[2] == 99 {
        // The 6to4 relay anycast prefix (RFC 7526 deprecates it).
        Some("6to4 relay")
    } else {
        None
    }
}

impl DestinationPolicy {
    fn allowed(&self, host: &str, ip: IpAddr) -> bool {
        // `localhost.` is the same name as `localhost` (fully qualified).
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow_hosts.contains(&host) || self.allow_hosts.contains(&ip.to_string())
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
        let host = url
            .host()
            .ok_or_else(|| Refusal::Invalid("no host".into()))?;
        let literal = match host {
            url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
            url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
            url::Host::Domain(_) => None,
        };
        if let Some(ip) = literal {
            let host = url.host_str().unwrap_or_default().to_string();
            if let (Some(kind), false) = (forbidden_kind(ip), self.allowed(&host, ip)) {
                return Err(Refusal::Forbidden {
                    host,
                    addr: ip,
                    kind,
                });
            }
        }
        Ok(url)
    }

    /// The check made when a URL is submitted: [`Self::check_static`], then,
    /// for a host name, one lookup bounded by `patience`. Only a name that
    /// resolves to a refused address is refused here; a name that does not
    /// resolve (yet) is left to the check at connection time, so that a slow
    /// or failing resolver does not fail submissions. That later check is the
    /// one that counts: DNS may answer differently by then.
    pub async fn check_at_submit(
        &self,
        raw: &str,
        patience: std::time::Duration,
    ) -> Result<Url, Refusal> {
        let url = self.check_static(raw)?;
        if !matches!(url.host(), Some(url::Host::Domain(_))) {
            return Ok(url);
        }
        match tokio::time::timeout(patience, self.resolve(raw)).await {
            Ok(Err(refusal @ Refusal::Forbidden { .. })) => Err(refusal),
            _ => Ok(url),
        }
    }

    /// Resolves and checks every address; the first one is used to connect.
    pub async fn resolve(&self, raw: &str) -> Result<Destination, Refusal> {
        let url = self.check_static(raw)?;
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| Refusal::Unresolvable {
                host: host.clone(),
                reason: e.to_string(),
            })?
            .collect();
        if addrs.is_empty() {
            return Err(Refusal::Unresolvable {
                host,
                reason: "no addresses".into(),
            });
        }
        // Every address must pass: a name that resolves to one public and one
        // private address could otherwise be steered to the private one.
        for addr in &addrs {
            if let (Some(kind), false) = (forbidden_kind(addr.ip()), self.allowed(&host, addr.ip()))
            {
                return Err(Refusal::Forbidden {
                    host,
                    addr: addr.ip(),
                    kind,
                });
            }
        }
        Ok(Destination {
            addr: addrs[0],
            url,
            host,
        })
    }
}

impl Destination {
    /// An HTTP client that connects only to the checked address (no second
    /// DNS lookup), follows no redirects and ignores proxy settings.
    pub fn pinned_client(
        &self,
        timeout: std::time::Duration,
        user_agent: &str,
    ) -> reqwest::Result<reqwest::Client> {
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
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "127.0.0.1",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "fd00:ec2::254",
            "fe80::1",
            "::",
            "ff02::1",
            "64:ff9b::a00:1",
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
        assert!(matches!(
            strict.check_static("http://example.com/hook"),
            Err(Refusal::Scheme(false))
        ));
        assert!(strict.check_static("https://example.com/hook").is_ok());
        for url in [
            "https://10.0.0.1/x",
            "https://[::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://0.0.0.0/x",
        ] {
            assert!(
                matches!(strict.check_static(url), Err(Refusal::Forbidden { .. })),
                "{url}"
            );
        }
        let local = DestinationPolicy {
            allow_http: true,
            allow_hosts: ["127.0.0.1".to_string()].into(),
        };
        assert!(local.check_static("http://127.0.0.1:9000/hook").is_ok());
        assert!(local.check_static("http://10.0.0.1/hook").is_err());
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_unless_allowed() {
        let strict = DestinationPolicy {
            allow_http: true,
            ..Default::default()
        };
        assert!(matches!(
            strict.resolve("http://localhost:1/x").await,
            Err(Refusal::Forbidden { .. })
        ));
        let local = DestinationPolicy {
            allow_http: true,
            allow_hosts: ["localhost".to_string()].into(),
        };
        let destination = local.resolve("http://localhost:1/x").await.unwrap();
        assert!(destination.addr.ip().is_loopback());
    }

    /// Every IPv6 range that embeds or reaches an IPv4 address, and the
    /// deprecated local ones.
    #[test]
    fn refuses_ipv6_ranges_that_reach_ipv4_or_local_networks() {
        for (ip, kind) in [
            ("2002:7f00:1::1", "6to4"),
            ("2002:0808:0808::1", "6to4"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
            ("2001::1", "Teredo"),
            ("64:ff9b::7f00:1", "NAT64"),
            ("64:ff9b::808:808", "NAT64"),
            ("64:ff9b:1::a00:1", "NAT64 (local use)"),
            ("64:ff9b:1:ffff::1", "NAT64 (local use)"),
            ("fec0::1", "site-local"),
            ("feff::1", "site-local"),
            ("::7f00:1", "IPv4-compatible"),
            ("::ffff:0:7f00:1", "IPv4-translated"),
            ("::ffff:169.254.169.254", "IPv4-mapped non-public"),
            ("100::1", "discard-only"),
        ] {
            assert_eq!(forbidden_kind(ip.parse().unwrap()), Some(kind), "{ip}");
        }
        for ip in ["192.88.99.1", "198.18.0.1", "192.0.0.8", "0.1.2.3"] {
            assert!(
                forbidden_kind(ip.parse().unwrap()).is_some(),
                "{ip} must be refused"
            );
        }
        // Neighbours of the refused ranges stay public.
        for ip in [
            "2001:4860:4860::8888",
            "2003::1",
            "64:ff9b:2::1",
            "::ffff:1.1.1.1",
            "fbff::1",
            "192.88.98.1",
        ] {
            assert_eq!(forbidden_kind(ip.parse().unwrap()), None, "{ip} is public");
        }
    }

    /// The URL parser (WHATWG rules, the same one the HTTP client connects
    /// with) turns every spelling of an IPv4 address into that address, so
    /// each spelling meets the same check.
    #[test]
    fn every_literal_spelling_of_a_private_address_is_refused() {
        let policy = DestinationPolicy {
            allow_http: true,
            ..Default::default()
        };
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0x7F.0.0.1/",
            "http://0177.0.0.1/",
            "http://0177.0000.0000.0001/",
            "http://127.1/",
            "http://127.0.1/",
            "http://0/",
            "http://127.0.0.1./",
            "http://%31%32%37.0.0.1/",
            "http://\u{ff11}\u{ff12}\u{ff17}.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://2852039166/",
            "http://0xa9fea9fe/",
            "http://10.0.0.1:8080/",
            "http://good.example@127.0.0.1/",
            "http://good.example:pass@10.0.0.1:8080/x",
            "http://user@[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[0:0:0:0:0:ffff:a9fe:a9fe]/",
            "http://[::127.0.0.1]/",
            "http://[::ffff:0:127.0.0.1]/",
            "http://[64:ff9b::127.0.0.1]/",
            "http://[64:ff9b:1::a00:1]/",
            "http://[2002:7f00:1::]/",
            "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
            "http://[fec0::1]/",
            "http://[fd00:ec2::254]/",
            "HTTP://[FE80::1]/",
        ] {
            let refused = policy.check_static(url);
            assert!(
                matches!(refused, Err(Refusal::Forbidden { .. })),
                "{url} must be refused, got {refused:?}"
            );
        }
        // The user-info part is not the host: this one goes to good.example.
        let url = policy
            .check_static("http://127.0.0.1@good.example/")
            .unwrap();
        assert_eq!(url.host_str(), Some("good.example"));
        for url in [
            "http://",
            "http://[::1/",
            "http://0x1ffffffff/",
            "http://256.0.0.1/",
            "file:///etc/passwd",
        ] {
            assert!(
                matches!(
                    policy.check_static(url),
                    Err(Refusal::Invalid(_) | Refusal::Scheme(_))
                ),
                "{url} is not a usable URL"
            );
        }
    }

    #[tokio::test]
    async fn names_are_checked_at_submit_when_they_resolve() {
        let policy = DestinationPolicy {
            allow_http: true,
            ..Default::default()
        };
        let patience = std::time::Duration::from_secs(2);
        for url in [
            "http://localhost:1/x",
            "http://LOCALHOST/x",
            "http://2130706433/",
            "https://[2002:a00:1::]/",
        ] {
            assert!(
                matches!(
                    policy.check_at_submit(url, patience).await,
                    Err(Refusal::Forbidden { .. })
                ),
                "{url} must be refused at submit"
            );
        }
        // A name that does not resolve now is left to the check at fetch time.
        assert!(policy
            .check_at_submit("http://no-such-host.invalid/x", patience)
            .await
            .is_ok());
        // A trailing dot names the same host: never reachable unless allowed.
        assert!(policy.resolve("http://localhost./x").await.is_err());
        let local = DestinationPolicy {
            allow_http: true,
            allow_hosts: ["localhost".to_string()].into(),
        };
        assert!(local
            .check_at_submit("http://localhost.:1/x", patience)
            .await
            .is_ok());
    }
}
