//! The SSRF guard for outbound webhook deliveries.
//!
//! A webhook URL is chosen by a tenant, and the dispatcher sends requests to it from
//! inside our network. Left unchecked, that is server-side request forgery: a URL such as
//! `http://169.254.169.254/latest/meta-data/` reads cloud credentials, and
//! `http://10.0.0.5:5432/` or `http://localhost:6379/` probes internal services. The
//! guard refuses every address that is not globally routable (loopback, private,
//! link-local, carrier-grade NAT, documentation, multicast, reserved, ...), see
//! [`is_forbidden`].
//!
//! Checking the URL once is not enough:
//!
//! - **DNS rebinding.** A name can resolve to a public address when the URL is registered
//!   and to `127.0.0.1` when the request is sent (or to both, alternating). So names are
//!   judged when connecting, on the very addresses the socket will use: the client built by
//!   [`Guard::client`] resolves through [`GuardedResolver`], which drops forbidden
//!   addresses and fails when none remain.
//! - **Alternative spellings.** `::ffff:127.0.0.1` (IPv4-mapped), `::127.0.0.1`
//!   (IPv4-compatible), `64:ff9b::7f00:1` (NAT64) and `2002:7f00:1::` (6to4) all lead to an
//!   IPv4 address; those forms are judged by the IPv4 address they embed. Decimal or hex
//!   spellings such as `http://2130706433/` are normalised by the URL parser to
//!   `127.0.0.1` before the guard sees them.
//! - **Redirects and proxies.** The client follows no redirects (a public endpoint could
//!   answer `302 Location: http://127.0.0.1/`) and ignores proxy environment variables (a
//!   proxy would resolve the name itself, out of the guard's sight).
//!
//! There are two check points:
//!
//! 1. **Registration**, [`Guard::check_url`]: the URL must parse, use https (or http when
//!    allowed), carry no credentials, and a literal IP host or a `localhost` name must be
//!    permitted. Other names pass; their addresses may change anyway.
//! 2. **Every delivery attempt**: [`Guard::check_target`] right before sending (hyper does
//!    not call the resolver for a literal IP host, so literals are judged here), then
//!    [`GuardedResolver`] for names, at connect time.
//!
//! Operators can open ranges on purpose (a webhook receiver on the private network, tests)
//! with an allow list of CIDRs; see [`Guard::permits`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// The `User-Agent` of webhook deliveries.
pub const USER_AGENT: &str = "Pulsar-Webhooks/1.0";

/// Upper bound of the connect timeout, whatever the request timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle connections kept per host.
const POOL_MAX_IDLE_PER_HOST: usize = 64;

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Ipv4Net {
    // Evaluated in a const context: an invalid prefix fails the build, never at run time.
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix)
}

const fn v6(segments: [u16; 8], prefix: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), prefix)
}

/// IPv4 ranges that are not globally routable (IANA IPv4 special-purpose registry).
const FORBIDDEN_V4: &[Ipv4Net] = &[
    v4(0, 0, 0, 0, 8),          // "this network", incl. 0.0.0.0 (unspecified)
    v4(10, 0, 0, 0, 8),         // private
    v4(100, 64, 0, 0, 10),      // shared address space (carrier-grade NAT)
    v4(127, 0, 0, 0, 8),        // loopback
    v4(169, 254, 0, 0, 16),     // link-local, incl. cloud metadata 169.254.169.254
    v4(172, 16, 0, 0, 12),      // private
    v4(192, 0, 0, 0, 24),       // IETF protocol assignments
    v4(192, 0, 2, 0, 24),       // documentation (TEST-NET-1)
    v4(192, 88, 99, 0, 24),     // 6to4 relay anycast (deprecated)
    v4(192, 168, 0, 0, 16),     // private
    v4(198, 18, 0, 0, 15),      // benchmarking
    v4(198, 51, 100, 0, 24),    // documentation (TEST-NET-2)
    v4(203, 0, 113, 0, 24),     // documentation (TEST-NET-3)
    v4(224, 0, 0, 0, 4),        // multicast
    v4(240, 0, 0, 0, 4),        // reserved
    v4(255, 255, 255, 255, 32), // limited broadcast (also inside 240/4)
];

