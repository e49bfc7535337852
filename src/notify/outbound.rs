//! Where the server may send a request a tenant aimed: public addresses only, unless the
//! operator allows more.
//!
//! pushi is on the public internet and its app key is public, so every URL or host a tenant
//! names (Pushi webhooks, `/messaging/*` targets, Pusher-style app webhooks, Web Push
//! endpoints, an app's `apn_url`, SMTP hosts from an app's `smtp_url` or a direct message) is
//! a way into the server's own network unless it is checked. The rules, all here:
//!
//! * **Only public addresses.** An address that is unspecified, loopback, private, shared
//!   (CGNAT), link-local (cloud metadata at 169.254.169.254 included), unique local
//!   (`fc00::/7`), multicast, broadcast, reserved, documentation or benchmarking is refused.
//!   IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is judged as the IPv4 address it carries, NAT64
//!   (`64:ff9b::/96`) and 6to4 (`2002::/16`) by the IPv4 address they embed; IPv6 outside
//!   global unicast (`2000::/3`) is refused whole.
//! * **Checked after DNS, on the address connected to.** HTTP clients resolve names through
//!   [`PolicyResolver`] (reqwest's [`Resolve`] hook), which hands the connector only the
//!   permitted addresses, so there is no window between the check and the connect for a
//!   rebinding DNS answer to slip through. Literal addresses never reach a resolver, so
//!   [`OutboundPolicy::check_url`] checks them before the request is made. E-mail resolves
//!   with [`OutboundPolicy::public_addresses`] and connects to the address it returned.
//! * **No redirects.** Clients built by [`client_builder`] do not follow them: a 3xx answer is
//!   the outcome (a permanent failure), so a receiver cannot bounce a request to an address
//!   the check would refuse, nor carry its signature headers to another host.
//! * **No proxy** from the environment: a proxy would resolve names itself, after the check.
//! * **The operator's allow-list** (`outbound_allow`: addresses and CIDR ranges) permits
//!   addresses the rules refuse, for intranet deployments and tests; `0.0.0.0/0, ::/0`
//!   switches the rules off.
//!
//! Destinations the operator chose (the global `SMTP_URL`, `PUSHI_APNS_URL`, Apple's own APNs
//! hosts) are not tenant-aimed and use [`OutboundPolicy::any`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::DeliveryError;

/// What the refusals say about the way out, so a tenant knows it is a rule, not an outage.
const ONLY_PUBLIC: &str = "deliveries only go to public addresses (the server's operator can \
                           allow others with outbound_allow)";

/// Who chose a destination: the tenant's choices are held to the policy, the operator's are
/// not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Chooser {
    Tenant,
    Operator,
}

/// A destination the policy does not permit. Permanent: the same target is refused again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

/// Which addresses requests a tenant aimed may reach.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    /// Addresses permitted although the rules refuse them.
    allow: Vec<IpNet>,
    /// Every address is permitted: for destinations the operator chose.
    any: bool,
}

impl OutboundPolicy {
    /// Public addresses, and those in `allow`.
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow, any: false }
    }

    /// Every address: for destinations only the operator can set.
    pub fn any() -> Self {
        Self {
            allow: Vec::new(),
            any: true,
        }
    }

    /// Whether a request may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.any || self.allow.iter().any(|net| net.contains(&ip)) || non_public(ip).is_none()
    }

    /// Refuses `ip` with the reason, naming it as `shown`.
    fn check_ip(&self, ip: IpAddr, shown: &str) -> Result<(), Refused> {
        match non_public(ip) {
            Some(kind) if !self.permits(ip) => Err(Refused(format!(
                "{shown} is {} {kind} address; {ONLY_PUBLIC}",
                article(kind)
            ))),
            _ => Ok(()),
        }
    }

    /// Checks what can be checked of a URL before any DNS: the scheme, and the address when
    /// the host is a literal one (those never reach [`PolicyResolver`]).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused(format!("{url} is not an http(s) URL")));
        }
        match url.host() {
            None => Err(Refused(format!("{url} has no host"))),
            Some(url::Host::Ipv4(ip)) => self.check_ip(ip.into(), &ip.to_string()),
            Some(url::Host::Ipv6(ip)) => self.check_ip(ip.into(), &ip.to_string()),
            Some(url::Host::Domain(_)) => Ok(()),
        }
    }

    /// Resolves `host` (a name or a literal address) and keeps the addresses the policy
    /// permits; none is a [`ResolveError::Refused`].
    pub async fn public_addresses(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, ResolveError> {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            self.check_ip(ip, literal)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let permitted: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| ResolveError::Lookup(format!("cannot resolve {host}: {e}")))?
            .filter(|addr| self.permits(addr.ip()))
            .collect();
        if permitted.is_empty() {
            // Which addresses the name has is not said: that would map the server's
            // internal DNS for whoever asks.
            return Err(Refused(format!("{host} has no public address; {ONLY_PUBLIC}")).into());
        }
        Ok(permitted)
    }
}

