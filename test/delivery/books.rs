//! The books of a counting test: for each logical client, every numbered message it should have
//! received, accounted for.
//!
//! [`Expect`] says what one client is owed on one stream: the numbers in publishing order, which
//! of them a `recovered: false` may excuse, whether order matters, and whether a
//! `recovered: false` is itself wrong (nothing can have been lost). [`Count::of`] checks a
//! [`Tracker`] against it:
//!
//! - each number must arrive once (copies are *duplicated*), not after a higher one (*out of
//!   order*), and not be absent (*missing*);
//! - an absent number is *told* (excused) only if it may be excused and the client saw a
//!   `recovered: false` exactly where the gap is: after every lower number it received and
//!   before every higher one. A notice elsewhere excuses nothing;
//! - every move must have come after a 1012 or a cut connection, back to the same session, and
//!   a resume that asked `since` must say whether it recovered.
//!
//! [`Books`] holds the counts of a scenario, prints its figures and fails the test with the
//! failing clients' numbers and what they lived through around each gap.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use crate::client::SERVICE_RESTART;
use crate::tracker::{Seen, Tracker};

/// Failing clients shown in full when a scenario fails.
const SHOWN: usize = 8;
/// Numbers listed per kind of failure and client.
const LISTED: usize = 20;

/// What one client is owed on one stream.
#[derive(Debug, Clone)]
pub struct Expect {
    pub stream: &'static str,
    /// In publishing order.
    pub numbers: Vec<u64>,
    /// The numbers whose loss a `recovered: false` around the gap excuses.
    pub excusable: BTreeSet<u64>,
    pub ordered: bool,
    /// Whether any `recovered: false` is a failure.
    pub told_is_failure: bool,
}

impl Expect {
    /// Every number, exactly once, in order; nothing may be lost, so nothing may be excused.
    pub fn exactly(stream: &'static str, numbers: Vec<u64>) -> Expect {
        Expect {
            stream,
            numbers,
            excusable: BTreeSet::new(),
            ordered: true,
            told_is_failure: true,
        }
    }

    /// Every number once, in order, or a `recovered: false` the client saw where it is missing.
    pub fn or_told(stream: &'static str, numbers: Vec<u64>) -> Expect {
        Expect {
            excusable: numbers.iter().copied().collect(),
            told_is_failure: false,
            ..Expect::exactly(stream, numbers)
        }
    }

    /// Only `excusable` may be excused.
    pub fn excusing(mut self, excusable: BTreeSet<u64>) -> Expect {
        self.excusable = excusable;
        self.told_is_failure = false;
        self
    }

    /// The order of arrival does not matter.
    pub fn unordered(mut self) -> Expect {
        self.ordered = false;
        self
    }
}

/// One client's account of one stream.
#[derive(Debug, Clone)]
pub struct Count {
    pub client: usize,
    pub session: String,
    pub first_worker: Option<usize>,
    pub stream: &'static str,
    pub expected: usize,
    /// Arrivals of expected numbers, copies included.
    pub received: usize,
    /// Absent and not excused.
    pub missing: Vec<u64>,
    /// Absent, excused by a `recovered: false` the client saw at the gap.
    pub told_gaps: Vec<u64>,
    /// Missing, and the client was told only after it had received higher numbers: it carried
    /// on past the gap without knowing (these are among `missing`).
    pub told_late: Vec<u64>,
    /// Numbers that arrived more than once (once per extra copy).
    pub duplicated: Vec<u64>,
    pub out_of_order: Vec<u64>,
    /// Numbers that arrived but were not owed (e.g. published with an answer other than 202).
    pub unexpected: Vec<u64>,
    pub moves: usize,
    /// Moves whose welcome said `recovered: true`.
    pub recovered: usize,
    /// `recovered: false` notices seen (welcomes and `rohrpost.pos`).
    pub told: usize,
    pub longest_gap: Duration,
    /// Everything else that is wrong, in words.
    pub problems: Vec<String>,
    /// What the client lived through around each failure.
    pub evidence: Vec<String>,
}

