//! Session ids and resume tokens.
//!
//! Session ids are issued by the server: 128 random bits from the operating system's CSPRNG,
//! as 32 hex digits. A resume token binds a session id with HMAC-SHA256 under
//! `sessions.secret` (shared by every worker and machine), so a client can only resume a session
//! it was given. A token does not expire by itself: it is only worth something while the
//! session's record exists (its TTL is refreshed while the session is connected).

use ring::hmac;

/// A fresh server-issued session id.
pub fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    // The OS generator; a failure here means no safe randomness at all.
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the operating system's random generator failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random secret, for when none is configured or shared yet.
pub fn new_secret() -> String {
    format!("{}{}", new_session_id(), new_session_id())
}

/// Issues and checks resume tokens.
#[derive(Clone)]
pub struct TokenKey(hmac::Key);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

const CONTEXT: &[u8] = b"rohrpost-resume-v1:";

impl TokenKey {
    pub fn new(secret: &str) -> Self {
        TokenKey(hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()))
    }

    /// `<id>.<hex hmac>`.
    pub fn issue(&self, session_id: &str) -> String {
        let tag = hmac::sign(&self.0, &Self::input(session_id));
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("{session_id}.{hex}")
    }

    /// The session id a token was issued for, if it is genuine (compared in constant time).
    /// Only the exact token [`issue`](Self::issue) wrote verifies: the tag must be 64 lowercase
    /// hex digits, not another spelling of the same bytes (`A` for `a`, `+a` for `0a`).
    pub fn verify(&self, token: &str) -> Option<String> {
        let (id, hex) = token.rsplit_once('.')?;
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if id.is_empty() || hex.len() != 64 || !hex.bytes().all(lower_hex) {
            return None;
        }
        let tag: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok())
            .collect::<Option<_>>()?;
        hmac::verify(&self.0, &Self::input(id), &tag).ok()?;
        Some(id.to_string())
    }

    fn input(id: &str) -> Vec<u8> {
        [CONTEXT, id.as_bytes()].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_128_bit_hex_and_distinct() {
        let a = new_session_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_session_id());
    }

    #[test]
    fn genuine_token_verifies_to_its_id() {
        let key = TokenKey::new("secret");
        let token = key.issue("abc");
        assert_eq!(key.verify(&token).as_deref(), Some("abc"));
    }

    #[test]
    fn forged_or_foreign_tokens_are_refused() {
        let key = TokenKey::new("secret");
        let token = key.issue("abc");
        let other = TokenKey::new("other secret");
        assert_eq!(other.verify(&token), None, "another secret");
        let swapped = token.replacen("abc", "abd", 1);
        assert_eq!(key.verify(&swapped), None, "token of another id");
        assert_eq!(key.verify("abc"), None);
        assert_eq!(key.verify("abc.zz"), None);
        assert_eq!(key.verify(""), None);
    }

    #[test]
    fn other_spellings_of_a_genuine_tag_are_refused() {
        let key = TokenKey::new("secret");
        let token = key.issue("abc");
        let (id, hex) = token.split_once('.').unwrap();
        assert_eq!(key.verify(&format!("{id}.{}", hex.to_uppercase())), None);
        // `u8::from_str_radix` reads "+a" as 0x0a: a tag byte below 16 has a signed spelling.
        let signed = (0..)
            .map(|n| key.issue(&format!("s{n}")))
            .find_map(|t| {
                let (id, hex) = t.split_once('.').unwrap();
                let at = (0..32).find(|i| hex.as_bytes()[i * 2] == b'0')?;
                Some(format!("{id}.{}+{}", &hex[..at * 2], &hex[at * 2 + 1..]))
            })
            .unwrap();
        assert_eq!(key.verify(&signed), None, "{signed}");
        assert_eq!(key.verify(&token).as_deref(), Some("abc"));
    }
}