/// Why a host gave no address to connect to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Only addresses the policy refuses.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The name did not resolve (may be temporary).
    #[error("{0}")]
    Lookup(String),
}

/// reqwest's resolver for tenant-aimed requests: the system's resolver, then the policy.
#[derive(Debug, Clone)]
pub struct PolicyResolver(Arc<OutboundPolicy>);

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port (or the scheme's) in its place.
            let addrs = policy.public_addresses(&host, 0).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// An HTTP client builder for requests under `policy`: names resolved through
/// [`PolicyResolver`], no redirects, no proxy, the delivery timeout on connecting and on the
/// whole request, rustls, HTTP/1.1 and HTTP/2.
pub fn client_builder(policy: Arc<OutboundPolicy>, timeout: Duration) -> reqwest::ClientBuilder {
    crate::install_crypto_provider();
    reqwest::Client::builder()
        .dns_resolver(PolicyResolver(policy))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("pushi/", env!("CARGO_PKG_VERSION")))
}

/// The HTTP client of an adapter whose destinations tenants choose, with its policy.
pub struct OutboundClient {
    /// `Err` when no client could be built (no TLS backend): every request then fails, and
    /// none goes out through a client without the policy.
    client: Result<reqwest::Client, String>,
    policy: Arc<OutboundPolicy>,
}

impl OutboundClient {
    pub fn new(policy: Arc<OutboundPolicy>, timeout: Duration) -> Self {
        let client = client_builder(policy.clone(), timeout)
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"));
        Self { client, policy }
    }

    /// A request to `url`, once its scheme and (literal) address pass the policy; names are
    /// checked when they resolve.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, DeliveryError> {
        let url = reqwest::Url::parse(url.trim())
            .map_err(|e| DeliveryError::Permanent(format!("invalid URL: {e}")))?;
        self.policy
            .check_url(&url)
            .map_err(|refused| DeliveryError::Permanent(refused.to_string()))?;
        let client = self
            .client
            .as_ref()
            .map_err(|e| DeliveryError::Retry(e.clone()))?;
        Ok(client.request(method, url))
    }
}

/// The refusal somewhere in an error's chain of causes, if the policy is why it failed.
pub fn refusal<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused);
        }
        if let Some(ResolveError::Refused(refused)) = e.downcast_ref::<ResolveError>() {
            return Some(refused);
        }
        // An I/O error's `source` skips the error it wraps.
        cause = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

fn article(kind: &str) -> &'static str {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// IPv4 ranges that are not public, and what they are.
const V4_RANGES: &[(Ipv4Net, &str)] = &[
    (v4(0, 0, 0, 0, 8), "unspecified"),
    (v4(10, 0, 0, 0, 8), "private"),
    (v4(100, 64, 0, 0, 10), "shared (CGNAT)"),
    (v4(127, 0, 0, 0, 8), "loopback"),
    (v4(169, 254, 0, 0, 16), "link-local"),
    (v4(172, 16, 0, 0, 12), "private"),
    (v4(192, 0, 0, 0, 24), "IETF protocol"),
    (v4(192, 0, 2, 0, 24), "documentation"),
    (v4(192, 88, 99, 0, 24), "6to4 relay"),
    (v4(192, 168, 0, 0, 16), "private"),
    (v4(198, 18, 0, 0, 15), "benchmarking"),
    (v4(198, 51, 100, 0, 24), "documentation"),
    (v4(203, 0, 113, 0, 24), "documentation"),
    (v4(224, 0, 0, 0, 4), "multicast"),
    (v4(240, 0, 0, 0, 4), "reserved"),
];

/// IPv6 ranges that are not public (besides everything outside `2000::/3`).
const V6_RANGES: &[(Ipv6Net, &str)] = &[
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), "unspecified"),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "loopback"),
    (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), "documentation"),
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), "IETF protocol"),
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), "documentation"),
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), "unique local"),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), "link-local"),
    (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), "site-local"),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "multicast"),
];

const GLOBAL_UNICAST: Ipv6Net = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);
const NAT64: Ipv6Net = v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
const SIX_TO_FOUR: Ipv6Net = v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

const fn v6(s: [u16; 8], len: u8) -> Ipv6Net {
    Ipv6Net::new_assert(
        Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
        len,
    )
}

