//! Topics and whitelist patterns.
//!
//! A [`Topic`] names what a message is about (`chat.room.lobby`); a [`Pattern`] is a whitelist
//! entry that matches topics: `*` matches any run of characters (dots included) and every other
//! character is literal, so `anonym.*` matches `anonym.a.b` and `a?b` matches only `a?b`.
//! Both are 1..=`limits.max_topic_len` bytes of printable characters without whitespace; the
//! types can only hold valid values.
//!
//! A literal pattern ([`Pattern::literal`]) matches its own text only, `*` included: a session's
//! direct topic `rohrpost.client.<id>` is one, so that whatever characters an id holds, it can
//! never receive another session's messages.
//!
//! Patterns are also Redis subscriptions: an exact pattern (no `*`) becomes a `SUBSCRIBE`, any
//! other a `PSUBSCRIBE` of [`Pattern::redis_glob`], where Redis's own glob characters are escaped
//! so that Redis matches exactly what Rohrpost matches.

use std::fmt;
use std::sync::Arc;

/// Default bound on the length of a topic or pattern, in bytes.
pub const DEFAULT_MAX_TOPIC_LEN: usize = 256;

/// Why a string is not a topic or pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("a topic must not be empty")]
    Empty,
    #[error("a topic is at most {max} bytes long (this one has {len})")]
    TooLong { len: usize, max: usize },
    #[error("a topic consists of printable characters without whitespace (found {found:?})")]
    BadCharacter { found: char },
}

fn check(s: &str, max_len: usize) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > max_len {
        return Err(TopicError::TooLong {
            len: s.len(),
            max: max_len,
        });
    }
    if let Some(found) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(TopicError::BadCharacter { found });
    }
    Ok(())
}

/// A valid topic; cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

impl Topic {
    pub fn parse(s: &str, max_len: usize) -> Result<Topic, TopicError> {
        check(s, max_len)?;
        Ok(Topic(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Topic({:?})", &*self.0)
    }
}

/// The mark before a literal pattern's text where patterns travel as text (the embedded
/// broker's wire): a space, which no pattern holds.
const LITERAL_MARK: char = ' ';

/// A valid whitelist pattern; cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pattern {
    text: Arc<str>,
    /// Whether a `*` in `text` is literal; only ever true when `text` holds one, so that a
    /// pattern without `*` is the same value however it was made.
    literal_star: bool,
}

impl Pattern {
    pub fn parse(s: &str, max_len: usize) -> Result<Pattern, TopicError> {
        check(s, max_len)?;
        Ok(Pattern {
            text: Arc::from(s),
            literal_star: false,
        })
    }

    /// The pattern matching exactly the topic `s`, whatever characters it has.
    pub fn literal(s: &str, max_len: usize) -> Result<Pattern, TopicError> {
        check(s, max_len)?;
        Ok(Pattern {
            text: Arc::from(s),
            literal_star: s.contains('*'),
        })
    }

