//! The session ids 0.x clients choose themselves.
//!
//! The 0.x client makes up its session id (`Math.random().toString(36).substr(2)`, about eleven
//! characters of `[0-9a-z]`) and sends it as its first message; the original server removed the
//! first dot of whatever it got and took the rest as the session's name. Rohrpost does the same
//! and refuses only what would be unsafe here (see [`session_id`]).

/// The longest session id taken, in bytes (after the first dot is removed).
pub const MAX_LEN: usize = 128;

/// Length of a server-issued session id (`crate::resume::new_session_id`: 32 lowercase hex).
const ISSUED_LEN: usize = 32;

/// The session a 0.x client's first message names: the message with its first dot removed, as
/// the original server took it (`a.b.c` names `ab.c`). `None` where that id would be unsafe:
/// - empty, or longer than [`MAX_LEN`] bytes;
/// - holding `*`: the session's direct topic `rohrpost.client.<id>` would be a wildcard pattern
///   receiving other sessions' direct messages;
/// - holding whitespace or control characters, which no topic may hold;
/// - shaped like a server-issued id (32 lowercase hex digits): it would name a modern session
///   and take it over, whitelist and data included, without its resume token.
pub fn session_id(message: &str) -> Option<String> {
    let id = message.replacen('.', "", 1);
    let issued = id.len() == ISSUED_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let unsafe_char = |c: char| c == '*' || c.is_whitespace() || c.is_control();
    let valid = !id.is_empty() && id.len() <= MAX_LEN && !issued && !id.contains(unsafe_char);
    valid.then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_dot_is_removed() {
        assert_eq!(session_id("a.b.c").as_deref(), Some("ab.c"));
        assert_eq!(session_id("abc.def").as_deref(), Some("abcdef"));
        assert_eq!(session_id("..x").as_deref(), Some(".x"));
        assert_eq!(session_id("nodots").as_deref(), Some("nodots"));
    }

    #[test]
    fn what_the_original_accepted_is_accepted() {
        // The 0.x client's own ids, including the rare all-digit ones that are also JSON.
        for id in ["k3j2h1g0f9e8", "12345678901", "1e5", "0"] {
            assert_eq!(session_id(id).as_deref(), Some(id));
        }
        // Anything printable another 0.x client might send.
        for id in [
            "\"quoted\"",
            "[1,2]",
            "true",
            "a|b",
            "ü-ß",
            "a?b[c]\\d",
            "{x}",
        ] {
            assert_eq!(session_id(id).as_deref(), Some(id), "{id:?}");
        }
        assert!(session_id(&"x".repeat(MAX_LEN)).is_some());
        assert!(session_id(&format!(".{}", "x".repeat(MAX_LEN))).is_some());
    }

    #[test]
    fn unsafe_ids_are_refused() {
        for id in [
            "",
            ".",
            "*",
            "a*",
            "*.x",
            "ab*cd",
            "a b",
            "a\tb",
            "a\nb",
            "\u{7}",
            "a\u{2028}b",
        ] {
            assert_eq!(session_id(id), None, "{id:?}");
        }
        assert_eq!(session_id(&"x".repeat(MAX_LEN + 1)), None);
    }

    #[test]
    fn server_issued_ids_are_refused() {
        assert_eq!(session_id(&crate::resume::new_session_id()), None);
        let issued = "0123456789abcdef0123456789abcdef";
        assert_eq!(session_id(issued), None);
        // Also when removing the dot makes it one.
        assert_eq!(
            session_id(&format!("{}.{}", &issued[..5], &issued[5..])),
            None
        );
        // Other spellings are other topics and other records: no modern session's.
        assert!(session_id(&issued.to_uppercase()).is_some());
        assert!(session_id(&issued[1..]).is_some());
        assert!(session_id(&format!("{issued}0")).is_some());
    }
}
