//! The network guard for every outbound call (enrichment, delivery, OAuth token, rotation test
//! calls): where a definition or a secret may send the pack's requests.
//!
//! Refused, after DNS resolution and on every connection (so DNS rebinding cannot dodge it):
//! loopback (the Lambda Runtime API listens on 127.0.0.1:9001), link-local (169.254.0.0/16 holds
//! the instance metadata service; fe80::/10), the IPv6 metadata range fd00:ec2::/32 (never
//! allowed), private (RFC 1918, 100.64.0.0/10, fc00::/7), unspecified, broadcast, multicast and
//! reserved (192.0.0.0/24, 198.18.0.0/15, 240.0.0.0/4) addresses, IPv4-mapped and NAT64
//! (64:ff9b::/96) forms of them, and the transition forms whose IPv4 address the guard cannot
//! see (6to4, Teredo, IPv4-compatible, local-use NAT64); and plain `http`.
//! A route or step opts into private addresses (`allow_private_network: true`, for VPC
//! destinations) or plain http (`allow_http: true`); `switchboard dev` allows loopback, where
//! its sink and tests live, unless started with `--strict-network`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::Deserialize;
use url::{Host, Url};

/// The function-wide rule: deployed stacks refuse loopback, the local stack allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// Loopback addresses (and plain http to them) are allowed.
    pub allow_loopback: bool,
}

impl NetworkPolicy {
    /// What every deployed function runs with.
    pub const DEPLOYED: Self = Self {
        allow_loopback: false,
    };
    /// What `switchboard dev` runs with unless `--strict-network`.
    pub const LOCAL: Self = Self {
        allow_loopback: true,
    };
}

/// What one route or enrichment step opted into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Access {
    /// Private addresses (RFC 1918, 100.64.0.0/10, fc00::/7) are allowed: a VPC destination.
    #[serde(default)]
    pub allow_private_network: bool,
    /// Plain `http` is allowed.
    #[serde(default)]
    pub allow_http: bool,
}

/// Why an outbound call may not be made. Permanent: retrying cannot change it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Blocked {
    /// The address is in a refused range.
    #[error("{ip} is a {range} address{hint}")]
    Address {
        /// The address.
        ip: IpAddr,
        /// Which range (`loopback`, `link-local`, `private`, ...).
        range: &'static str,
        /// How to allow it, when it can be allowed.
        hint: &'static str,
    },
    /// Every address the name resolves to is refused.
    #[error("{host} resolves only to refused addresses ({first})")]
    Resolved {
        /// The name.
        host: String,
        /// Why the first address was refused.
        first: Box<Blocked>,
    },
    /// Plain http where https is required.
    #[error("plain http is refused: use https, or set `allow_http: true`")]
    Http,
    /// Not an http(s) URL with a host.
    #[error("only http(s) URLs with a host can be called")]
    Scheme,
}

/// The range a refused address is in, or None for a public address.
fn range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => range_v4(v4),
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                return Some("loopback");
            }
            if v6.is_unspecified() {
                return Some("unspecified");
            }
            // ::ffff:a.b.c.d is a.b.c.d on the wire.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return range_v4(v4);
            }
            let s = v6.segments();
            if s[..2] == [0xfd00, 0x0ec2] {
                // fd00:ec2::/32: the instance metadata service (::254), its DNS and NTP on
                // Nitro. Never allowed, whatever a route opts into.
                Some("instance-metadata")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("private")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if let Some(v4) = nat64(v6) {
                // 64:ff9b::/96 reaches a.b.c.d through a NAT64 gateway.
                range_v4(v4)
            } else {
                tunnelled(s)
            }
        }
    }
}

fn range_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        Some("private")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if a == 192 && b == 0 && ip.octets()[2] == 0 {
        // 192.0.0.0/24: IETF protocol assignments (NAT64 discovery, DS-Lite's B4 and AFTR).
        Some("reserved")
    } else if a == 198 && (18..20).contains(&b) {
        // 198.18.0.0/15: benchmarking networks, routed inside some private networks.
        Some("reserved")
    } else if a >= 240 {
        // 240.0.0.0/4: reserved for future use.
        Some("reserved")
    } else {
        None
    }
}

/// Transition addresses that carry an IPv4 address to somewhere a check of the IPv6 address
/// cannot see: 6to4 (2002::/16, through a relay), Teredo (2001::/32, through a UDP tunnel),
/// IPv4-compatible `::a.b.c.d` (deprecated) and local-use NAT64 (64:ff9b:1::/48, a network's
/// own translator). No destination needs them; all are refused.
fn tunnelled(s: [u16; 8]) -> Option<&'static str> {
    if s[0] == 0x2002 {
        Some("6to4")
    } else if s[..2] == [0x2001, 0] {
        Some("teredo")
    } else if s[..6] == [0; 6] {
        Some("ipv4-compatible")
    } else if s[..3] == [0x64, 0xff9b, 1] {
        Some("nat64-local")
    } else {
        None
    }
}

