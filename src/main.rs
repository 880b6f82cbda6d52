//! The `pareco` command line: parses arguments, wires the library together,
//! and maps the outcome to an exit status (0 complete, 1 failed, 2 usage,
//! 130 interrupted).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

mod cli;

use cli::{CacheArgs, Cli, Command, Connections, ListenArgs, TokenArgs, TransferArgs, Verbosity};

use pareco::codec::{Direction, SessionSpec};
use pareco::peer::{self, Filter, LocalDestination, LocalSource, Remembered, Settings, Tree};
use pareco::session::pace::Pacer;
use pareco::session::tls::{Acceptor, Connector};
use pareco::session::{
    self, ClientConfig, Remote, RemoteDestination, RemoteSource, Resilience, Server, ServerConfig,
};
use pareco::transfer::{self, Counters, Report};

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
    };
    let server = matches!(cli.command, Command::Listen(_));
    init_logging(verbosity, server);
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
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(200));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("pareco: error: {}", f.message);
            }
            ExitCode::from(f.status)
        }
    }
}

fn init_logging(v: &Verbosity, server: bool) {
    let level = match (v.quiet, v.verbose, server) {
        (true, _, _) => tracing::Level::ERROR,
        (false, 0, false) => tracing::Level::WARN,
        (false, 0, true) | (false, 1, _) => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
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
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(Acceptor::from_pem_files(cert, key).map_err(|e| Failure::usage(e.to_string()))?)
        }
        _ => None,
    };
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

/// Sessions one run opens at most (each after the server lost the one
/// before).
const MAX_SESSIONS_PER_RUN: u64 = 8;

async fn transfer(
    direction: Direction,
    local: &Path,
    remote: &str,
    opts: TransferArgs,
) -> Result<(), Failure> {
    let remote: Remote = remote.parse().map_err(Failure::usage)?;
    let filter = Filter::new(&opts.includes, &opts.excludes).map_err(|e| Failure::usage(e.to_string()))?;
    let token = read_token(&opts.token)?;
    let use_tls = opts.tls || remote.tls;
    if !use_tls && (opts.ca_cert.is_some() || opts.tls_server_name.is_some()) {
        return Err(Failure::usage("--ca-cert and --tls-server-name need --tls or a pareco+tls:// address"));
    }
    let tls = if use_tls {
        let name = opts.tls_server_name.as_deref().unwrap_or(&remote.host);
        Some(Connector::new(opts.ca_cert.as_deref(), name).map_err(|e| Failure::usage(e.to_string()))?)
    } else {
        None
    };
    // Checked (and for a download made) before anything is sent.
    let mut first_tree = Some(open_local(direction, local)?);
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
        bwlimit: opts.bwlimit.unwrap_or(0),
    };
    let cache = open_cache(&opts.cache, local);
    let settings = Settings { cache: cache.clone(), ..Settings::for_session(&spec, filter, keep_setid) };
    let options = transfer::Options::for_session(&spec, opts.skip_digest, opts.connections.most() as usize);
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
    let started = Instant::now();
    let mut connections = Resilience::default();
    // A server that lost the session (it restarted) gets a new one that
    // carries on: what is in place already is found again by digest.
    // What sessions lost before the last one sent still counts.
    let mut counters = Arc::new(Counters::default());
    let mut wire_bytes = 0;
    let pool = loop {
        let pool = session::connect(&remote, spec.clone(), &config)
            .await
            .map_err(|e| Failure::run(format!("{remote}: {e}")))?;
        connections.sessions_opened += 1;
        let tree = match first_tree.take() {
            Some(tree) => tree,
            None => open_local(direction, local)?,
        };
        let settings = settings.clone();
        let hash = settings.hash;
        let run = async {
            match direction {
                Direction::Upload => {
                    let source = LocalSource::new(tree, settings);
                    let dest = RemoteDestination::new(pool.clone(), hash);
                    transfer::run(source, dest, options.clone(), counters.clone()).await
                }
                Direction::Download => {
                    let dest = LocalDestination::new(tree, settings);
                    let source = RemoteSource::new(pool.clone(), hash);
                    transfer::run(source, dest, options.clone(), counters.clone()).await
                }
            }
        };
        let result = tokio::select! {
            result = run => result,
            _ = tokio::signal::ctrl_c() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), pool.close()).await;
                return Err(Failure { status: 130, message: "interrupted".into() });
            }
        };
        let lost = pool.resilience();
        connections.reconnects += lost.reconnects;
        connections.requests_retried += lost.requests_retried;
        match result {
            Ok(()) => break pool,
            Err(e) if pool.session_gone() && connections.sessions_opened < MAX_SESSIONS_PER_RUN => {
                tracing::warn!("{e}; opening a new session to carry on");
                wire_bytes += pool.wire_bytes();
                counters = Arc::new(Counters::carrying_on(&counters));
            }
            Err(e) => return Err(Failure::run(format!("{remote}: {e}"))),
        }
    };
    pool.close().await;
    if let Some(cache) = &cache {
        cache.flush();
        tracing::info!("{}", cache.summary());
    }
    wire_bytes += pool.wire_bytes();
    let report = Report {
        bwlimit: config.pacer.pacing(),
        ..counters.report(started.elapsed(), wire_bytes, pool.latency(), connections)
    };
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

/// The local tree: for an upload it must exist; for a download it is made.
fn open_local(direction: Direction, local: &Path) -> Result<Tree, Failure> {
    if direction == Direction::Download {
        std::fs::create_dir_all(local)
            .map_err(|e| Failure::run(format!("cannot create {}: {e}", local.display())))?;
    }
    match std::fs::metadata(local) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => return Err(Failure::run(format!("{} is not a directory", local.display()))),
        Err(e) => return Err(Failure::run(format!("{}: {e}", local.display()))),
    }
    Tree::open(local).map_err(|e| Failure::run(format!("{}: {e}", local.display())))
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
