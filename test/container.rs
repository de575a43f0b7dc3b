//! The production image's steps, run by hand (no Docker engine runs on these machines).
//!
//! The test reads the `Dockerfile`'s final stage, lays out a clean directory holding only what
//! that stage copies (the release binary, the config at `etc/rohrpost/rohrpost.toml`, the static
//! files and sockjs-client), and runs the image's command from there as a non-root user, with the
//! image's environment — except that it listens on 127.0.0.1 and free ports. It then checks what
//! the image promises: the HEALTHCHECK command succeeds, the demo page, the client library and
//! sockjs-client are served, `/connect` hands out a worker, and `STOPSIGNAL` (SIGTERM) drains and
//! exits 0.

#[path = "supervisor/ports.rs"]
#[allow(dead_code)]
mod ports;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rohrpost");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// One `COPY` of the final stage: `--from` stage (if any), source, destination.
#[derive(Debug)]
struct Copy {
    from: Option<String>,
    source: String,
    dest: String,
}

/// The final stage of the Dockerfile: its COPY lines, WORKDIR, USER, STOPSIGNAL, HEALTHCHECK.
#[derive(Debug, Default)]
struct FinalStage {
    copies: Vec<Copy>,
    workdir: String,
    user: String,
    stopsignal: String,
    healthcheck: String,
    cmd: String,
}

fn final_stage() -> FinalStage {
    let text = std::fs::read_to_string(Path::new(REPO).join("Dockerfile")).unwrap();
    // Join continuation lines, then keep what follows the last FROM.
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined.lines().map(str::trim).collect();
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    let mut stage = FinalStage::default();
    for line in &lines[last_from..] {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "COPY" => {
                let mut parts: Vec<&str> = rest.split_whitespace().collect();
                let from = parts
                    .first()
                    .and_then(|p| p.strip_prefix("--from="))
                    .map(str::to_owned);
                if from.is_some() {
                    parts.remove(0);
                }
                stage.copies.push(Copy {
                    from,
                    source: parts[0].to_owned(),
                    dest: parts[1].to_owned(),
                });
            }
            "WORKDIR" => stage.workdir = rest.to_owned(),
            "USER" => stage.user = rest.to_owned(),
            "STOPSIGNAL" => stage.stopsignal = rest.to_owned(),
            "HEALTHCHECK" => stage.healthcheck = rest.to_owned(),
            "CMD" => stage.cmd = rest.to_owned(),
            _ => {}
        }
    }
    stage
}

/// Where a COPY's source comes from on this machine.
fn source_path(copy: &Copy) -> PathBuf {
    match copy.from.as_deref() {
        Some("build") => PathBuf::from(BIN),
        Some("client") => {
            let path =
                Path::new(REPO).join("test/browser/node_modules/sockjs-client/dist/sockjs.min.js");
            assert!(
                path.exists(),
                "sockjs-client is missing: run `npm ci` in test/browser (as .ci/run does)"
            );
            path
        }
        Some(other) => panic!("unknown build stage {other}"),
        None => Path::new(REPO).join(&copy.source),
    }
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
}

/// A main port with two free ports after it, below the ephemeral range (see `ports`).
fn free_block() -> u16 {
    ports::PortBlock::find(2).main
}

fn get(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn image_steps_run_by_hand_serve_and_drain() {
    let stage = final_stage();
    assert_eq!(stage.user, "rohrpost", "the image runs as a non-root user");
    assert_eq!(stage.stopsignal, "SIGTERM");
    assert_eq!(stage.cmd, r#"["rohrpost"]"#);

    // A clean root holding only what the final stage copies (destinations relative to WORKDIR
    // unless absolute).
    let root = tempfile::tempdir().unwrap();
    let workdir = root.path().join(stage.workdir.trim_start_matches('/'));
    std::fs::create_dir_all(&workdir).unwrap();
    for copy in &stage.copies {
        let dest = if copy.dest.starts_with('/') {
            root.path().join(copy.dest.trim_start_matches('/'))
        } else {
            workdir.join(&copy.dest)
        };
        copy_tree(&source_path(copy), &dest);
    }
    let exe = root.path().join("usr/local/bin/rohrpost");
    let config = root.path().join("etc/rohrpost/rohrpost.toml");
    assert!(exe.exists() && config.exists(), "binary and config copied");
    // Readable by the unprivileged user the process runs as.
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(root.path())
        .status()
        .unwrap();

    // Its temporary directory (the embedded broker's socket goes there) exists before it starts.
    std::fs::create_dir_all(root.path().join("tmp")).unwrap();
    Command::new("chmod")
        .args(["1777"])
        .arg(root.path().join("tmp"))
        .status()
        .unwrap();

    // The image's command, as an unprivileged user when this test runs as root.
    let main_port = free_block();
    let mut command = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    let mut child = command
        .current_dir(&workdir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("TMPDIR", root.path().join("tmp"))
        // /etc/rohrpost/rohrpost.toml of the image, inside the clean root.
        .env("ROHRPOST_CONFIG", &config)
        .env("RUST_LOG", "info")
        // The image listens on 0.0.0.0:3000..; the test stays on loopback and free ports.
        .env("ROHRPOST__HTTP__HOST", "127.0.0.1")
        .env("ROHRPOST__HTTP__MAIN_PORT", main_port.to_string())
        .env(
            "ROHRPOST__HTTP__WORKER_BASE_PORT",
            (main_port + 1).to_string(),
        )
        .env("ROHRPOST__WORKERS__COUNT", "2")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // The HEALTHCHECK command, pointed at this main port.
    let health = stage
        .healthcheck
        .split("CMD ")
        .nth(1)
        .expect("HEALTHCHECK has a CMD")
        .replace("127.0.0.1:3000", &format!("127.0.0.1:{main_port}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = Command::new("sh")
            .args(["-c", &health])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "HEALTHCHECK never passed");
        std::thread::sleep(Duration::from_millis(100));
    }

    let base = format!("http://127.0.0.1:{main_port}");
    let (code, page) = get(&format!("{base}/"));
    assert_eq!(code, 200);
    assert!(page.contains("Rohrpost chat"), "the demo page is served");
    for asset in ["/js/sockjs.min.js", "/js/rohrpost.js"] {
        assert_eq!(get(&format!("{base}{asset}")).0, 200, "{asset} served");
    }
    // The static directory is never left: a symlink in it that points outside is not followed.
    std::os::unix::fs::symlink("/etc", workdir.join("static/etcdir")).unwrap();
    let (code, body) = get(&format!("{base}/etcdir/passwd"));
    assert_eq!(code, 404, "a file outside static/ was served: {body:.80}");
    let (code, url) = get(&format!("{base}/connect"));
    assert_eq!(code, 200);
    assert!(url.starts_with("http://localhost:"), "{url}");

    // STOPSIGNAL: drain and exit 0.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the supervisor did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
