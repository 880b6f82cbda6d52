//! The peer roles of the server's tree, seen from the client: each method
//! of [`Source`] and [`Destination`] becomes one request on the session's
//! [`Pool`], answered by the server's local peer.

use std::collections::HashSet;

use bytes::Bytes;
use tokio::sync::mpsc;
use xxhash_rust::xxh3::xxh3_128;

use crate::codec::{
    Action, ErrorKind, FileRead, HashAlgo, HashTarget, Message, Meta, Packet, RelPath, SmallFile, Span, Stat,
};
use crate::peer::error::printable;
use crate::peer::{hash, sparse};
use crate::peer::{
    Batch, Begun, Bundle, Chunk, Destination, Digest, Error, Listing, NewFile, Result, Source,
};

use super::pool::Pool;

/// The server's tree as the source of a download.
#[derive(Clone)]
pub struct RemoteSource {
    pool: Pool,
    hash: HashAlgo,
}

/// The server's tree as the destination of an upload.
#[derive(Clone)]
pub struct RemoteDestination {
    pool: Pool,
    hash: HashAlgo,
}

impl RemoteSource {
    /// The source role of the session behind `pool`, whose digest function
    /// is `hash`.
    pub fn new(pool: Pool, hash: HashAlgo) -> Self {
        RemoteSource { pool, hash }
    }
}

impl RemoteDestination {
    /// The destination role of the session behind `pool`, whose digest
    /// function is `hash`.
    pub fn new(pool: Pool, hash: HashAlgo) -> Self {
        RemoteDestination { pool, hash }
    }
}

fn unexpected(got: &Message, wanted: &str) -> Error {
    Error::new(ErrorKind::Protocol, format!("server answered {} to {wanted}", got.name()))
}

/// Turns the `Listing` responses of a `Walk` into a [`Listing`]. A walk
/// whose connection was lost starts over on another: entries seen already
/// (known by a 128-bit hash of their path) are dropped.
async fn walk(pool: &Pool) -> Result<Listing> {
    let mut responses = pool.stream(Message::Walk).await?;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut seen = HashSet::new();
        while let Some(response) = responses.recv().await {
            let batch = match response {
                Ok(Packet { msg: Message::Listing { mut entries, problems, root, .. }, .. }) => {
                    entries.retain(|e| seen.insert(xxh3_128(e.path.as_bytes())));
                    let problems = problems.iter().map(|p| printable(p)).collect();
                    Batch { entries, problems, root, error: None }
                }
                Ok(Packet { msg, .. }) => {
                    Batch { problems: vec![unexpected(&msg, "Walk").message], ..Batch::default() }
                }
                // A lost session is the run's error (the client opens a new
                // one), not one more listing problem.
                Err(e) => Batch { error: Some(e), ..Batch::default() },
            };
            if tx.send(batch).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// The digests a `Hash` of `target` and `span` is answered with: at most
/// one per chunk (or group) of the span, else the answer is refused.
async fn hashes(pool: &Pool, algo: HashAlgo, target: HashTarget, span: Span) -> Result<Vec<Digest>> {
    let most = u64::from(span.count).div_ceil(u64::from(span.group.max(1)));
    match pool.call(Message::Hash { target, span }, Bytes::new()).await?.msg {
        Message::Hashes { digests } => {
            let digests = hash::unpack(algo, &digests)?;
            if digests.len() as u64 > most {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("server answered {} digests for a span of {most}", digests.len()),
                ));
            }
            Ok(digests)
        }
        other => Err(unexpected(&other, "Hash")),
    }
}

/// `HashFiles`: one digest per file, or the failure the server named.
async fn file_hashes(pool: &Pool, algo: HashAlgo, files: Vec<(RelPath, u64)>) -> Result<Vec<Result<Digest>>> {
    let count = files.len();
    match pool.call(Message::HashFiles { files }, Bytes::new()).await?.msg {
        Message::FilesHashed { digests, failures } => {
            let digests = hash::unpack(algo, &digests)?;
            if digests.len() != count || failures.iter().any(|f| f.index as usize >= count) {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("server answered {} digests for {count} files", digests.len()),
                ));
            }
            let mut out: Vec<Result<Digest>> = digests.into_iter().map(Ok).collect();
            for f in failures {
                out[f.index as usize] = Err(Error::from_peer(f.kind, &f.message));
            }
            Ok(out)
        }
        other => Err(unexpected(&other, "HashFiles")),
    }
}

async fn done(pool: &Pool, msg: Message, payload: Bytes) -> Result<()> {
    let name = msg.name();
    match pool.call(msg, payload).await?.msg {
        Message::Done => Ok(()),
        other => Err(unexpected(&other, name)),
    }
}

impl Source for RemoteSource {
    async fn walk(&self) -> Result<Listing> {
        walk(&self.pool).await
    }

    async fn hash(&self, path: RelPath, span: Span) -> Result<Vec<Digest>> {
        hashes(&self.pool, self.hash, HashTarget::Path(path), span).await
    }

    async fn hash_files(&self, files: Vec<(RelPath, u64)>) -> Result<Vec<Result<Digest>>> {
        file_hashes(&self.pool, self.hash, files).await
    }

