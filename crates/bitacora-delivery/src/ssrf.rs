//! The guard against server-side request forgery: a destination is an address an admin
//! typed, and bitacora sends to it from inside the network. Loopback, private, link-local
//! (cloud metadata at 169.254.169.254), shared, multicast and unspecified addresses are
//! refused unless `[delivery] allow_private_destinations = true`.
//!
//! The check runs when a destination is created *and* on every connection: the sending
//! client resolves names through [`GuardedResolver`], which refuses a name when any of its
//! addresses is forbidden, so a name re-pointed at `127.0.0.1` after creation (DNS
//! rebinding) is refused too. Redirects are never followed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bitacora_core::event::normalize_ip;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// True for addresses a destination may not use without `allow_private_destinations`.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match normalize_ip(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                // 100.64.0.0/10, shared address space (carrier-grade NAT)
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                // 192.0.0.0/24, IETF protocol assignments
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                // 198.18.0.0/15, benchmarking
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique local, fe80::/10 link-local
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                // 64:ff9b::/96 NAT64 can reach any IPv4 address, private ones included
                || (s[0] == 0x64 && s[1] == 0xff9b)
        }
    }
}

/// Why a URL may not be used, or `Ok` when every address it names is allowed.
pub async fn check_url(url: &str, allow_private: bool) -> Result<(), String> {
    let url = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let host = url.host_str().ok_or("the URL has no host")?.to_owned();
    let port = url.port_or_known_default().unwrap_or(match url.scheme() {
        "nats" | "tls" => 4222,
        "syslog" => 514,
        "syslogs" => 6514,
        _ => 443,
    });
    if allow_private {
        return Ok(());
    }
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return check_addrs(&host, [SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("`{host}` has no address"));
    }
    check_addrs(&host, addrs)
}

fn check_addrs(host: &str, addrs: impl IntoIterator<Item = SocketAddr>) -> Result<(), String> {
    match addrs.into_iter().find(|a| is_forbidden(a.ip())) {
        Some(a) => Err(format!(
            "`{host}` is a loopback, private or link-local address ({}); set \
             [delivery] allow_private_destinations = true to allow it",
            a.ip()
        )),
        None => Ok(()),
    }
}

/// The addresses of `host` (a name or an address literal) at `port`, every one checked: for
/// senders that connect themselves (syslog), which must connect to exactly these addresses so
/// a name cannot be re-pointed between the check and the connection.
pub async fn resolve_checked(
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(format!("`{host}` has no address"));
    }
    if !allow_private {
        check_addrs(host, addrs.iter().copied())?;
    }
    Ok(addrs)
}

/// The send-time check of a URL whose host is an address literal (the client's resolver
/// sees only names). Names are checked by [`GuardedResolver`] as they are connected to.
pub fn check_literal(url: &reqwest::Url, allow_private: bool) -> Result<(), String> {
    let host = url.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) if !allow_private => check_addrs(host, [SocketAddr::new(ip, 0)]),
        _ => Ok(()),
    }
}

/// The sending client's resolver: refuses a name when any of its addresses is forbidden.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow {
                check_addrs(&host, addrs.iter().copied())
                    .map_err(|m| Box::new(std::io::Error::other(m)) as Box<_>)?;
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client every sender uses: guarded resolution, no redirects, the timeout given.
pub fn http_client(allow_private: bool, timeout: std::time::Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver { allow_private }))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("bitacora/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert!(is_forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "172.32.0.1"] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_by_every_address() {
        assert!(check_url("http://127.0.0.1:9/", false).await.is_err());
        assert!(check_url("http://[::1]:9/", false).await.is_err());
        assert!(check_url("http://localhost:9/", false).await.is_err());
        assert!(
            check_url("http://169.254.169.254/latest/", false)
                .await
                .is_err()
        );
        assert!(check_url("http://127.0.0.1:9/", true).await.is_ok());
        assert!(check_url("https://93.184.216.34/", false).await.is_ok());
    }

    #[tokio::test]
    async fn the_sending_client_refuses_private_names_at_connection_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = http_client(false, std::time::Duration::from_secs(2));
        let err = client
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap_err();
        assert!(
            format!("{err:?}").contains("allow_private_destinations"),
            "{err:?}"
        );
    }
}