fn nat64(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]).then(|| {
        let [.., a, b, c, d] = ip.octets();
        Ipv4Addr::new(a, b, c, d)
    })
}

/// Whether a call may go to `ip`.
pub fn check_address(ip: IpAddr, policy: NetworkPolicy, access: Access) -> Result<(), Blocked> {
    let blocked = |range, hint| Err(Blocked::Address { ip, range, hint });
    match range(ip) {
        None => Ok(()),
        Some("loopback") if policy.allow_loopback => Ok(()),
        Some("loopback") => blocked("loopback", " (allowed only by `switchboard dev`)"),
        Some("private") if access.allow_private_network => Ok(()),
        Some("private") => blocked(
            "private",
            " (set `allow_private_network: true` for a VPC destination)",
        ),
        Some(other) => blocked(other, ""),
    }
}

/// Whether `url` may be called, before any name is resolved: its scheme, and its host when
/// that is a literal address. Names are checked by [`GuardedResolver`] on every connection.
pub fn check_url(url: &Url, policy: NetworkPolicy, access: Access) -> Result<(), Blocked> {
    let host = url.host().ok_or(Blocked::Scheme)?;
    let literal = match host {
        Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        Host::Domain(_) => None,
    };
    match url.scheme() {
        "https" => {}
        "http" if access.allow_http => {}
        // The local stack's sink and tests are plain http on loopback.
        "http" if policy.allow_loopback && is_loopback_host(&host) => {}
        "http" => return Err(Blocked::Http),
        _ => return Err(Blocked::Scheme),
    }
    match literal {
        Some(ip) => check_address(ip, policy, access),
        None => Ok(()),
    }
}

/// The part of the guard that holds whatever the stack: a literal address that no policy
/// allows (link-local, unspecified, broadcast, multicast; private without the opt-in) fails the
/// definition at load.
pub fn check_literal(url: &Url, access: Access) -> Result<(), Blocked> {
    let ip = match url.host() {
        Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    check_address(ip, NetworkPolicy::LOCAL, access)
}

fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(v4) => v4.is_loopback(),
        Host::Ipv6(v6) => v6.is_loopback(),
    }
}

/// What a resolver keeps of what a name resolves to: every allowed address, or none and why.
/// The HTTP client's resolver (`switchboard_shared::http`) asks it for every new connection,
/// so a name that later resolves elsewhere (DNS rebinding) is checked again.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    /// The function-wide rule.
    pub policy: NetworkPolicy,
    /// What the route or step opted into.
    pub access: Access,
}