    async fn read(&self, path: RelPath, offset: u64, len: u32) -> Result<Chunk> {
        let packet = self.pool.call(Message::Read { path, offset, len }, Bytes::new()).await?;
        match packet.msg {
            Message::Data { digest, file } if packet.payload.len() == len as usize => Ok(Chunk {
                data: packet.payload,
                zeros: false,
                digest: hash::decode(self.hash, &digest)?,
                file,
            }),
            Message::Zeros { file } => {
                let digest = sparse::zero_digest(self.hash, len as usize);
                Ok(Chunk { data: Bytes::new(), zeros: true, digest, file })
            }
            Message::Data { .. } => Err(Error::new(
                ErrorKind::Protocol,
                format!("server sent {} bytes for a read of {len}", packet.payload.len()),
            )),
            other => Err(unexpected(&other, "Read")),
        }
    }

    async fn read_files(&self, files: Vec<(RelPath, u32)>) -> Result<Bundle> {
        let count = files.len();
        let lens: Vec<usize> = files.iter().map(|(_, len)| *len as usize).collect();
        let answer = self.pool.call(Message::ReadFiles { files }, Bytes::new()).await?;
        let Message::FilesRead { files } = answer.msg else {
            return Err(unexpected(&answer.msg, "ReadFiles"));
        };
        let read: usize = files
            .iter()
            .zip(&lens)
            .filter(|(f, _)| matches!(f, FileRead::Read { .. }))
            .map(|(_, len)| len)
            .sum();
        if files.len() != count || answer.payload.len() != read {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "server answered {} of {count} files with {} bytes where {read} were due",
                    files.len(),
                    answer.payload.len()
                ),
            ));
        }
        let files = files
            .into_iter()
            .map(|outcome| match outcome {
                FileRead::Read { digest, file } => Ok((hash::decode(self.hash, &digest)?, file)),
                FileRead::Failed { kind, message } => Err(Error::from_peer(kind, &message)),
            })
            .collect();
        Ok(Bundle { data: answer.payload, files })
    }
}

impl Destination for RemoteDestination {
    async fn walk(&self) -> Result<Listing> {
        walk(&self.pool).await
    }

    async fn probe(&self, paths: Vec<RelPath>) -> Result<Vec<Option<Stat>>> {
        let wanted = paths.len();
        match self.pool.call(Message::Probe { paths }, Bytes::new()).await?.msg {
            Message::Probed { found } if found.len() == wanted => Ok(found),
            other => Err(unexpected(&other, "Probe")),
        }
    }

    async fn hash(&self, target: HashTarget, span: Span) -> Result<Vec<Digest>> {
        hashes(&self.pool, self.hash, target, span).await
    }

    async fn hash_files(&self, files: Vec<(RelPath, u64)>) -> Result<Vec<Result<Digest>>> {
        file_hashes(&self.pool, self.hash, files).await
    }

    async fn begin(&self, path: RelPath, size: u64) -> Result<Begun> {
        match self.pool.call(Message::Begin { path, size }, Bytes::new()).await?.msg {
            Message::Begun { handle, partial } => Ok(Begun { handle, partial }),
            other => Err(unexpected(&other, "Begin")),
        }
    }

    async fn copy_old(&self, handle: u64, ranges: Vec<(u64, u64)>) -> Result<()> {
        done(&self.pool, Message::CopyOld { handle, ranges }, Bytes::new()).await
    }

    async fn write(&self, handle: u64, offset: u64, data: Bytes, digest: Digest) -> Result<()> {
        let msg = Message::Write { handle, offset, digest: hash::encode(self.hash, digest) };
        done(&self.pool, msg, data).await
    }

    async fn zero(&self, handle: u64, offset: u64, len: u32) -> Result<()> {
        done(&self.pool, Message::Zero { handle, offset, len }, Bytes::new()).await
    }

    async fn finish(&self, handle: u64, meta: Meta) -> Result<()> {
        done(&self.pool, Message::Finish { handle, meta }, Bytes::new()).await
    }

    async fn discard(&self, handle: u64, remove: bool) -> Result<()> {
        done(&self.pool, Message::Discard { handle, remove }, Bytes::new()).await
    }

    async fn put_file(&self, path: RelPath, meta: Meta, data: Bytes, digest: Digest) -> Result<()> {
        let msg = Message::PutFile { path, meta, digest: hash::encode(self.hash, digest) };
        done(&self.pool, msg, data).await
    }

    async fn put_files(&self, files: Vec<NewFile>, data: Bytes) -> Result<Vec<(usize, Error)>> {
        let count = files.len();
        let files = files
            .into_iter()
            .map(|f| SmallFile {
                path: f.path,
                meta: f.meta,
                len: f.len,
                digest: hash::encode(self.hash, f.digest),
            })
            .collect();
        match self.pool.call(Message::PutFiles { files }, data).await?.msg {
            Message::FilesPut { failures } if failures.iter().all(|f| (f.index as usize) < count) => {
                Ok(failures
                    .into_iter()
                    .map(|f| (f.index as usize, Error::from_peer(f.kind, &f.message)))
                    .collect())
            }
            other => Err(unexpected(&other, "PutFiles")),
        }
    }

    async fn apply(&self, actions: Vec<Action>) -> Result<Vec<(RelPath, String)>> {
        let count = actions.len();
        match self.pool.call(Message::Apply { actions }, Bytes::new()).await?.msg {
            Message::Applied { failures } if failures.len() <= count => {
                Ok(failures.into_iter().map(|(path, why)| (path, printable(&why))).collect())
            }
            Message::Applied { failures } => Err(Error::new(
                ErrorKind::Protocol,
                format!("server answered {} failures for {count} actions", failures.len()),
            )),
            other => Err(unexpected(&other, "Apply")),
        }
    }
}
