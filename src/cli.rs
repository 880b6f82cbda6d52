//! The command line: its subcommands and options (clap derive), and the
//! parsers of option values.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use pareco::codec::HashAlgo;
use pareco::peer;

#[derive(Parser)]
#[command(name = "pareco", version, about = "Parallel remote directory sync over N TCP connections")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Serve a directory to any number of transfer sessions.
    Listen(ListenArgs),
    /// Upload: make the remote directory a mirror of LOCAL_DIR.
    Send {
        #[arg(value_name = "LOCAL_DIR")]
        local: PathBuf,
        #[arg(value_name = "REMOTE")]
        remote: String,
        #[command(flatten)]
        opts: TransferArgs,
    },
    /// Download: make LOCAL_DIR a mirror of the remote directory.
    Recv {
        #[arg(value_name = "REMOTE")]
        remote: String,
        #[arg(value_name = "LOCAL_DIR")]
        local: PathBuf,
        #[command(flatten)]
        opts: TransferArgs,
    },
}

#[derive(Args)]
pub(crate) struct ListenArgs {
    /// Address and port to listen on.
    #[arg(long, default_value = "0.0.0.0:4650", value_name = "ADDR:PORT")]
    pub(crate) bind: String,
    /// Directory served; sessions can reach nothing outside it.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub(crate) root: PathBuf,
    #[command(flatten)]
    pub(crate) token: TokenArgs,
    /// Make a random token, print it once on stdout, and require it.
    #[arg(short = 'g', long, conflicts_with_all = ["token", "token_file"])]
    pub(crate) generate_token: bool,
    /// Expire a session after this long without a frame (ms, s, m, h).
    #[arg(long, default_value = "150s", value_parser = parse_duration, value_name = "DUR")]
    pub(crate) session_timeout: Duration,
    /// Sessions open at once at most.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_sessions: u64,
    /// Connections per session at most.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_connections: u64,
    /// Serve TLS only, with this certificate chain (PEM).
    #[arg(long, value_name = "CERT.pem", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "KEY.pem", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Keep the setuid/setgid bits of uploaded files (they are cleared
    /// otherwise).
    #[arg(long)]
    pub(crate) keep_setid: bool,
    #[command(flatten)]
    pub(crate) cache: CacheArgs,
    /// Send at most RATE bytes per second in each session, all its
    /// connections together, and have its client send no more (a client's
    /// lower limit wins).
    #[arg(long, value_parser = parse_rate, value_name = "RATE")]
    pub(crate) bwlimit: Option<u64>,
    #[command(flatten)]
    pub(crate) verbosity: Verbosity,
}

#[derive(Args)]
pub(crate) struct CacheArgs {
    /// Where to keep the digest cache, so that files unchanged since they
    /// were last hashed are not read again [default: $XDG_CACHE_HOME/pareco,
    /// else ~/.cache/pareco]. Never inside a synced tree.
    #[arg(long, value_name = "DIR")]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Hash every file by reading it: no digest cache.
    #[arg(long, conflicts_with = "cache_dir")]
    pub(crate) no_cache: bool,
}