/// IPv6 ranges that are not globally routable (IANA IPv6 special-purpose registry).
///
/// The ranges that embed an IPv4 address (IPv4-mapped `::ffff:0:0/96`, IPv4-compatible
/// `::/96`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are not listed: they are judged by the
/// address they embed, see [`embedded_v4`].
const FORBIDDEN_V6: &[Ipv6Net] = &[
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128),         // unspecified
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128),         // loopback
    v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),  // local-use IPv4/IPv6 translation
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),      // discard-only
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),     // IETF protocol assignments, incl. Teredo
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),     // documentation
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),      // unique local
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),     // link-local
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),     // site-local (deprecated)
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),      // multicast
];

/// Global unicast, the only IPv6 space IANA allocates for the internet; an address outside
/// it that embeds no IPv4 address is reserved and never a webhook receiver.
const GLOBAL_UNICAST_V6: Ipv6Net = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

/// IPv4-mapped addresses, `::ffff:a.b.c.d`.
const IPV4_MAPPED: Ipv6Net = v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96);
/// IPv4-compatible addresses (deprecated), `::a.b.c.d`.
const IPV4_COMPATIBLE: Ipv6Net = v6([0, 0, 0, 0, 0, 0, 0, 0], 96);
/// NAT64 well-known prefix, `64:ff9b::a.b.c.d`.
const NAT64: Ipv6Net = v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
/// 6to4, `2002:AABB:CCDD::/48` for `AA.BB.CC.DD`.
const SIX_TO_FOUR: Ipv6Net = v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);

/// The IPv4 address an IPv6 address leads to, for the forms that embed one: IPv4-mapped,
/// IPv4-compatible and NAT64 (the last 32 bits) and 6to4 (bits 16 to 48).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let [_, s1, s2, _, _, _, s6, s7] = ip.segments();
    let join = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if IPV4_MAPPED.contains(&ip) || IPV4_COMPATIBLE.contains(&ip) || NAT64.contains(&ip) {
        Some(join(s6, s7))
    } else if SIX_TO_FOUR.contains(&ip) {
        Some(join(s1, s2))
    } else {
        None
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    FORBIDDEN_V4.iter().any(|net| net.contains(&ip))
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    if FORBIDDEN_V6.iter().any(|net| net.contains(&ip)) {
        return true;
    }
    match embedded_v4(ip) {
        Some(v4) => is_forbidden_v4(v4),
        None => !GLOBAL_UNICAST_V6.contains(&ip),
    }
}

/// Whether `ip` is not globally routable, so a webhook must not reach it unless an
/// operator allowed it (see [`Guard::permits`]).
///
/// IPv4: `0.0.0.0/8`, `10/8`, `100.64/10`, `127/8`, `169.254/16`, `172.16/12`,
/// `192.0.0/24`, `192.0.2/24`, `192.88.99/24`, `192.168/16`, `198.18/15`, `198.51.100/24`,
/// `203.0.113/24`, `224/4`, `240/4` and `255.255.255.255`.
///
/// IPv6: `::`, `::1`, `64:ff9b:1::/48`, `100::/64`, `2001::/23` (incl. Teredo),
/// `2001:db8::/32`, `3fff::/20`, `fc00::/7`, `fe80::/10`, `fec0::/10`, `ff00::/8`, and
/// anything else outside global unicast `2000::/3`. IPv4-mapped (`::ffff:0:0/96`),
/// IPv4-compatible (`::/96`), NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`) addresses are
/// judged by the IPv4 address they embed.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

