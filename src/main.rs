//! The `pareco` command line: parses arguments, wires the library together,
//! and maps the outcome to an exit status (0 complete, 1 failed, 2 usage,
//! 130 interrupted).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

mod cli;
mod display;
mod shell;
mod tls_setup;

use cli::{CacheArgs, Cli, Command, Connections, ListenArgs, TokenArgs, TransferArgs, Verbosity};

use pareco::codec::{Direction, SessionSpec};
use pareco::job::{self, Job, JobError, Live};
use pareco::peer::{self, Filter, Remembered, Settings, Tree};
use pareco::session::pace::Pacer;
use pareco::session::{self, ClientConfig, Remote, Server, ServerConfig};
use pareco::transfer::{self, Report};
use tokio_util::sync::CancellationToken;

/// A failure, with the exit status it maps to.
struct Failure {
    status: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Failure { status: 2, message: message.into() }
    }
    fn run(message: impl ToString) -> Self {
        Failure { status: 1, message: message.to_string() }
    }
}

/// Keeps freed chunk and receive buffers (up to the 64 MiB chunk-size cap)
/// in glibc's heap for reuse. By default glibc gives each buffer over its
/// adaptive threshold fresh pages from the kernel, and their page faults
/// (50 000-90 000 per GiB received, against 9 000-10 000 with this) cost
/// the receiving side CPU. Two arenas: buffers are allocated on one thread
/// and freed on another, and with one arena per thread each arena kept its
/// own spare buffers (an upload client peaked at 73-111 MiB, 37-40 with two).
#[cfg(target_env = "gnu")]
fn tune_allocator() {
    const KEEP: libc::c_int = 64 << 20;
    // SAFETY: mallopt only sets three of glibc's malloc parameters; it is
    // called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, KEEP);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 2 * KEEP);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(target_env = "gnu"))]
fn tune_allocator() {}

/// Raises the soft limit of open files to the hard limit (many systems start
/// processes at 1024, far below what many sessions or files in flight
/// use); returns the limit now in force.
fn raise_open_file_limit() -> std::io::Result<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    // `None` is no limit at all.
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current.is_some() && limit.current != limit.maximum {
        limit.current = limit.maximum;
        setrlimit(Resource::Nofile, limit)?;
    }
    Ok(limit.current.unwrap_or(u64::MAX))
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let verbosity = match &cli.command {
        Command::Listen(a) => &a.verbosity,
        Command::Send { opts, .. } | Command::Recv { opts, .. } => &opts.verbosity,
        Command::Ui(a) => &a.verbosity,
        Command::Completions { shell } => return shell::print_completions(*shell),
        Command::Man => return shell::print_man(),
    };
    let server = matches!(cli.command, Command::Listen(_));
    init_logging(verbosity, server, matches!(cli.command, Command::Ui(_)));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(peer::BLOCKING_THREADS)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pareco: error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Listen(args) => listen(args).await,
            Command::Send { local, remote, opts } => transfer(Direction::Upload, &local, &remote, opts).await,
            Command::Recv { remote, local, opts } => {
                transfer(Direction::Download, &local, &remote, opts).await
            }
            Command::Ui(args) => pareco::ui::serve(&args.bind).await.map_err(Failure::run),
            // Printed before the runtime started.
            Command::Completions { .. } | Command::Man => Ok(()),
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(200));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if !f.message.is_empty() {
                display::events::log(&tracing::Level::ERROR, &f.message);
                eprintln!("pareco: error: {}", f.message);
            }
            ExitCode::from(f.status)
        }
    }
}

/// Logs on stderr (above the progress display, if drawn); warnings and
/// errors also as `--json-events` events; for `ui`, each run also gets
/// what it logs.
fn init_logging(v: &Verbosity, server: bool, ui: bool) {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let level = match (v.quiet, v.verbose, server) {
        (true, _, _) => tracing::Level::ERROR,
        (false, 0, false) => tracing::Level::WARN,
        (false, 0, true) | (false, 1, _) => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(display::LogWriter)
        .with_target(false)
        .with_ansi(shell::colour(&std::io::stderr()))
        .without_time()
        .with_filter(LevelFilter::from_level(level));
    // Warnings and errors become `--json-events` events too (whatever -q says).
    let events = display::events::LogEvents.with_filter(LevelFilter::WARN);
    tracing_subscriber::registry().with(lines).with(events).with(ui.then_some(pareco::ui::RunLogs)).init();
}

fn read_token(args: &TokenArgs) -> Result<Option<String>, Failure> {
    if let Some(file) = &args.token_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Failure::usage(format!("--token-file {}: {e}", file.display())))?;
        let token = text.lines().next().unwrap_or("").trim().to_owned();
        if token.is_empty() {
            return Err(Failure::usage(format!("--token-file {}: the file is empty", file.display())));
        }
        return Ok(Some(token));
    }
    match &args.token {
        Some(t) if t.is_empty() => Err(Failure::usage("the token is empty")),
        other => Ok(other.clone()),
    }
}

