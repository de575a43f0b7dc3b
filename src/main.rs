//! The `rohrpost` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use rohrpost::config::Config;
use rohrpost::echo::{self, TestServerArgs};
use rohrpost::tls::{self, TlsFiles};

#[derive(Parser)]
#[command(
    name = "rohrpost",
    version,
    about = "A real-time gateway: SockJS sessions for browsers, Redis and HTTP for backends"
)]
struct Cli {
    /// Config file for the supervisor (default: $ROHRPOST_CONFIG, config/rohrpost.toml,
    /// /etc/rohrpost/rohrpost.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Without a subcommand, rohrpost runs the supervisor: the main port and the workers.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run one worker process serving SockJS on one port.
    Worker {
        /// Port to listen on (default: `http.worker_base_port` + `--index`).
        #[arg(long)]
        port: Option<u16>,
        /// Worker index; the port is `http.worker_base_port` + index unless `--port` is given.
        #[arg(long, default_value_t = 0)]
        index: u16,
        /// Config file (default: $ROHRPOST_CONFIG, config/rohrpost.toml, /etc/rohrpost/rohrpost.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Speak the supervisor's control channel on stdin/stdout (set by the supervisor).
        #[arg(long)]
        supervised: bool,
    },
    /// Run the SockJS conformance server (/echo, /close, /disabled_websocket_echo, /cookie_needed_echo).
    SockjsTestServer {
        #[arg(long, default_value_t = 8081)]
        port: u16,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Script the iframe page loads.
        #[arg(
            long,
            default_value = "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js"
        )]
        client_url: String,
        /// Serve HTTPS/WSS with this PEM certificate chain (needs --tls-key).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key for --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Load and validate the configuration and print the effective values.
    CheckConfig {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the demo chat's backend (an example backend: HTTP topics in, server API out).
    DemoBackend {
        /// Address to listen on (the `[[http_topics]]` rule of `chat.*` points here).
        #[arg(long, default_value = "127.0.0.1:3100")]
        listen: String,
        /// Base URL of Rohrpost's main port (for the server API).
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        api: String,
        /// The server API key (`api.key`).
        #[arg(long, env = "ROHRPOST__API__KEY")]
        key: String,
    },
    /// Load generator speaking the real protocol: idle, fanout, inbound, http.
    Bench(Box<rohrpost::bench::BenchArgs>),
    /// Write a self-signed development certificate (localhost, 127.0.0.1, ::1).
    GenCert {
        /// Directory for cert.pem and key.pem.
        #[arg(long, default_value = "keys")]
        dir: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        let config = match Config::load(cli.config.as_deref()) {
            Ok(c) => c,
            Err(errors) => return config_failed(&errors),
        };
        return run_supervisor(config);
    };
    match command {
        Command::CheckConfig { config } => match Config::load(config.as_deref()) {
            Ok(config) => {
                match &config.source {
                    Some(path) => println!("# effective configuration (file: {})", path.display()),
                    None => {
                        println!("# effective configuration (no file; defaults and environment)")
                    }
                }
                print!("{}", config.to_toml());
                ExitCode::SUCCESS
            }
            Err(errors) => config_failed(&errors),
        },
        Command::Worker {
            port,
            index,
            config,
            supervised,
        } => {
            let config = match Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(errors) => return config_failed(&errors),
            };
            let port = match port {
                Some(p) => p,
                None => match config.http.worker_base_port.checked_add(index) {
                    Some(p) => p,
                    None => {
                        eprintln!("error: worker index {index} puts the port past 65535");
                        return ExitCode::from(2);
                    }
                },
            };
            rohrpost::open_files::raise_to_hard();
            run_system(rohrpost::worker::run(config, port, supervised))
        }
        Command::SockjsTestServer {
            port,
            host,
            client_url,
            tls_cert,
            tls_key,
        } => {
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                _ => None,
            };
            run_system(echo::run(TestServerArgs {
                host,
                port,
                client_url,
                tls,
            }))
        }
        Command::DemoBackend { listen, api, key } => {
            run_system(rohrpost::demo_backend::run(listen, api, key))
        }
        Command::Bench(args) => run_system(rohrpost::bench::run(*args)),
        Command::GenCert { dir, force } => match tls::generate_dev_cert(&dir, force) {
            Ok((files, true)) => {
                println!("wrote {} and {}", files.cert.display(), files.key.display());
                ExitCode::SUCCESS
            }
            Ok((files, false)) => {
                println!(
                    "kept existing {} and {} (use --force to replace)",
                    files.cert.display(),
                    files.key.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn config_failed(errors: &rohrpost::config::ConfigErrors) -> ExitCode {
    for e in &errors.0 {
        eprintln!("error: {e}");
    }
    ExitCode::from(2)
}

fn run_system(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let system = actix_rt::System::new();
    if let Err(e) = system.block_on(fut) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Runs the supervisor: its future sets everything up, then the system runs until an actor stops
/// it with an exit code.
fn run_supervisor(config: Config) -> ExitCode {
    // Every session is a socket; workers inherit the raised limit.
    let files = rohrpost::open_files::raise_to_hard();
    log::info!("open-file limit {files} (sessions per worker are bounded by it)");
    let system = actix_rt::System::new();
    if let Err(e) = system.block_on(rohrpost::supervisor::run(config)) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    match system.run_with_code() {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
