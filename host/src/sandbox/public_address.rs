//! Which addresses outbound HTTP may connect to: the public ones, unless the grant
//! names its addresses outright.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::sandbox::http_grant::Reach;

/// The addresses a request may connect to: all of them when the grant names its
/// addresses, otherwise the public ones only.
pub(crate) fn reachable(resolved: &[SocketAddr], reach: Reach) -> Vec<SocketAddr> {
    resolved
        .iter()
        .filter(|address| reach == Reach::Named || is_public(address.ip()))
        .copied()
        .collect()
}

/// Whether `ip` is an address on the public internet: not unspecified, loopback,
/// private (RFC 1918, shared address space, unique-local), link-local (cloud metadata
/// services live there), multicast, broadcast or reserved, nor any of those inside an
/// IPv6 address that carries an IPv4 one (mapped, compatible, NAT64, 6to4).
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || a == 0
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || ip.is_multicast()
        || ip.is_broadcast()
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let embedded_v4 = |high: usize| {
        let octets = ip.octets();
        Ipv4Addr::new(
            octets[high],
            octets[high + 1],
            octets[high + 2],
            octets[high + 3],
        )
    };
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    if segments[..6] == [0; 6] {
        // `::`, `::1` and the deprecated IPv4-compatible form `::a.b.c.d`.
        return !ip.is_unspecified() && !ip.is_loopback() && is_public_v4(embedded_v4(12));
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded_v4(12)); // NAT64
    }
    if segments[0] == 0x2002 {
        return is_public_v4(embedded_v4(2)); // 6to4
    }
    !(ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique-local
        || (segments[0] & 0xffc0) == 0xfe80 // link-local
        || (segments[0] & 0xffc0) == 0xfec0) // site-local (deprecated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "192.0.0.8",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "2002:7f00:1::",
            "fd00::1",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            let ip: IpAddr = private.parse().expect("an address");
            assert!(!is_public(ip), "{private} counted as public");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            let ip: IpAddr = public.parse().expect("an address");
            assert!(is_public(ip), "{public} counted as private");
        }
    }

    #[test]
    fn a_name_with_one_private_address_reaches_only_its_public_ones() {
        let resolved: Vec<SocketAddr> = ["10.0.0.5:443", "93.184.215.14:443", "[::1]:443"]
            .iter()
            .map(|a| a.parse().expect("an address"))
            .collect();
        assert_eq!(
            reachable(&resolved, Reach::Public),
            vec!["93.184.215.14:443".parse::<SocketAddr>().expect("address")]
        );
        assert_eq!(reachable(&resolved, Reach::Named), resolved);
        assert!(reachable(&resolved[..1], Reach::Public).is_empty());
    }
}