async fn listen(args: ListenArgs) -> Result<(), Failure> {
    let mut token = read_token(&args.token)?;
    if args.generate_token {
        let generated = session::auth::generate_token().map_err(Failure::run)?;
        println!("{generated}");
        token = Some(generated);
    }
    let tls = tls_setup::acceptor(&args)?;
    let config = ServerConfig {
        root: args.root,
        token,
        session_timeout: args.session_timeout,
        max_sessions: args.max_sessions as usize,
        max_connections: args.max_connections as usize,
        tls,
        keep_setid: args.keep_setid,
        cache: None,
        bwlimit: args.bwlimit,
    };
    if let Some(dir) = args.cache.cache_dir.as_deref().filter(|_| !args.cache.no_cache) {
        if Tree::open(&config.root).is_ok() && peer::remembered::inside(dir, &config.root) {
            return Err(Failure::usage(format!(
                "--cache-dir {} is inside the served root {}: the cache must not be where sessions write",
                dir.display(),
                config.root.display()
            )));
        }
    }
    let config = ServerConfig { cache: open_cache(&args.cache, &config.root), ..config };
    let needed = config.descriptors_needed();
    match raise_open_file_limit() {
        Ok(limit) if limit < needed => tracing::warn!(
            "the open-file limit is {limit}, and {} sessions of {} connections may need {needed}: \
             raise the limit (ulimit -Hn) or lower --max-sessions/--max-connections",
            config.max_sessions,
            config.max_connections
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let server = Server::bind(&args.bind, config).await.map_err(Failure::run)?;
    let addr = server.local_addr().map_err(Failure::run)?;
    eprintln!("listening on {addr}");
    server.run().await;
    Ok(())
}

async fn transfer(
    direction: Direction,
    local: &Path,
    remote: &str,
    opts: TransferArgs,
) -> Result<(), Failure> {
    let remote: Remote = remote.parse().map_err(Failure::usage)?;
    let filter = Filter::new(&opts.includes, &opts.excludes).map_err(|e| Failure::usage(e.to_string()))?;
    let token = read_token(&opts.token)?;
    let tls = tls_setup::connector(&opts, &remote)?;
    // Checked (and for a download made) before anything is sent.
    job::open_local(direction, local, opts.show.dry_run).map_err(|e| Failure::run(e.to_string()))?;
    // A download run as root clears setuid and setgid bits unless told.
    let keep_setid = opts.keep_setid || !rustix::process::geteuid().is_root();
    // One spec describes the session: the server's role gets it, and both
    // the local role and the engine derive their settings from it.
    let spec = SessionSpec {
        direction,
        path: remote.path.clone(),
        chunk_size: opts.chunk_size,
        hash: opts.hash,
        includes: opts.includes.clone(),
        excludes: opts.excludes.clone(),
        inplace: opts.inplace,
        delete: opts.delete,
        fsync: opts.fsync,
        hard_links: opts.hard_links,
        sparse: opts.sparse,
        bwlimit: opts.bwlimit.unwrap_or(0),
        preserve: opts.meta.preserve(),
    };
    let cache = open_cache(&opts.cache, local);
    let settings = Settings { cache: cache.clone(), ..Settings::for_session(&spec, filter, keep_setid) };
    let options = transfer::Options {
        dry_run: opts.show.dry_run,
        max_delete: opts.show.max_delete,
        ..transfer::Options::for_session(&spec, opts.skip_digest, opts.connections.first() as usize)
    };
    let config = ClientConfig {
        connections: opts.connections.most() as usize,
        auto: opts.connections == Connections::Auto,
        token,
        tls,
        reconnect_timeout: opts.reconnect_timeout,
        io_timeout: opts.io_timeout,
        pacer: Pacer::new(opts.bwlimit),
    };
    if let Err(e) = raise_open_file_limit() {
        tracing::warn!("cannot raise the open-file limit: {e}");
    }
    let mut display = display::Display::new(&opts, direction);
    let watch = display.watch();
    let job = Job { direction, local: local.to_owned(), remote, spec, settings, options, config, watch };
    let live = Arc::new(Live::default());
    display.follow(live.clone());
    let cancel = CancellationToken::new();
    let interrupt = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.cancel();
            }
        }
    });
    let outcome = job::run(&job, &live, &cancel).await;
    interrupt.abort();
    let report = outcome.map_err(|e| match e {
        JobError::Cancelled => Failure { status: 130, message: "interrupted".into() },
        JobError::Failed(message) => Failure::run(message),
    })?;
    display.finish(&report, &live.counters());
    print_report(&report, &opts);
    if report.complete() {
        Ok(())
    } else {
        Err(Failure::run(format!("{} error(s); the destination is not a complete mirror", report.errors)))
    }
}

/// The digest cache of `args` for a role over the tree at `tree`, unless
/// turned off.
fn open_cache(args: &CacheArgs, tree: &Path) -> Option<Arc<Remembered>> {
    if args.no_cache {
        return None;
    }
    Remembered::open(args.cache_dir.as_deref(), tree)
}

fn print_report(report: &Report, opts: &TransferArgs) {
    if !opts.verbosity.quiet {
        eprintln!("{}", report.summary());
    }
    if opts.json {
        match serde_json::to_string(report) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("pareco: error: cannot write the JSON report: {e}"),
        }
    }
}