impl GuardedResolver {
    /// The allowed addresses of `resolved`, or why there are none.
    pub fn filter(
        &self,
        host: &str,
        resolved: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, Blocked> {
        let mut first = None;
        let allowed: Vec<SocketAddr> = resolved
            .into_iter()
            .filter(|a| match check_address(a.ip(), self.policy, self.access) {
                Ok(()) => true,
                Err(e) => {
                    first.get_or_insert(e);
                    false
                }
            })
            .collect();
        match first {
            Some(first) if allowed.is_empty() => Err(Blocked::Resolved {
                host: host.to_string(),
                first: Box::new(first),
            }),
            _ => Ok(allowed),
        }
    }
}

/// The guard's refusal inside a transport error, if that is what failed it.
pub fn blocked_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Blocked> {
    let mut source = Some(e);
    while let Some(e) = source {
        if let Some(b) = e.downcast_ref::<Blocked>() {
            return Some(b);
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOYED: NetworkPolicy = NetworkPolicy::DEPLOYED;
    const NONE: Access = Access {
        allow_private_network: false,
        allow_http: false,
    };
    const PRIVATE: Access = Access {
        allow_private_network: true,
        allow_http: false,
    };

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn every_refused_range_is_refused_v4_v6_and_mapped() {
        for (ip, expected) in [
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("169.254.169.254", "link-local"),
            ("::ffff:169.254.169.254", "link-local"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("fe80::1", "link-local"),
            ("10.0.0.1", "private"),
            ("172.16.5.4", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "private"),
            ("fd00::1", "private"),
            ("fc00::1", "private"),
            ("::ffff:10.1.2.3", "private"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("::", "unspecified"),
            ("255.255.255.255", "broadcast"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("2002:a9fe:a9fe::1", "6to4"),
            ("2002:7f00:1::", "6to4"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "teredo"),
            ("::169.254.169.254", "ipv4-compatible"),
            ("::10.0.0.1", "ipv4-compatible"),
            ("64:ff9b:1::a9fe:a9fe", "nat64-local"),
            ("192.0.0.1", "reserved"),
            ("192.0.0.170", "reserved"),
            ("198.18.0.1", "reserved"),
            ("198.19.255.254", "reserved"),
            ("240.0.0.1", "reserved"),
            ("250.1.2.3", "reserved"),
            ("::ffff:198.18.0.1", "reserved"),
            ("fd00:ec2::254", "instance-metadata"),
            ("fd00:ec2::23", "instance-metadata"),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            match check_address(ip, DEPLOYED, NONE) {
                Err(Blocked::Address { range, .. }) => assert_eq!(range, expected, "{ip}"),
                other => panic!("{ip}: {other:?}"),
            }
        }
        for public in [
            "93.184.216.34",
            "2606:2800:220:1::1",
            "100.128.0.1",
            "172.32.0.1",
            "192.0.1.1",
            "198.20.0.1",
            "2001:db9::1",
            "2001:4860:4860::8888",
        ] {
            let ip: IpAddr = public.parse().unwrap();
            assert_eq!(check_address(ip, DEPLOYED, NONE), Ok(()), "{public}");
        }
    }

    #[test]
    fn opt_ins_allow_private_networks_and_the_local_stack_loopback_only() {
        let private: IpAddr = "10.0.0.1".parse().unwrap();
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let metadata: IpAddr = "169.254.169.254".parse().unwrap();
        assert_eq!(check_address(private, DEPLOYED, PRIVATE), Ok(()));
        assert!(check_address(loopback, DEPLOYED, PRIVATE).is_err());
        assert!(check_address(metadata, DEPLOYED, PRIVATE).is_err());
        assert_eq!(check_address(loopback, NetworkPolicy::LOCAL, NONE), Ok(()));
        assert!(check_address(private, NetworkPolicy::LOCAL, NONE).is_err());
        assert!(check_address(metadata, NetworkPolicy::LOCAL, PRIVATE).is_err());
        // The IPv6 metadata address is in fc00::/7 but no opt-in reaches it.
        let metadata6: IpAddr = "fd00:ec2::254".parse().unwrap();
        assert!(check_address(metadata6, DEPLOYED, PRIVATE).is_err());
        assert!(check_address(metadata6, NetworkPolicy::LOCAL, PRIVATE).is_err());
        assert_eq!(
            check_address("fd00:ec3::254".parse().unwrap(), DEPLOYED, PRIVATE),
            Ok(())
        );
    }

    #[test]
    fn https_is_required_unless_opted_out_or_loopback_on_the_local_stack() {
        assert_eq!(
            check_url(&url("https://api.example.com/x"), DEPLOYED, NONE),
            Ok(())
        );
        assert_eq!(
            check_url(&url("http://api.example.com/x"), DEPLOYED, NONE),
            Err(Blocked::Http)
        );
        let http = Access {
            allow_http: true,
            ..NONE
        };
        assert_eq!(
            check_url(&url("http://api.example.com/x"), DEPLOYED, http),
            Ok(())
        );
        let local = NetworkPolicy::LOCAL;
        assert_eq!(
            check_url(&url("http://127.0.0.1:3001/hook"), local, NONE),
            Ok(())
        );
        assert_eq!(
            check_url(&url("http://localhost:3001/hook"), local, NONE),
            Ok(())
        );
        assert_eq!(
            check_url(&url("http://api.example.com/x"), local, NONE),
            Err(Blocked::Http),
            "the local stack relaxes loopback only"
        );
        assert!(matches!(
            check_url(
                &url("https://127.0.0.1:9001/2018-06-01/runtime"),
                DEPLOYED,
                NONE
            ),
            Err(Blocked::Address {
                range: "loopback",
                ..
            })
        ));
        assert!(matches!(
            check_url(&url("https://[::ffff:a9fe:a9fe]/latest"), DEPLOYED, NONE),
            Err(Blocked::Address {
                range: "link-local",
                ..
            })
        ));
    }

    #[test]
    fn literals_no_stack_allows_fail_at_load_loopback_waits_for_the_policy() {
        assert!(check_literal(&url("http://169.254.169.254/latest/meta-data"), NONE).is_err());
        assert!(check_literal(&url("https://10.0.0.5/x"), NONE).is_err());
        assert_eq!(check_literal(&url("https://10.0.0.5/x"), PRIVATE), Ok(()));
        assert_eq!(
            check_literal(&url("http://127.0.0.1:3001/hook"), NONE),
            Ok(())
        );
        assert_eq!(
            check_literal(&url("https://api.example.com/x"), NONE),
            Ok(())
        );
    }

    #[test]
    fn the_resolver_keeps_allowed_addresses_and_refuses_a_name_with_none() {
        let guard = GuardedResolver {
            policy: DEPLOYED,
            access: NONE,
        };
        let a: SocketAddr = "93.184.216.34:0".parse().unwrap();
        let b: SocketAddr = "10.0.0.1:0".parse().unwrap();
        assert_eq!(guard.filter("mixed.example", vec![b, a]), Ok(vec![a]));
        let e = guard.filter("rebound.example", vec![b]).unwrap_err();
        assert!(e.to_string().contains("rebound.example"), "{e}");
        assert!(
            e.to_string().contains("10.0.0.1 is a private address"),
            "{e}"
        );
    }
}
