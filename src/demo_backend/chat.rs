//! Who is online and in which rooms: the demo chat's state, without any I/O.
//!
//! The HTTP handlers in `demo_backend.rs` change it for client messages (`chat.login`,
//! `chat.join`, `chat.leave`) and for Rohrpost's `session.closed` events ([`Chat::depart`]),
//! then tell the rooms whose lists changed. A user is a session with a name: the name is held
//! for as long as the session lives, and freed when it ends.

use std::collections::{BTreeMap, HashMap};

use super::recent::Recent;

/// The room every user starts in.
pub(super) const LOBBY: &str = "lobby";

/// How many ended sessions are remembered, to ignore their late messages (the newest).
const ENDED: usize = 10_000;

/// A nickname: 1 to 24 letters, digits, `-` or `_` (safe to show and to address with `@`).
pub(super) fn valid_name(name: &str) -> bool {
    let len = name.chars().count();
    (1..=24).contains(&len)
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
}

/// A room name: 1 to 20 of `a-z`, `0-9` and `-` (it becomes part of the topic `chat.room.<room>`).
pub(super) fn valid_room(room: &str) -> bool {
    (1..=20).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The users and rooms of the chat.
pub(super) struct Chat {
    /// name → session id
    users: HashMap<String, String>,
    /// room → session id → name
    rooms: BTreeMap<String, BTreeMap<String, String>>,
    /// Sessions that have ended: a message of theirs still in flight must not bring them back.
    ended: Recent<String>,
}

impl Default for Chat {
    fn default() -> Self {
        Chat {
            users: HashMap::new(),
            rooms: BTreeMap::new(),
            ended: Recent::new(ENDED),
        }
    }
}

impl Chat {
    /// Gives `session` the name `name` and puts it in the lobby; if another session holds the
    /// name, answers that session's id instead.
    pub(super) fn login(&mut self, session: &str, name: &str) -> Result<(), String> {
        if let Some(holder) = self.users.get(name).filter(|s| *s != session) {
            return Err(holder.clone());
        }
        self.users.retain(|_, s| s != session); // a session has one name
        self.users.insert(name.to_owned(), session.to_owned());
        for members in self.rooms.values_mut() {
            if let Some(old) = members.get_mut(session) {
                *old = name.to_owned();
            }
        }
        self.join(session, name, LOBBY);
        Ok(())
    }

    /// Puts `session` (called `name`) in `room`.
    pub(super) fn join(&mut self, session: &str, name: &str, room: &str) {
        self.rooms
            .entry(room.to_owned())
            .or_default()
            .insert(session.to_owned(), name.to_owned());
    }

    /// Takes `session` out of `room`.
    pub(super) fn leave(&mut self, session: &str, room: &str) {
        if let Some(members) = self.rooms.get_mut(room) {
            members.remove(session);
        }
    }

    /// Forgets `session` (it has ended): frees its name and takes it out of every room.
    /// Answers the rooms it was in, whose user lists have changed. Doing it twice is harmless.
    pub(super) fn depart(&mut self, session: &str) -> Vec<String> {
        self.ended.first(session.to_owned());
        self.users.retain(|_, s| s != session);
        let mut left = Vec::new();
        for (room, members) in &mut self.rooms {
            if members.remove(session).is_some() {
                left.push(room.clone());
            }
        }
        left
    }

    /// Lists `session` again as `name` in the lobby and `rooms`: Rohrpost has sent a new
    /// `session.opened` for a session it had closed (its directory entry was lost while the
    /// session lived on). Answers false, changing nothing, when another session holds the name.
    pub(super) fn reopen(&mut self, session: &str, name: &str, rooms: &[&str]) -> bool {
        if self.login(session, name).is_err() {
            return false;
        }
        self.ended.forget(&session.to_owned());
        for room in rooms {
            self.join(session, name, room);
        }
        true
    }

    /// Whether `session` has ended ([`Chat::depart`]).
    pub(super) fn has_ended(&self, session: &str) -> bool {
        self.ended.contains(&session.to_owned())
    }

    /// The session that holds `name`, if any.
    pub(super) fn session_of(&self, name: &str) -> Option<String> {
        self.users.get(name).cloned()
    }

    /// Whether `session` is in `room`.
    pub(super) fn is_member(&self, session: &str, room: &str) -> bool {
        self.rooms
            .get(room)
            .is_some_and(|members| members.contains_key(session))
    }

    /// The rooms `session` is in (for a page reloaded into a resumed session).
    pub(super) fn rooms_of(&self, session: &str) -> Vec<String> {
        self.rooms
            .iter()
            .filter(|(_, members)| members.contains_key(session))
            .map(|(room, _)| room.clone())
            .collect()
    }

    /// The names in `room`, sorted: the user list the pages show.
    pub(super) fn users_of(&self, room: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .rooms
            .get(room)
            .map(|members| members.values().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_rooms() {
        assert!(valid_name("Ada_Lovelace"));
        assert!(!valid_name("ada lovelace"));
        assert!(!valid_name("<script>"));
        assert!(valid_room("lobby"));
        assert!(!valid_room("Lobby"));
        assert!(!valid_room("a.b"));
    }

    #[test]
    fn a_login_puts_the_user_in_the_lobby() {
        let mut chat = Chat::default();
        chat.login("s1", "ada").unwrap();
        chat.login("s2", "bob").unwrap();
        assert_eq!(chat.users_of(LOBBY), ["ada", "bob"]);
        assert_eq!(chat.session_of("ada").as_deref(), Some("s1"));
        assert_eq!(chat.rooms_of("s1"), [LOBBY]);
    }

    #[test]
    fn a_name_held_by_another_session_is_refused_with_its_holder() {
        let mut chat = Chat::default();
        chat.login("s1", "ada").unwrap();
        assert_eq!(chat.login("s2", "ada"), Err("s1".to_owned()));
        assert_eq!(
            chat.login("s1", "ada"),
            Ok(()),
            "the holder may log in again"
        );
        assert_eq!(chat.users_of(LOBBY), ["ada"]);
    }

    #[test]
    fn a_session_logging_in_under_a_new_name_frees_its_old_one() {
        let mut chat = Chat::default();
        chat.login("s1", "ada").unwrap();
        chat.join("s1", "ada", "rust");
        chat.login("s1", "grace").unwrap();
        assert_eq!(chat.session_of("ada"), None);
        assert_eq!(chat.users_of("rust"), ["grace"]);
        assert_eq!(chat.login("s2", "ada"), Ok(()));
    }

    #[test]
    fn joining_and_leaving_a_room_changes_its_list() {
        let mut chat = Chat::default();
        chat.login("s1", "ada").unwrap();
        chat.join("s1", "ada", "rust");
        assert!(chat.is_member("s1", "rust"));
        assert_eq!(chat.rooms_of("s1"), [LOBBY, "rust"]);
        chat.leave("s1", "rust");
        assert!(!chat.is_member("s1", "rust"));
        assert_eq!(chat.users_of("rust"), Vec::<String>::new());
        assert_eq!(chat.users_of(LOBBY), ["ada"]);
    }

    #[test]
    fn a_departed_session_leaves_every_room_and_frees_its_name() {
        let mut chat = Chat::default();
        chat.login("s1", "ada").unwrap();
        chat.login("s2", "bob").unwrap();
        chat.join("s1", "ada", "rust");
        chat.join("s2", "bob", "go");
        assert_eq!(
            chat.depart("s1"),
            [LOBBY, "rust"],
            "the rooms whose lists changed"
        );
        assert_eq!(chat.users_of(LOBBY), ["bob"]);
        assert_eq!(chat.users_of("rust"), Vec::<String>::new());
        assert_eq!(chat.users_of("go"), ["bob"]);
        assert_eq!(chat.session_of("ada"), None);
        assert_eq!(chat.login("s3", "ada"), Ok(()), "the name is free again");
        assert_eq!(chat.users_of(LOBBY), ["ada", "bob"]);
    }

    #[test]
    fn departing_twice_changes_nothing_the_second_time() {
        let mut chat = Chat::default();
        chat.login("s1", "ada").unwrap();
        assert_eq!(chat.depart("s1"), [LOBBY]);
        assert_eq!(chat.depart("s1"), Vec::<String>::new());
    }

    #[test]
    fn a_session_opened_again_is_back_in_its_rooms_and_no_longer_ended() {
        let mut chat = Chat::default();
        chat.login("s1", "ada").unwrap();
        chat.join("s1", "ada", "rust");
        chat.depart("s1");
        assert!(chat.reopen("s1", "ada", &[LOBBY, "rust"]));
        assert!(!chat.has_ended("s1"));
        assert_eq!(chat.rooms_of("s1"), [LOBBY, "rust"]);
        assert_eq!(chat.session_of("ada").as_deref(), Some("s1"));
    }

    #[test]
    fn a_session_opened_again_under_a_name_now_taken_stays_away() {
        let mut chat = Chat::default();
        chat.login("s1", "ada").unwrap();
        chat.depart("s1");
        chat.login("s2", "ada").unwrap();
        assert!(!chat.reopen("s1", "ada", &["rust"]));
        assert!(chat.has_ended("s1"));
        assert_eq!(chat.users_of("rust"), Vec::<String>::new());
    }

    #[test]
    fn a_departed_session_is_remembered_as_ended() {
        let mut chat = Chat::default();
        chat.login("s1", "ada").unwrap();
        assert!(!chat.has_ended("s1"));
        chat.depart("s1");
        assert!(chat.has_ended("s1"));
        assert!(!chat.has_ended("s2"));
    }
}
