//! Configuration as an operator meets it: `rohrpost check-config` and `rohrpost worker` with
//! good and bad files and environment variables, through the real binary.
//!
//! Invalid configuration must stop the program before it binds anything, with one line per
//! problem naming the key.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_rohrpost");

fn run(args: &[&str], env: &[(&str, &str)], dir: &Path) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("ROHRPOST_CONFIG");
    for (k, _) in std::env::vars() {
        if k.starts_with("ROHRPOST__") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run rohrpost")
}

fn check(toml: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("test.toml");
    std::fs::write(&file, toml).unwrap();
    let out = run(
        &["check-config", "--config", file.to_str().unwrap()],
        env,
        dir.path(),
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect()
}

#[test]
fn committed_config_is_valid_and_printed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = run(&["check-config"], &[], root);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("config/rohrpost.toml"), "{stdout}");
    assert!(stdout.contains("main_port = 3000"), "{stdout}");
    assert!(stdout.contains("prefix = \"/rohrpost\""), "{stdout}");
}

#[test]
fn environment_overrides_the_file() {
    let (code, stdout, stderr) = check(
        "[http]\nmain_port = 3500\n",
        &[
            ("ROHRPOST__HTTP__MAIN_PORT", "4000"),
            ("ROHRPOST__SOCKJS__HEARTBEAT", "10s"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("main_port = 4000"), "{stdout}");
    assert!(stdout.contains("heartbeat = \"10s\""), "{stdout}");
}

#[test]
fn config_env_variable_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("other.toml");
    std::fs::write(&file, "[http]\nmain_port = 3900\n").unwrap();
    let out = run(
        &["check-config"],
        &[("ROHRPOST_CONFIG", file.to_str().unwrap())],
        dir.path(),
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("main_port = 3900"));
}

#[test]
fn port_out_of_range_is_reported() {
    let (code, _, stderr) = check("[http]\nmain_port = 70000\n", &[]);
    assert_eq!(code, 2);
    assert_eq!(
        error_lines(&stderr),
        vec!["error: config key `http.main_port`: 70000 is not a valid port (1..=65535)"]
    );
}

#[test]
fn main_port_colliding_with_a_worker_port_is_reported() {
    let (code, _, stderr) = check(
        "[http]\nmain_port = 3002\nworker_base_port = 3001\n[workers]\ncount = 4\n",
        &[],
    );
    assert_eq!(code, 2);
    let lines = error_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("`http.main_port`: port 3002 collides with worker ports 3001..=3004"));
}

#[test]
fn worker_ports_past_65535_are_reported() {
    let (code, _, stderr) = check(
        "[http]\nworker_base_port = 65534\n[workers]\ncount = 4\n",
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("`http.worker_base_port`: worker ports 65534..=65537 run past 65535"),
        "{stderr}"
    );
}

#[test]
fn malformed_duration_is_reported() {
    let (code, _, stderr) = check("[sockjs]\ndisconnect_delay = \"five seconds\"\n", &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("`sockjs.disconnect_delay`: \"five seconds\" is not a duration"),
        "{stderr}"
    );
}

#[test]
fn prefix_without_leading_slash_is_reported() {
    let (code, _, stderr) = check("[sockjs]\nprefix = \"rohrpost\"\n", &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("`sockjs.prefix`: \"rohrpost\" must start with `/`"),
        "{stderr}"
    );
}

#[test]
fn missing_tls_files_are_reported() {
    let (code, _, stderr) = check(
        "[tls]\nenabled = true\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n",
        &[],
    );
    assert_eq!(code, 2);
    let lines = error_lines(&stderr);
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].contains("`tls.cert`: file /nonexistent/cert.pem cannot be read"));
    assert!(lines[1].contains("`tls.key`: file /nonexistent/key.pem cannot be read"));
}

#[test]
fn unusable_tls_key_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let cert_dir = dir.path().join("keys");
    let out = run(
        &["gen-cert", "--dir", cert_dir.to_str().unwrap()],
        &[],
        dir.path(),
    );
    assert!(out.status.success());
    std::fs::write(cert_dir.join("key.pem"), "garbage").unwrap();
    let toml = format!(
        "[tls]\nenabled = true\ncert = \"{0}/cert.pem\"\nkey = \"{0}/key.pem\"\n",
        cert_dir.display()
    );
    let (code, _, stderr) = check(&toml, &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("TLS private key"), "{stderr}");
}

#[test]
fn several_problems_are_reported_one_per_line() {
    let (code, _, stderr) = check(
        "[http]\nmain_port = 0\n[sockjs]\nheartbeat = \"often\"\nprefix = \"x\"\n",
        &[],
    );
    assert_eq!(code, 2);
    assert_eq!(error_lines(&stderr).len(), 3, "{stderr}");
}

#[test]
fn unknown_key_is_reported() {
    let (code, _, stderr) = check("[http]\nmainport = 3000\n", &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("mainport"), "{stderr}");
}

#[test]
fn explicit_config_file_that_does_not_exist_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["check-config", "--config", "nope.toml"], &[], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("config file nope.toml (from --config) cannot be read"),
        "{stderr}"
    );
}

#[test]
fn worker_with_invalid_config_exits_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let out = run(
        &["worker", "--port", &port.to_string()],
        &[("ROHRPOST__SOCKJS__HEARTBEAT", "never")],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`sockjs.heartbeat`"));
    // Nothing was bound: the port is still free.
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("port still free");
}
