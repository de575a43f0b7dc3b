//! Replays the committed fuzz corpus and crash regressions through the fuzz harnesses.
//!
//! Every file under `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` goes through
//! `rohrpost::fuzzing::<target>`, the same function the `cargo fuzz` target calls, so the
//! invariants the fuzzer checked keep holding on every CI run without a nightly toolchain.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

/// The files of `fuzz/<kind>/<target>/`, sorted; none when the directory does not exist.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable corpus directory").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every input of `target` through `harness`; fails naming each input that panics.
fn replay(target: &str, harness: fn(&[u8])) {
    let corpus = inputs("corpus", target);
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target}/ is empty: the replay would prove nothing"
    );
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&inputs("regressions", target)) {
        let data = fs::read(path).expect("readable corpus file");
        if panic::catch_unwind(|| harness(&data)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target}: inputs that fail: {failed:#?}");
}

macro_rules! replay_targets {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay(stringify!($target), rohrpost::fuzzing::$target);
            }
        )*
    };
}

replay_targets!(
    sockjs_payload,
    jsonp_send,
    client_hello,
    client_envelope,
    topic_pattern,
    backend_message,
    http_answer,
    broker_wire,
    resume_token,
    auth_token,
);