impl Count {
    /// Checks `tracker` against `expect`.
    pub fn of(tracker: &Tracker, expect: &Expect) -> Count {
        let mut count = Count {
            client: tracker.index,
            session: tracker.session.clone(),
            first_worker: tracker.first_worker,
            stream: expect.stream,
            expected: expect.numbers.len(),
            received: 0,
            missing: Vec::new(),
            told_gaps: Vec::new(),
            told_late: Vec::new(),
            duplicated: Vec::new(),
            out_of_order: Vec::new(),
            unexpected: Vec::new(),
            moves: 0,
            recovered: 0,
            told: 0,
            longest_gap: Duration::ZERO,
            problems: Vec::new(),
            evidence: Vec::new(),
        };
        let owed: BTreeSet<u64> = expect.numbers.iter().copied().collect();
        // (index in `seen`, number) of every arrival on the stream.
        let arrivals: Vec<(usize, u64)> = tracker
            .seen
            .iter()
            .enumerate()
            .filter_map(|(i, seen)| match seen {
                Seen::Numbered { stream, n, .. } if stream == expect.stream => Some((i, *n)),
                _ => None,
            })
            .collect();
        let mut copies: BTreeMap<u64, usize> = BTreeMap::new();
        let mut highest = 0;
        for &(_, n) in &arrivals {
            if !owed.contains(&n) {
                count.unexpected.push(n);
                continue;
            }
            count.received += 1;
            let copy = copies.entry(n).or_default();
            *copy += 1;
            if *copy > 1 {
                count.duplicated.push(n);
            } else if expect.ordered && n < highest {
                count.out_of_order.push(n);
            }
            highest = highest.max(n);
        }
        let told_at: Vec<usize> = tracker
            .seen
            .iter()
            .enumerate()
            .filter(|(_, seen)| matches!(seen, Seen::Told { .. }))
            .map(|(i, _)| i)
            .collect();
        count.told = told_at.len();
        for &n in &expect.numbers {
            if copies.contains_key(&n) {
                continue;
            }
            let told = expect.excusable.contains(&n)
                && told_at.iter().any(|&t| {
                    let below = arrivals.iter().all(|&(i, m)| m >= n || i < t);
                    let above = arrivals.iter().all(|&(i, m)| m <= n || i > t);
                    below && above
                });
            if told {
                count.told_gaps.push(n);
                continue;
            }
            count.missing.push(n);
            let told_later = expect.excusable.contains(&n)
                && told_at
                    .iter()
                    .any(|&t| arrivals.iter().all(|&(i, m)| m >= n || i < t));
            if told_later {
                count.told_late.push(n);
            }
        }
        if expect.told_is_failure && count.told > 0 {
            count
                .problems
                .push(format!("{} recovered: false notices", count.told));
        }
        count.check_moves(tracker);
        count.evidence = evidence(tracker, &arrivals, &count);
        count
    }

    /// Every move after a 1012 or a cut, back to the same session, saying whether it recovered.
    fn check_moves(&mut self, tracker: &Tracker) {
        for (k, m) in tracker.moves().enumerate() {
            self.moves += 1;
            self.longest_gap = self.longest_gap.max(m.gap);
            if m.welcome.recovered == Some(true) {
                self.recovered += 1;
            }
            if let Some((code, reason)) = &m.close {
                if *code != SERVICE_RESTART {
                    self.problems
                        .push(format!("move {k}: after close {code} {reason:?}"));
                }
            }
            if !m.welcome.resumed || m.welcome.session != tracker.session {
                self.problems
                    .push(format!("move {k}: session not resumed: {:?}", m.welcome));
            }
            if m.since.is_some() && m.welcome.recovered.is_none() {
                self.problems.push(format!(
                    "move {k}: resumed with since, welcome without \"recovered\": {:?}",
                    m.welcome
                ));
            }
        }
        for seen in &tracker.seen {
            if let Seen::Error(data) = seen {
                self.problems.push(format!("error {data}"));
            }
        }
        if let Some(gone) = &tracker.gone {
            self.problems.push(format!("gone: {gone}"));
        }
    }

    pub fn ok(&self) -> bool {
        self.missing.is_empty()
            && self.duplicated.is_empty()
            && self.out_of_order.is_empty()
            && self.problems.is_empty()
    }

    /// One paragraph about this client.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "client {} (session {}, first on worker {:?}), stream {:?}: {} owed, {} received, \
             {} moves ({} recovered), {} told",
            self.client,
            self.session,
            self.first_worker,
            self.stream,
            self.expected,
            self.received,
            self.moves,
            self.recovered,
            self.told,
        );
        for (what, numbers) in [
            ("missing", &self.missing),
            ("told gaps", &self.told_gaps),
            ("missing, told only later", &self.told_late),
            ("duplicated", &self.duplicated),
            ("out of order", &self.out_of_order),
            ("not owed", &self.unexpected),
        ] {
            if !numbers.is_empty() {
                let _ = write!(text, "\n  {what} ({}): {}", numbers.len(), list(numbers));
            }
        }
        for problem in &self.problems {
            let _ = write!(text, "\n  problem: {problem}");
        }
        for line in &self.evidence {
            let _ = write!(text, "\n  {line}");
        }
        text
    }
}