    /// The pattern that matches exactly this topic.
    pub fn exact(topic: &Topic) -> Pattern {
        Pattern {
            text: topic.0.clone(),
            literal_star: topic.0.contains('*'),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern matches one topic only (it has no wildcard, or is literal).
    pub fn is_exact(&self) -> bool {
        self.literal_star || !self.text.contains('*')
    }

    /// Whether `topic` matches: `*` is any run of characters (unless the pattern is literal),
    /// everything else literal.
    pub fn matches(&self, topic: &str) -> bool {
        if self.literal_star {
            return &*self.text == topic;
        }
        glob_match(self.text.as_bytes(), topic.as_bytes())
    }

    /// The pattern as text where patterns travel as text: its text, marked when literal.
    pub fn wire_name(&self) -> String {
        if self.literal_star {
            format!("{LITERAL_MARK}{}", self.text)
        } else {
            self.text.to_string()
        }
    }

    /// The pattern [`Self::wire_name`] names.
    pub fn from_wire_name(name: &str, max_len: usize) -> Result<Pattern, TopicError> {
        match name.strip_prefix(LITERAL_MARK) {
            Some(text) => Pattern::literal(text, max_len),
            None => Pattern::parse(name, max_len),
        }
    }

    /// The Redis `PSUBSCRIBE` glob matching the same channels: Redis's special characters
    /// `?`, `[`, `]` and `\` escaped, `*` kept.
    pub fn redis_glob(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 4);
        for c in self.text.chars() {
            if matches!(c, '?' | '[' | ']' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.literal_star {
            write!(f, "Pattern::literal({:?})", &*self.text)
        } else {
            write!(f, "Pattern({:?})", &*self.text)
        }
    }
}

/// Wildcard matching with `*` only: greedy with a single backtrack point, so at worst
/// O(pattern × topic) steps and constant space, never exponential backtracking.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> Pattern {
        Pattern::parse(s, DEFAULT_MAX_TOPIC_LEN).unwrap()
    }

    #[test]
    fn star_matches_any_run_including_dots() {
        assert!(pat("anonym.*").matches("anonym.a.b"));
        assert!(pat("anonym.*").matches("anonym."));
        assert!(!pat("anonym.*").matches("anonym"));
        assert!(pat("*").matches("x"));
        assert!(pat("a*b*c").matches("a.x.b.y.c"));
        assert!(!pat("a*b*c").matches("a.x.b.y.d"));
        assert!(pat("*.end").matches("start.middle.end"));
        assert!(pat("a**").matches("a"));
    }

    #[test]
    fn other_characters_are_literal() {
        assert!(pat("a?b").matches("a?b"));
        assert!(!pat("a?b").matches("axb"));
        assert!(pat("a[bc]").matches("a[bc]"));
        assert!(!pat("a[bc]").matches("ab"));
        assert!(pat("members.x").matches("members.x"));
        assert!(!pat("members.x").matches("members.xy"));
    }

    #[test]
    fn redis_glob_escapes_redis_specials_only() {
        assert_eq!(pat("a?b").redis_glob(), "a\\?b");
        assert_eq!(pat("a[bc]*").redis_glob(), "a\\[bc\\]*");
        assert_eq!(pat("a\\b").redis_glob(), "a\\\\b");
        assert_eq!(pat("chat.*").redis_glob(), "chat.*");
    }

    #[test]
    fn literal_patterns_match_only_their_own_text() {
        let direct = Pattern::literal("rohrpost.client.*", 256).unwrap();
        assert!(direct.is_exact());
        assert!(direct.matches("rohrpost.client.*"));
        assert!(!direct.matches("rohrpost.client.abc"));
        assert_ne!(direct, pat("rohrpost.client.*"));
        // Without a `*` a literal pattern is the plain one.
        assert_eq!(Pattern::literal("a.b", 256).unwrap(), pat("a.b"));
        for p in [direct.clone(), pat("chat.*"), pat("a.b")] {
            assert_eq!(Pattern::from_wire_name(&p.wire_name(), 256).unwrap(), p);
        }
        assert_eq!(direct.wire_name(), " rohrpost.client.*");
        assert_eq!(pat("chat.*").wire_name(), "chat.*");
    }

    #[test]
    fn invalid_topics_are_refused() {
        assert_eq!(Topic::parse("", 256), Err(TopicError::Empty));
        assert_eq!(
            Topic::parse("a b", 256),
            Err(TopicError::BadCharacter { found: ' ' })
        );
        assert_eq!(
            Topic::parse("a\u{7}", 256),
            Err(TopicError::BadCharacter { found: '\u{7}' })
        );
        assert_eq!(
            Topic::parse(&"x".repeat(257), 256),
            Err(TopicError::TooLong { len: 257, max: 256 })
        );
        assert!(Topic::parse("zażółć.😀", 256).is_ok());
    }

    #[test]
    fn adversarial_patterns_do_not_backtrack_exponentially() {
        let p = pat(&"*a".repeat(100));
        let text = "a".repeat(99);
        assert!(!p.matches(&text));
    }
}
