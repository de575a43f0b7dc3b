//! A worker process as the supervisor sees it: spawned with piped stdin/stdout, its control
//! lines turned into messages for the supervisor actor, its exit reported.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use actix::prelude::*;
use log::warn;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

use crate::control::{encode, Command as ControlCommand, WorkerEvent};

/// A control line from worker `index` of `generation`.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct FromWorker {
    pub index: usize,
    pub generation: u64,
    pub event: WorkerEvent,
}

/// Worker `index` of `generation` exited.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct WorkerExited {
    pub index: usize,
    pub generation: u64,
    /// Exit code, or `None` when killed by a signal.
    pub code: Option<i32>,
}

/// The supervisor's handle on one running worker process.
pub struct WorkerProcess {
    pub pid: Option<u32>,
    commands: Option<mpsc::UnboundedSender<String>>,
    kill: mpsc::Sender<()>,
}

/// What a worker process is started with.
pub struct Launch<'a> {
    pub exe: &'a Path,
    pub config: Option<&'a PathBuf>,
    pub index: usize,
    pub port: u16,
    pub generation: u64,
}

impl WorkerProcess {
    /// Spawns `exe worker --supervised ...` and the tasks that read its control lines and wait
    /// for its exit, reporting both to `supervisor`.
    pub fn spawn<A>(launch: Launch<'_>, supervisor: Addr<A>) -> std::io::Result<WorkerProcess>
    where
        A: Actor<Context = Context<A>> + Handler<FromWorker> + Handler<WorkerExited>,
    {
        let mut command = Command::new(launch.exe);
        command
            .arg("worker")
            .arg("--supervised")
            .args(["--index", &launch.index.to_string()])
            .args(["--port", &launch.port.to_string()]);
        if let Some(config) = launch.config {
            command.arg("--config").arg(config);
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(false);
        let mut child = command.spawn()?;
        let pid = child.id();
        let (index, generation) = (launch.index, launch.generation);

        let stdout = child.stdout.take();
        let events = supervisor.clone();
        actix_rt::spawn(async move {
            let Some(stdout) = stdout else { return };
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<WorkerEvent>(&line) {
                    Ok(event) => events.do_send(FromWorker {
                        index,
                        generation,
                        event,
                    }),
                    Err(e) => warn!("worker {index}: unreadable control line={line:?} error={e}"),
                }
            }
        });

        let (commands, mut outbox) = mpsc::unbounded_channel::<String>();
        let stdin = child.stdin.take();
        actix_rt::spawn(async move {
            let Some(mut stdin) = stdin else { return };
            while let Some(line) = outbox.recv().await {
                if stdin.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
            // Dropping stdin closes it: the worker drains and exits by itself.
        });

        let (kill, mut killed) = mpsc::channel::<()>(1);
        actix_rt::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                _ = killed.recv() => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let code = match status {
                Ok(status) => status.code(),
                Err(e) => {
                    warn!("worker {index}: wait failed error={e}");
                    None
                }
            };
            supervisor.do_send(WorkerExited {
                index,
                generation,
                code,
            });
        });

        Ok(WorkerProcess {
            pid,
            commands: Some(commands),
            kill,
        })
    }

    /// Tells the worker to drain.
    pub fn drain(&self) {
        if let Some(commands) = &self.commands {
            let _ = commands.send(encode(&ControlCommand::Drain));
        }
    }

    /// Closes the control channel; the worker drains and exits.
    pub fn close(&mut self) {
        self.commands = None;
    }

    /// Kills the process at once (SIGKILL).
    pub fn kill(&self) {
        let _ = self.kill.try_send(());
    }
}