/// What kind of non-public address `ip` is, or `None` for a public one.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip.to_canonical() {
        IpAddr::V4(ip) => V4_RANGES
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .map(|(_, kind)| *kind),
        IpAddr::V6(ip) => {
            if NAT64.contains(&ip) {
                let [.., a, b, c, d] = ip.octets();
                return non_public(Ipv4Addr::new(a, b, c, d).into());
            }
            if SIX_TO_FOUR.contains(&ip) {
                let [_, _, a, b, c, d, ..] = ip.octets();
                return non_public(Ipv4Addr::new(a, b, c, d).into());
            }
            V6_RANGES
                .iter()
                .find(|(net, _)| net.contains(&ip))
                .map(|(_, kind)| *kind)
                .or((!GLOBAL_UNICAST.contains(&ip)).then_some("reserved"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn every_kind_of_non_public_address_is_named() {
        for (address, kind) in [
            ("0.0.0.0", "unspecified"),
            ("10.1.2.3", "private"),
            ("100.64.0.1", "shared (CGNAT)"),
            ("100.100.100.200", "shared (CGNAT)"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("169.254.169.254", "link-local"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("198.18.0.1", "benchmarking"),
            ("203.0.113.9", "documentation"),
            ("224.0.0.251", "multicast"),
            ("255.255.255.255", "reserved"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("64:ff9b::a00:1", "private"),
            ("2002:7f00:1::", "loopback"),
            ("2001::1", "IETF protocol"),
            ("2001:db8::1", "documentation"),
            ("fd00::1", "unique local"),
            ("fd00:ec2::254", "unique local"),
            ("fc00::1", "unique local"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::127.0.0.1", "reserved"),
            ("100::1", "reserved"),
        ] {
            assert_eq!(non_public(ip(address)), Some(kind), "{address}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
        ] {
            assert_eq!(non_public(ip(address)), None, "{address}");
        }
    }

    #[test]
    fn the_allow_list_permits_what_the_rules_refuse() {
        let strict = OutboundPolicy::default();
        assert!(!strict.permits(ip("127.0.0.1")));
        assert!(strict.permits(ip("8.8.8.8")));
        let intranet = OutboundPolicy::new(nets(&["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"]));
        assert!(intranet.permits(ip("127.0.0.1")));
        assert!(intranet.permits(ip("::ffff:127.0.0.1")), "mapped form too");
        assert!(intranet.permits(ip("10.9.9.9")));
        assert!(intranet.permits(ip("fd00::5")));
        assert!(!intranet.permits(ip("127.0.0.2")));
        assert!(!intranet.permits(ip("169.254.169.254")));
        assert!(OutboundPolicy::any().permits(ip("169.254.169.254")));
    }

    #[test]
    fn literal_hosts_are_checked_in_urls() {
        let policy = OutboundPolicy::default();
        let check = |u: &str| policy.check_url(&reqwest::Url::parse(u).unwrap());
        let e = check("http://127.0.0.1:8080/hook").unwrap_err().to_string();
        assert!(e.starts_with("127.0.0.1 is a loopback address"), "{e}");
        let e = check("http://[::1]/").unwrap_err().to_string();
        assert!(e.contains("loopback"), "{e}");
        // Decimal and hexadecimal forms are addresses too (WHATWG URL parsing).
        assert!(check("http://2130706433/").is_err());
        assert!(check("http://0x7f.1/").is_err());
        let e = check("http://169.254.169.254/latest/meta-data/")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a link-local address"), "{e}");
        assert!(check("ftp://example.com/").is_err());
        assert!(check("https://example.com/hook").is_ok());
        assert!(check("https://8.8.8.8/hook").is_ok());
    }

    #[tokio::test]
    async fn names_are_refused_when_they_resolve_only_to_non_public_addresses() {
        let policy = OutboundPolicy::default();
        let e = policy.public_addresses("localhost", 80).await.unwrap_err();
        assert!(
            matches!(&e, ResolveError::Refused(r) if r.0.starts_with("localhost has no public address")),
            "{e:?}"
        );
        let e = policy.public_addresses("[::1]", 25).await.unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
        let allowed = OutboundPolicy::new(nets(&["127.0.0.0/8", "::1/128"]));
        let addrs = allowed.public_addresses("localhost", 80).await.unwrap();
        assert!(addrs.iter().all(|a| a.port() == 80 && a.ip().is_loopback()));
    }

    #[test]
    fn refusals_are_found_among_causes() {
        let refused = Refused("no".into());
        let wrapped = std::io::Error::other(ResolveError::from(refused.clone()));
        assert_eq!(refusal(&wrapped), Some(&refused));
        assert_eq!(refusal(&std::io::Error::other("other")), None);
    }
}