/// Whether a host name is `localhost` or under `.localhost`, which always means loopback
/// (RFC 6761), whatever DNS says. Case-insensitive; trailing dots are ignored.
fn is_localhost(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Why a webhook URL is refused. The messages are fit for a field error of a 422 response.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    /// The text is not an absolute URL.
    #[error("The url must be a valid URL.")]
    Invalid,
    /// The scheme is not https, and plain http is not allowed.
    #[error("The url must use https.")]
    HttpsRequired,
    /// The scheme is neither http nor https (plain http being allowed).
    #[error("The url must use http or https.")]
    HttpOrHttpsRequired,
    /// The URL has no host.
    #[error("The url must have a host.")]
    MissingHost,
    /// The URL carries a username or a password.
    #[error("The url must not contain credentials.")]
    Credentials,
    /// The host is a literal address, or a `localhost` name, that the guard does not
    /// permit.
    #[error("The url must not point to a private, loopback or reserved address.")]
    ForbiddenAddress,
}

/// The SSRF policy: which URLs may be registered, which addresses may be connected to.
#[derive(Debug, Clone)]
pub struct Guard {
    /// Ranges permitted even though [`is_forbidden`] refuses them.
    allow: Vec<IpNet>,
    /// Whether plain-http URLs are accepted.
    allow_http: bool,
}

impl Guard {
    /// A guard that also permits the addresses in `allow` and, when `allow_http`, plain
    /// http URLs.
    pub fn new(allow: Vec<IpNet>, allow_http: bool) -> Self {
        Self { allow, allow_http }
    }

    /// Whether a webhook may connect to `ip`: it is globally routable, or inside one of the
    /// allowed ranges. An IPv4-mapped IPv6 address is also matched against the allowed
    /// ranges by its IPv4 address (allowing `127.0.0.0/8` allows `::ffff:127.0.0.1`).
    pub fn permits(&self, ip: IpAddr) -> bool {
        if !is_forbidden(ip) {
            return true;
        }
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.allow
            .iter()
            .any(|net| net.contains(&ip) || mapped.is_some_and(|v4| net.contains(&v4)))
    }

    /// The registration-time check: parses `url` and accepts it if [`Guard::check_target`]
    /// does. Host names other than `localhost` pass; they are judged when connecting.
    pub fn check_url(&self, url: &str) -> Result<Url, Refusal> {
        let url = Url::parse(url).map_err(|_| Refusal::Invalid)?;
        self.check_target(&url)?;
        Ok(url)
    }

    /// The check made right before each delivery attempt: the scheme is https (or http when
    /// allowed), there are no credentials, and a literal IP host (which the client connects
    /// to without calling the resolver) or a `localhost` name is permitted.
    pub fn check_target(&self, url: &Url) -> Result<(), Refusal> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ if self.allow_http => return Err(Refusal::HttpOrHttpsRequired),
            _ => return Err(Refusal::HttpsRequired),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::Credentials);
        }
        let permitted = match url.host().ok_or(Refusal::MissingHost)? {
            Host::Ipv4(v4) => self.permits(IpAddr::V4(v4)),
            Host::Ipv6(v6) => self.permits(IpAddr::V6(v6)),
            Host::Domain(name) if is_localhost(name) => {
                self.permits(IpAddr::V4(Ipv4Addr::LOCALHOST))
                    || self.permits(IpAddr::V6(Ipv6Addr::LOCALHOST))
            }
            Host::Domain(_) => true,
        };
        if permitted {
            Ok(())
        } else {
            Err(Refusal::ForbiddenAddress)
        }
    }

    /// The HTTP client for deliveries: it resolves names through a [`GuardedResolver`],
    /// follows no redirects, ignores proxy settings, speaks TLS through rustls (and only
    /// https unless plain http is allowed), bounds each request by `timeout` and its
    /// connect by the smaller of `timeout` and 10 s.
    pub fn client(&self, timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(!self.allow_http)
            .dns_resolver(Arc::new(GuardedResolver::new(self.clone())))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_nodelay(true)
            .user_agent(USER_AGENT)
            .build()
    }
}

