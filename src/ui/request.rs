//! The body of `POST /api/runs`: the options of `send`/`recv`, checked
//! and made a [`Job`]. The transfer token goes into the job's connection
//! settings and nowhere else (this type's `Debug` does not show it).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::codec::{Direction, HashAlgo, SessionSpec};
use crate::job::Job;
use crate::peer::{self, Filter, Settings};
use crate::session::pace::{self, Pacer};
use crate::session::tls::{Connector, Fingerprint, Trust};
use crate::session::{autotune, ClientConfig, Remote};
use crate::transfer;

/// Connections at most, and at most with `auto` (the default, as `-n`).
const MOST_CONNECTIONS: u64 = 256;
const AUTO_MOST: u64 = 64;
/// As `--reconnect-timeout` and `--io-timeout` by default.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(300);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A number, or text (`"auto"`, `"1MiB"`).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum NumberOrText {
    Number(u64),
    Text(String),
}

/// A transfer, as the page's form or a program asks for it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunRequest {
    /// `send` (upload) or `recv` (download).
    direction: String,
    local: PathBuf,
    remote: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    connections: Option<NumberOrText>,
    #[serde(default)]
    chunk_size: Option<NumberOrText>,
    #[serde(default)]
    hash: Option<String>,
    #[serde(default)]
    delete: bool,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    bwlimit: Option<NumberOrText>,
    /// Trust the TLS server whose certificate has this SHA-256 fingerprint
    /// (`--tls-fingerprint`), instead of the system's roots.
    #[serde(default)]
    tls_fingerprint: Option<String>,
}

impl fmt::Debug for RunRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunRequest")
            .field("direction", &self.direction)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("token", &self.token.as_ref().map(|_| "(redacted)"))
            .finish_non_exhaustive()
    }
}

/// What a run shows of its request: no token.
pub(super) struct Summary {
    pub direction: &'static str,
    pub local: String,
    pub remote: String,
}

impl RunRequest {
    /// The job this request asks for, or one line saying what is wrong.
    pub(super) fn into_job(self) -> Result<(Job, Summary), String> {
        let bwlimit = bwlimit(self.bwlimit)?;
        let (direction, name) = match self.direction.as_str() {
            "send" => (Direction::Upload, "send"),
            "recv" => (Direction::Download, "recv"),
            other => return Err(format!("direction {other:?} is neither \"send\" nor \"recv\"")),
        };
        if self.local.as_os_str().is_empty() {
            return Err("local: no directory given".into());
        }
        let remote: Remote = self.remote.trim().parse()?;
        let token = self.token.filter(|t| !t.is_empty());
        let (most, auto) = connections(self.connections)?;
        let chunk_size = chunk_size(self.chunk_size)?;
        let hash = match self.hash.as_deref().filter(|h| !h.is_empty()) {
            None => HashAlgo::Xxh3,
            Some(name) => {
                HashAlgo::from_name(name).ok_or_else(|| format!("hash: unknown digest {name:?}"))?
            }
        };
        let filter = Filter::new(&self.include, &self.exclude).map_err(|e| e.to_string())?;
        let pinned = match self.tls_fingerprint.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
            Some(text) => Some(text.parse::<Fingerprint>().map_err(|e| format!("tls_fingerprint: {e}"))?),
            None => None,
        };
        let tls = match (remote.tls, pinned) {
            (true, Some(pin)) => {
                Some(Connector::new(Trust::Fingerprint(pin), &remote.host).map_err(|e| e.to_string())?)
            }
            (true, None) => Some(Connector::new(Trust::System, &remote.host).map_err(|e| e.to_string())?),
            (false, Some(_)) => return Err("tls_fingerprint: needs a pareco+tls:// remote".into()),
            (false, None) => None,
        };
        let spec = SessionSpec {
            includes: self.include,
            excludes: self.exclude,
            delete: self.delete,
            bwlimit: bwlimit.unwrap_or(0),
            ..SessionSpec::new(direction, remote.path.clone(), chunk_size, hash)
        };
        // As the command line: a download run as root clears setuid and
        // setgid bits.
        let keep_setid = !rustix::process::geteuid().is_root();
        // The digest cache is opened by the run, once its directory is made.
        let settings = Settings::for_session(&spec, filter, keep_setid);
        let options = transfer::Options {
            dry_run: self.dry_run,
            ..transfer::Options::for_session(&spec, false, if auto { autotune::START } else { most as usize })
        };
        let config = ClientConfig {
            connections: most as usize,
            auto,
            token,
            tls,
            reconnect_timeout: RECONNECT_TIMEOUT,
            io_timeout: IO_TIMEOUT,
            pacer: Pacer::new(bwlimit),
        };
        let summary =
            Summary { direction: name, local: self.local.display().to_string(), remote: remote.to_string() };
        let job = Job { direction, local: self.local, remote, spec, settings, options, config, watch: None };
        Ok((job, summary))
    }
}

/// The connections to keep (or for `auto` to go up to), and whether auto.
fn connections(given: Option<NumberOrText>) -> Result<(u64, bool), String> {
    let number = match given {
        None => return Ok((AUTO_MOST, true)),
        Some(NumberOrText::Text(t)) if t.is_empty() || t.eq_ignore_ascii_case("auto") => {
            return Ok((AUTO_MOST, true))
        }
        Some(NumberOrText::Text(t)) => t.trim().parse::<u64>().ok(),
        Some(NumberOrText::Number(n)) => Some(n),
    };
    match number {
        Some(n @ 1..=MOST_CONNECTIONS) => Ok((n, false)),
        _ => Err(format!("connections: a number from 1 to {MOST_CONNECTIONS}, or \"auto\"")),
    }
}

/// The chunk size in bytes (1 MiB unless given), as `-c` takes it.
/// The bandwidth cap in bytes per second (`20M`, or a number), if any.
fn bwlimit(given: Option<NumberOrText>) -> Result<Option<u64>, String> {
    let text = match given {
        None => return Ok(None),
        Some(NumberOrText::Text(t)) if t.trim().is_empty() => return Ok(None),
        Some(NumberOrText::Number(n)) => n.to_string(),
        Some(NumberOrText::Text(t)) => t,
    };
    pace::parse_rate(text.trim()).map(Some).map_err(|e| format!("bwlimit: {e}"))
}

fn chunk_size(given: Option<NumberOrText>) -> Result<u32, String> {
    let size = match given {
        None => return Ok(1 << 20),
        Some(NumberOrText::Text(t)) if t.is_empty() => return Ok(1 << 20),
        Some(NumberOrText::Number(n)) => n,
        Some(NumberOrText::Text(t)) => parse_size::Config::new()
            .with_binary()
            .parse_size(t.trim())
            .map_err(|e| format!("chunk_size: {e} (use e.g. 65536, 64k, 1MiB, 4M)"))?,
    };
    if !(peer::MIN_CHUNK_SIZE as u64..=peer::MAX_CHUNK_SIZE as u64).contains(&size) {
        return Err(format!("chunk_size: {size} bytes is outside 1 KiB to 64 MiB"));
    }
    Ok(size as u32)
}
