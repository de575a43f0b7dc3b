//! Topics and whitelist patterns.
//!
//! A [`Topic`] names what a message is about (`chat.room.lobby`); a [`Pattern`] is a whitelist
//! entry that matches topics: `*` matches any run of characters (dots included) and every other
//! character is literal, so `anonym.*` matches `anonym.a.b` and `a?b` matches only `a?b`.
//! Both are 1..=`limits.max_topic_len` bytes of printable characters without whitespace; the
//! types can only hold valid values.
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

/// A valid whitelist pattern; cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pattern(Arc<str>);

impl Pattern {
    pub fn parse(s: &str, max_len: usize) -> Result<Pattern, TopicError> {
        check(s, max_len)?;
        Ok(Pattern(Arc::from(s)))
    }

    /// The pattern that matches exactly this topic.
    pub fn exact(topic: &Topic) -> Pattern {
        Pattern(topic.0.clone())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the pattern has no wildcard (matches one topic only).
    pub fn is_exact(&self) -> bool {
        !self.0.contains('*')
    }

    /// Whether `topic` matches: `*` is any run of characters, everything else literal.
    pub fn matches(&self, topic: &str) -> bool {
        glob_match(self.0.as_bytes(), topic.as_bytes())
    }

    /// The Redis `PSUBSCRIBE` glob matching the same channels: Redis's special characters
    /// `?`, `[`, `]` and `\` escaped, `*` kept.
    pub fn redis_glob(&self) -> String {
        let mut out = String::with_capacity(self.0.len() + 4);
        for c in self.0.chars() {
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
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", &*self.0)
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