#[derive(Args)]
pub(crate) struct TokenArgs {
    /// Access token (prefer PARECO_TOKEN or --token-file: arguments show in `ps`).
    #[arg(short = 'a', long, env = "PARECO_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub(crate) token: Option<String>,
    /// Read the access token from the first line of FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    pub(crate) token_file: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct TransferArgs {
    /// Parallel connections (1-256), or `auto`: start with 4 and add more
    /// while the transfer gets faster.
    #[arg(short = 'n', long, default_value = "8", value_parser = parse_connections, value_name = "N|auto")]
    pub(crate) connections: Connections,
    /// Chunk size (bytes, or with k/KiB/M/MiB/G..., case-insensitive; 1 KiB to 64 MiB).
    #[arg(short = 'c', long, default_value = "1MiB", value_parser = parse_chunk_size, value_name = "SIZE")]
    pub(crate) chunk_size: u32,
    #[command(flatten)]
    pub(crate) token: TokenArgs,
    /// Digest function for comparing and checking chunks: xxh3, xxh128,
    /// xxh64, crc32, crc32c or adler32.
    #[arg(long, default_value = "xxh3", value_parser = parse_hash)]
    pub(crate) hash: HashAlgo,
    /// Trust equal size and mtime: never read such files.
    #[arg(long)]
    pub(crate) skip_digest: bool,
    /// Delete destination entries that the source does not have.
    #[arg(long, visible_alias = "delete-unexpected")]
    pub(crate) delete: bool,
    /// Sync only paths matching GLOB (repeatable).
    #[arg(short = 'i', long = "include", value_name = "GLOB")]
    pub(crate) includes: Vec<String>,
    /// Skip paths matching GLOB (repeatable; wins over --include).
    #[arg(short = 'e', long = "exclude", value_name = "GLOB")]
    pub(crate) excludes: Vec<String>,
    /// Write changed chunks straight into existing files (no temporary file).
    #[arg(long)]
    pub(crate) inplace: bool,
    /// Flush each file to the destination's disk before it takes its final
    /// name, and directories after their entries change: exit 0 then
    /// survives a power cut.
    #[arg(long)]
    pub(crate) fsync: bool,
    /// recv as root: keep the setuid/setgid bits of received files (they
    /// are cleared otherwise).
    #[arg(long)]
    pub(crate) keep_setid: bool,
    #[command(flatten)]
    pub(crate) cache: CacheArgs,
    /// Print a JSON report on stdout at the end.
    #[arg(long)]
    pub(crate) json: bool,
    /// With every connection lost, keep trying to join the session again
    /// for this long (ms, s, m, h); 0: lost connections are not replaced.
    #[arg(long, default_value = "5m", value_parser = parse_duration_or_zero, value_name = "DUR")]
    pub(crate) reconnect_timeout: Duration,
    /// A connection on which nothing arrived for this long while requests
    /// wait is dropped and replaced (idle ones are pinged).
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DUR")]
    pub(crate) io_timeout: Duration,
    /// Use TLS (implied by a pareco+tls:// address).
    #[arg(long)]
    pub(crate) tls: bool,
    /// Trust this CA (or self-signed) certificate instead of the system's roots.
    #[arg(long, value_name = "PEM")]
    pub(crate) ca_cert: Option<PathBuf>,
    /// Server name to verify instead of the address's host.
    #[arg(long, value_name = "NAME")]
    pub(crate) tls_server_name: Option<String>,
    /// Move at most RATE bytes per second (e.g. 512k, 20M, 1G; suffixes
    /// as for -c), all connections together, either way (a server's lower
    /// limit wins).
    #[arg(long, value_parser = parse_rate, value_name = "RATE")]
    pub(crate) bwlimit: Option<u64>,
    #[command(flatten)]
    pub(crate) verbosity: Verbosity,
}

#[derive(Args)]
pub(crate) struct Verbosity {
    /// More output: -v a line per file, -vv a line per chunk.
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub(crate) verbose: u8,
    /// Errors only.
    #[arg(short, long)]
    pub(crate) quiet: bool,
}

pub(crate) fn parse_hash(text: &str) -> Result<HashAlgo, String> {
    HashAlgo::from_name(text).ok_or_else(|| {
        let names: Vec<&str> = HashAlgo::ALL.iter().map(|a| a.name()).collect();
        format!("unknown digest function (use one of: {})", names.join(", "))
    })
}

pub(crate) fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text).map_err(|e| format!("{e} (use e.g. 0, 500ms, 30s, 5m)"))
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("{e} (use e.g. 500ms, 150s, 5m, 1h)"))?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

/// `-n`: a number of connections, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Connections {
    Fixed(u64),
    Auto,
}

/// Connections `-n auto` may go up to (the server may take fewer).
const AUTO_MOST: u64 = 64;

impl Connections {
    /// The connections to keep, or for `auto` the most to go up to.
    pub(crate) fn most(self) -> u64 {
        match self {
            Connections::Fixed(n) => n,
            Connections::Auto => AUTO_MOST,
        }
    }
}

fn parse_connections(text: &str) -> Result<Connections, String> {
    if text.eq_ignore_ascii_case("auto") {
        return Ok(Connections::Auto);
    }
    match text.parse::<u64>() {
        Ok(n @ 1..=256) => Ok(Connections::Fixed(n)),
        _ => Err(format!("{text:?} is neither a number of connections from 1 to 256 nor `auto`")),
    }
}

pub(crate) fn parse_chunk_size(text: &str) -> Result<u32, String> {
    let size = parse_size::Config::new()
        .with_binary()
        .parse_size(text)
        .map_err(|e| format!("{e} (use e.g. 65536, 64k, 1MiB, 4M)"))?;
    if !(peer::MIN_CHUNK_SIZE as u64..=peer::MAX_CHUNK_SIZE as u64).contains(&size) {
        return Err(format!("{size} bytes is outside 1 KiB to 64 MiB"));
    }
    Ok(size as u32)
}

/// `--bwlimit`: bytes per second, with the suffixes of `-c`.
pub(crate) fn parse_rate(text: &str) -> Result<u64, String> {
    let rate = parse_size::Config::new()
        .with_binary()
        .parse_size(text)
        .map_err(|e| format!("{e} (use bytes per second, e.g. 512k, 20M, 1G)"))?;
    if rate < 1024 {
        return Err(format!(
            "{rate} bytes per second is below the least, 1k (leave --bwlimit out for no limit)"
        ));
    }
    Ok(rate)
}
