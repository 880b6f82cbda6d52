//! Digests of chunks with the algorithm a session chose, and their packing
//! into the byte strings the protocol carries.

use serde_bytes::ByteBuf;

use crate::codec::{DigestList, HashAlgo};

use super::error::{Error, Result};

/// A digest, widened to 128 bits whatever the algorithm (narrower ones are
/// zero-extended).
pub type Digest = u128;

/// The digest of `data`.
pub fn digest(algo: HashAlgo, data: &[u8]) -> Digest {
    match algo {
        HashAlgo::Xxh3 => xxhash_rust::xxh3::xxh3_64(data) as u128,
        HashAlgo::Xxh128 => xxhash_rust::xxh3::xxh3_128(data),
        HashAlgo::Xxh64 => xxhash_rust::xxh64::xxh64(data, 0) as u128,
        HashAlgo::Crc32 => crc32fast::hash(data) as u128,
        HashAlgo::Crc32c => crc32c::crc32c(data) as u128,
        HashAlgo::Adler32 => {
            let mut adler = adler2::Adler32::new();
            adler.write_slice(data);
            adler.checksum() as u128
        }
    }
}

/// One digest as `width` big-endian bytes.
pub fn encode(algo: HashAlgo, digest: Digest) -> ByteBuf {
    ByteBuf::from(digest.to_be_bytes()[16 - algo.width()..].to_vec())
}

/// Reads one digest; the length must be the algorithm's width.
pub fn decode(algo: HashAlgo, bytes: &[u8]) -> Result<Digest> {
    if bytes.len() != algo.width() {
        return Err(Error::new(
            crate::codec::ErrorKind::Protocol,
            format!("digest of {} bytes, {:?} digests have {}", bytes.len(), algo, algo.width()),
        ));
    }
    let mut full = [0u8; 16];
    full[16 - bytes.len()..].copy_from_slice(bytes);
    Ok(u128::from_be_bytes(full))
}

/// Packs digests back to back.
pub fn pack(algo: HashAlgo, digests: &[Digest]) -> DigestList {
    let width = algo.width();
    let mut bytes = Vec::with_capacity(digests.len() * width);
    for d in digests {
        bytes.extend_from_slice(&d.to_be_bytes()[16 - width..]);
    }
    DigestList(bytes)
}

/// Unpacks a [`DigestList`]; its length must be a multiple of the width.
pub fn unpack(algo: HashAlgo, list: &DigestList) -> Result<Vec<Digest>> {
    let width = algo.width();
    if !list.0.len().is_multiple_of(width) {
        return Err(Error::new(
            crate::codec::ErrorKind::Protocol,
            format!("digest list of {} bytes is not a multiple of {width}", list.0.len()),
        ));
    }
    list.0.chunks(width).map(|d| decode(algo, d)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(digest(HashAlgo::Crc32, b"123456789"), 0xcbf43926);
        assert_eq!(digest(HashAlgo::Crc32c, b"123456789"), 0xe3069283);
        assert_eq!(digest(HashAlgo::Adler32, b"Wikipedia"), 0x11e60398);
    }

    #[test]
    fn pack_round_trips_and_fits_width() {
        for algo in HashAlgo::ALL {
            assert_eq!(HashAlgo::from_name(algo.name()), Some(algo));
            let ds: Vec<Digest> = (0..5u8).map(|i| digest(algo, &[i; 100])).collect();
            let packed = pack(algo, &ds);
            assert_eq!(packed.0.len(), 5 * algo.width());
            assert_eq!(unpack(algo, &packed).unwrap(), ds);
            assert_eq!(decode(algo, &encode(algo, ds[1])).unwrap(), ds[1]);
            assert!(decode(algo, &[0u8; 3]).is_err());
        }
    }
}
