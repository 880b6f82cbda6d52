//! The command line: its subcommands and options (clap derive), and the
//! parsers of option values.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use pareco::codec::HashAlgo;
use pareco::peer;
use pareco::session::tls::Fingerprint;

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
    /// Print a completion script for SHELL on stdout.
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout.
    Man,
    /// Serve a web page to start, watch and cancel transfers.
    Ui(UiArgs),
}

#[derive(Args)]
pub(crate) struct UiArgs {
    /// Address and port of the page (anything but loopback lets whoever
    /// reaches it and holds the key read and write files as this user).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    pub(crate) bind: String,
    #[command(flatten)]
    pub(crate) verbosity: Verbosity,
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
    /// Serve TLS only, with a certificate made once and kept in --tls-dir;
    /// its fingerprint is printed at start, for clients' --tls-fingerprint.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    pub(crate) tls_self_signed: bool,
    /// Where --tls-self-signed keeps its certificate and key [default:
    /// $XDG_DATA_HOME/pareco/tls, else ~/.local/share/pareco/tls]. Never
    /// inside --root.
    #[arg(long, value_name = "DIR", requires = "tls_self_signed")]
    pub(crate) tls_dir: Option<PathBuf>,
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
    /// Parallel connections (1-256), or `auto`: start with 4 and double
    /// while the transfer gets faster.
    #[arg(short = 'n', long, default_value = "auto", value_parser = parse_connections, value_name = "N|auto")]
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
    /// Files that are hard links of each other in the source arrive as hard
    /// links of each other; their data travels once.
    #[arg(short = 'H', long)]
    pub(crate) hard_links: bool,
    /// Holes and runs of zeros are neither read, sent nor written: a sparse
    /// file stays sparse (with a temporary file and with --inplace).
    #[arg(long)]
    pub(crate) sparse: bool,
    /// recv as root: keep the setuid/setgid bits of received files (they
    /// are cleared otherwise).
    #[arg(long)]
    pub(crate) keep_setid: bool,
    #[command(flatten)]
    pub(crate) meta: MetaArgs,
    #[command(flatten)]
    pub(crate) cache: CacheArgs,
    /// Print a JSON report on stdout at the end.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) show: ShowArgs,
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
    /// Trust the certificates in this PEM file instead of the system's
    /// roots: as CAs, and each as the server's own (pinned) when it is
    /// exactly that one.
    #[arg(long, value_name = "PEM")]
    pub(crate) ca_cert: Option<PathBuf>,
    /// Trust the server whose certificate has this SHA-256 fingerprint (as
    /// `pareco listen` prints it) instead of a CA and the name check.
    #[arg(long, value_name = "sha256:HEX", conflicts_with = "ca_cert")]
    pub(crate) tls_fingerprint: Option<Fingerprint>,
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

/// Metadata kept besides permission bits and mtime.
#[derive(Args)]
pub(crate) struct MetaArgs {
    /// Keep owners (by name where both sides know it, else by number);
    /// the destination must run as root, else it is said once and skipped.
    #[arg(short = 'o', long)]
    pub(crate) owner: bool,
    /// Keep groups (by name where both sides know it, else by number).
    #[arg(short = 'g', long)]
    pub(crate) group: bool,
    /// Owners and groups by number only, never by name.
    #[arg(long)]
    pub(crate) numeric_ids: bool,
    /// Keep extended attributes: user.* always; trusted.*, security.* and
    /// system.* when both sides run as root.
    #[arg(short = 'X', long)]
    pub(crate) xattrs: bool,
}

impl MetaArgs {
    /// What the session asks for, and whether this client runs as root.
    pub(crate) fn preserve(&self) -> pareco::codec::Preserve {
        pareco::codec::Preserve {
            owner: self.owner,
            group: self.group,
            numeric_ids: self.numeric_ids,
            xattrs: self.xattrs,
            // Said only when something is asked for: a session that asks
            // for nothing encodes nothing of this.
            privileged: (self.owner || self.group || self.xattrs) && peer::extra::running_as_root(),
        }
    }
}

/// What a transfer shows while it runs, and whether it changes anything:
/// progress, JSON events, dry run, a limit on deletions.
#[derive(Args)]
pub(crate) struct ShowArgs {
    /// Change nothing on the destination: only compare, and print each path
    /// that would be created, updated or deleted, one line each (itemized
    /// in the manner of rsync's itemized changes; on stderr with --json).
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// With --delete: if more than N entries would be deleted, delete none
    /// and fail.
    #[arg(long, value_name = "N", requires = "delete")]
    pub(crate) max_delete: Option<u64>,
    /// Print newline-delimited JSON events on stdout: progress about once a
    /// second, one per entry done, warnings, errors, and the final report.
    #[arg(long, conflicts_with = "json")]
    pub(crate) json_events: bool,
    /// Draw the progress display on stderr even when it is not a terminal
    /// (or with -q, --json or --json-events).
    #[arg(long, overrides_with = "no_progress")]
    pub(crate) progress: bool,
    /// Never draw the progress display.
    #[arg(long, overrides_with = "progress")]
    pub(crate) no_progress: bool,
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
    /// The connections a session starts with.
    pub(crate) fn first(self) -> u64 {
        match self {
            Connections::Fixed(n) => n,
            Connections::Auto => pareco::session::autotune::START as u64,
        }
    }

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
    pareco::session::pace::parse_rate(text).map_err(|e| match e.contains("below the least") {
        true => format!("{e} (leave --bwlimit out for no limit)"),
        false => e,
    })
}
