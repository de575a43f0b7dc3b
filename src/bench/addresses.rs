//! `--src-ips`: the loopback addresses client sockets are bound to, round-robin, so that one
//! machine can open more connections to a port than one source address has ephemeral ports.

use std::net::{IpAddr, Ipv4Addr};

use super::BenchError;

/// Parses `127.0.0.2-127.0.0.30`, `127.0.0.2,127.0.0.5` or a mix; every address must be on
/// the loopback network (the bench never loads anything else) and the list at most 65,536 long.
pub fn parse_src_ips(spec: &str) -> Result<Vec<IpAddr>, BenchError> {
    let mut ips = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let first = loopback_v4(first)?;
                let last = loopback_v4(last)?;
                let (a, b) = (u32::from(first), u32::from(last));
                if b < a || b - a >= 1 << 16 {
                    return Err(BenchError::Usage(format!(
                        "--src-ips: {part} is not a range of at most 65,536 addresses, low to high"
                    )));
                }
                ips.extend((a..=b).map(|n| IpAddr::V4(Ipv4Addr::from(n))));
            }
            None => {
                let ip: IpAddr = part.parse().map_err(|_| bad(part))?;
                if !ip.is_loopback() {
                    return Err(not_loopback(part));
                }
                ips.push(ip);
            }
        }
    }
    if ips.is_empty() {
        return Err(BenchError::Usage("--src-ips: no address given".into()));
    }
    Ok(ips)
}

fn loopback_v4(text: &str) -> Result<Ipv4Addr, BenchError> {
    let ip: Ipv4Addr = text.trim().parse().map_err(|_| bad(text))?;
    if !ip.is_loopback() {
        return Err(not_loopback(text));
    }
    Ok(ip)
}

fn bad(text: &str) -> BenchError {
    BenchError::Usage(format!("--src-ips: {text:?} is not an IP address"))
}

fn not_loopback(text: &str) -> BenchError {
    BenchError::Usage(format!(
        "--src-ips: {text} is not a loopback address (127.0.0.0/8 or ::1)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_lists_expand_in_order() {
        let ips = parse_src_ips("127.0.0.2-127.0.0.4, 127.0.0.9,::1").unwrap();
        let text: Vec<String> = ips.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.9", "::1"]
        );
    }

    #[test]
    fn anything_off_loopback_is_refused() {
        for spec in ["10.0.0.1", "127.0.0.2-128.0.0.1", "192.168.1.1-192.168.1.9"] {
            let e = parse_src_ips(spec).unwrap_err().to_string();
            assert!(e.contains("not a loopback address"), "{spec}: {e}");
        }
    }

    #[test]
    fn malformed_specs_say_what_is_wrong() {
        assert!(parse_src_ips("").is_err());
        assert!(parse_src_ips("127.0.0.9-127.0.0.2")
            .unwrap_err()
            .to_string()
            .contains("low to high"));
        assert!(parse_src_ips("localhost")
            .unwrap_err()
            .to_string()
            .contains("not an IP address"));
    }
}
