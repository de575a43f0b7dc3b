//! Replays the committed fuzz corpus and crash regressions through the fuzz harnesses.