/// The first [`LISTED`] numbers of `numbers`.
fn list(numbers: &[u64]) -> String {
    let shown: Vec<String> = numbers.iter().take(LISTED).map(u64::to_string).collect();
    let more = numbers.len().saturating_sub(LISTED);
    if more > 0 {
        format!("{} … and {more} more", shown.join(" "))
    } else {
        shown.join(" ")
    }
}

/// What the client saw around its first failure: the events from the arrival before the first
/// missing, duplicated or reordered number to the arrival after it.
fn evidence(tracker: &Tracker, arrivals: &[(usize, u64)], count: &Count) -> Vec<String> {
    let first_bad = [
        count.missing.first(),
        count.duplicated.first(),
        count.out_of_order.first(),
    ]
    .into_iter()
    .flatten()
    .min()
    .copied();
    let Some(bad) = first_bad else {
        return Vec::new();
    };
    // The last arrival of a lower number and the first of a higher one (or the ends).
    let from = arrivals
        .iter()
        .filter(|&&(_, m)| m < bad)
        .map(|&(i, _)| i)
        .max()
        .unwrap_or(0);
    let to = arrivals
        .iter()
        .filter(|&&(i, m)| m > bad && i > from)
        .map(|&(i, _)| i)
        .min()
        .unwrap_or(tracker.seen.len().saturating_sub(1));
    let mut lines = vec![format!("around number {bad}:")];
    for seen in tracker.seen.iter().take(to + 1).skip(from) {
        lines.push(match seen {
            Seen::Numbered { stream, n, pos } => format!("  {stream} {n} pos={pos:?}"),
            Seen::Told { notice, pos } => format!("  recovered: false in {notice}, pos={pos:?}"),
            Seen::Moved(m) => format!(
                "  moved after close {:?} (gap {:?}), resume since={:?}: resumed={} \
                 recovered={:?} pos={:?}",
                m.close, m.gap, m.since, m.welcome.resumed, m.welcome.recovered, m.welcome.pos
            ),
            Seen::Error(data) => format!("  error {data}"),
            Seen::Other(topic, data) => format!("  {topic} {data}"),
        });
    }
    lines
}

/// The counts of one scenario.
pub struct Books {
    pub scenario: String,
    pub counts: Vec<Count>,
}

impl Books {
    /// Counts each tracker against what `expect` says it is owed.
    pub fn count(
        scenario: &str,
        trackers: &[Tracker],
        expect: impl Fn(&Tracker) -> Expect,
    ) -> Books {
        Books {
            scenario: scenario.to_owned(),
            counts: trackers.iter().map(|t| Count::of(t, &expect(t))).collect(),
        }
    }

    /// The scenario's figures in one line.
    pub fn figures(&self) -> String {
        let sum = |f: fn(&Count) -> usize| self.counts.iter().map(f).sum::<usize>();
        let longest = self
            .counts
            .iter()
            .map(|c| c.longest_gap)
            .max()
            .unwrap_or_default();
        format!(
            "{}: {} clients, {} messages owed, {} received, {} missing, {} told gaps, \
             {} duplicated, {} out of order, {} not owed; {} moves ({} recovered: true), \
             {} recovered: false notices, longest move {longest:?}; {} clients failing",
            self.scenario,
            self.counts.len(),
            sum(|c| c.expected),
            sum(|c| c.received),
            sum(|c| c.missing.len()),
            sum(|c| c.told_gaps.len()),
            sum(|c| c.duplicated.len()),
            sum(|c| c.out_of_order.len()),
            sum(|c| c.unexpected.len()),
            sum(|c| c.moves),
            sum(|c| c.recovered),
            sum(|c| c.told),
            self.counts.iter().filter(|c| !c.ok()).count(),
        )
    }

    /// Prints the figures; fails the test, with the failing clients, unless every client is ok.
    pub fn assert_ok(&self) {
        println!("{}", self.figures());
        let failing: Vec<&Count> = self.counts.iter().filter(|c| !c.ok()).collect();
        if failing.is_empty() {
            return;
        }
        let mut text = format!("{}\n", self.figures());
        for count in failing.iter().take(SHOWN) {
            let _ = writeln!(text, "{}", count.describe());
        }
        if failing.len() > SHOWN {
            let _ = writeln!(text, "… and {} more failing clients", failing.len() - SHOWN);
        }
        panic!("{text}");
    }
}