/// Why [`GuardedResolver`] gave no address for a name.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Every address of the name is forbidden (and none is allowed).
    #[error("{host} resolves to a private or reserved address, which webhooks may not reach")]
    Forbidden {
        /// The name looked up.
        host: String,
    },
    /// The lookup failed.
    #[error("DNS lookup of {host} failed")]
    Lookup {
        /// The name looked up.
        host: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// The lookup succeeded with no address.
    #[error("{host} does not resolve to any address")]
    NoAddress {
        /// The name looked up.
        host: String,
    },
}

/// A DNS resolver for reqwest that keeps only the addresses its [`Guard`] permits, so the
/// addresses judged are the ones connected to (no DNS rebinding between check and use).
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    guard: Guard,
}

impl GuardedResolver {
    /// A resolver enforcing `guard`.
    pub fn new(guard: Guard) -> Self {
        Self { guard }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Collected at once: the iterator borrows `host`, which the errors take.
            let lookup: std::io::Result<Vec<SocketAddr>> =
                tokio::net::lookup_host((host.as_str(), 0))
                    .await
                    .map(Iterator::collect);
            let addrs = match lookup {
                Ok(addrs) => addrs,
                Err(source) => return Err(ResolveError::Lookup { host, source }.into()),
            };
            if addrs.is_empty() {
                return Err(ResolveError::NoAddress { host }.into());
            }
            let total = addrs.len();
            let permitted: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|addr| guard.permits(addr.ip()))
                .collect();
            if permitted.is_empty() {
                tracing::warn!(%host, "webhook host resolves only to forbidden addresses");
                return Err(ResolveError::Forbidden { host }.into());
            }
            if permitted.len() < total {
                tracing::debug!(
                    %host,
                    dropped = total - permitted.len(),
                    "forbidden addresses dropped from a webhook host's resolution"
                );
            }
            let addrs: Addrs = Box::new(permitted.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    fn net(text: &str) -> IpNet {
        text.parse().expect("test network")
    }

    #[test]
    fn forbidden_and_allowed_addresses() {
        let forbidden = [
            "127.0.0.1",
            "10.0.0.1",
            "169.254.169.254",
            "172.16.5.4",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "192.0.2.1",
            "192.88.99.1",
            "198.51.100.7",
            "203.0.113.9",
            "240.0.0.1",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2001::1",
            "2001:0:4136:e378::1",
            "100::1",
            "fe80::1",
            "fec0::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "2001:db8::1",
            "3fff::1",
            "::ffff:0:7f00:1",
            "4000::1",
        ];
        for text in forbidden {
            assert!(is_forbidden(ip(text)), "{text} should be forbidden");
        }
        let allowed = [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
        ];
        for text in allowed {
            assert!(!is_forbidden(ip(text)), "{text} should be allowed");
        }
    }

    #[test]
    fn allow_list_opens_ranges_including_mapped_forms() {
        let guard = Guard::new(vec![net("127.0.0.0/8")], false);
        assert!(guard.permits(ip("127.0.0.1")));
        assert!(guard.permits(ip("127.1.2.3")));
        assert!(guard.permits(ip("::ffff:127.0.0.1")));
        assert!(guard.permits(ip("8.8.8.8")));
        assert!(!guard.permits(ip("10.0.0.1")));
        assert!(!guard.permits(ip("::ffff:10.0.0.1")));
        assert!(!guard.permits(ip("::1")));

        let none = Guard::new(Vec::new(), false);
        assert!(!none.permits(ip("127.0.0.1")));
        assert!(none.permits(ip("1.1.1.1")));
    }

    #[test]
    fn check_url_refusals_and_acceptances() {
        let strict = Guard::new(Vec::new(), false);
        let http = Guard::new(Vec::new(), true);

        assert_eq!(strict.check_url("not a url"), Err(Refusal::Invalid));
        assert_eq!(strict.check_url("/relative/path"), Err(Refusal::Invalid));
        assert_eq!(
            strict.check_url("http://example.com/hook"),
            Err(Refusal::HttpsRequired)
        );
        assert!(http.check_url("http://example.com/hook").is_ok());
        assert_eq!(
            strict.check_url("ftp://example.com/hook"),
            Err(Refusal::HttpsRequired)
        );
        assert_eq!(
            http.check_url("ftp://example.com/hook"),
            Err(Refusal::HttpOrHttpsRequired)
        );
        assert_eq!(
            strict.check_url("https://user:secret@example.com/hook"),
            Err(Refusal::Credentials)
        );
        assert_eq!(
            strict.check_url("https://user@example.com/hook"),
            Err(Refusal::Credentials)
        );

        for url in [
            "http://127.0.0.1/",
            "http://10.0.0.1/",
            "http://169.254.169.254/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost:8080/",
            "http://LOCALHOST./",
            "http://foo.localhost/",
            "http://2130706433/",
            "http://0x7f.1/",
            "https://[fe80::1]/",
        ] {
            assert_eq!(
                http.check_url(url),
                Err(Refusal::ForbiddenAddress),
                "{url} should be refused"
            );
        }

        let url = strict
            .check_url("https://example.com/hook")
            .expect("a public https URL is accepted");
        assert_eq!(url.as_str(), "https://example.com/hook");
        assert!(strict.check_url("https://8.8.8.8/hook").is_ok());
        assert!(strict.check_url("https://[2606:4700:4700::1111]/").is_ok());

        let local = Guard::new(vec![net("127.0.0.0/8")], true);
        assert!(local.check_url("http://127.0.0.1:9/").is_ok());
        assert!(local.check_url("http://localhost:9/").is_ok());
        assert_eq!(
            local.check_url("http://10.0.0.1/"),
            Err(Refusal::ForbiddenAddress)
        );
    }

    #[test]
    fn check_target_judges_parsed_urls() {
        let guard = Guard::new(Vec::new(), false);
        let url = Url::parse("https://127.0.0.1/hook").expect("test URL");
        assert_eq!(guard.check_target(&url), Err(Refusal::ForbiddenAddress));
        let url = Url::parse("http://example.com/hook").expect("test URL");
        assert_eq!(guard.check_target(&url), Err(Refusal::HttpsRequired));
        let url = Url::parse("https://example.com/hook").expect("test URL");
        assert_eq!(guard.check_target(&url), Ok(()));
    }

    /// Serves each connection one fixed `200 ok` response, after reading its request head.
    async fn serve_ok(listener: tokio::net::TcpListener) {
        const RESPONSE: &[u8] =
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    if stream.readable().await.is_err() {
                        return;
                    }
                    match stream.try_read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                }
                let mut written = 0;
                while written < RESPONSE.len() {
                    if stream.writable().await.is_err() {
                        return;
                    }
                    match stream.try_write(&RESPONSE[written..]) {
                        Ok(n) => written += n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                }
            });
        }
    }

    fn error_chain(error: &dyn std::error::Error) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }

    #[tokio::test]
    async fn resolver_refuses_loopback_unless_allowed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local listener");
        let port = listener.local_addr().expect("local address").port();
        let server = tokio::spawn(serve_ok(listener));
        let url = format!("http://localhost:{port}/");

        let refused = Guard::new(Vec::new(), true)
            .client(Duration::from_secs(5))
            .expect("client");
        let error = refused
            .get(&url)
            .send()
            .await
            .expect_err("the resolver refuses loopback");
        let chain = error_chain(&error);
        assert!(
            chain.contains("resolves to a private or reserved address"),
            "unexpected error: {chain}"
        );

        let allowed = Guard::new(vec![net("127.0.0.0/8"), net("::1/128")], true)
            .client(Duration::from_secs(5))
            .expect("client");
        let response = allowed.get(&url).send().await.expect("allowed request");
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        assert_eq!(response.text().await.expect("body"), "ok");

        server.abort();
    }
}
