//! The names of pareco's temporary files: a changed file `DIR/NAME` is
//! built in `DIR/.pareco-HASH.tmp`, where `HASH` is the 32 lowercase hex
//! digits of the XXH3-128 digest of `NAME`. The name is the same on every
//! run (so an interrupted run's partial file is found again) and 44 bytes
//! long whatever `NAME` is (so every legal name of up to 255 bytes has
//! one). A walk never lists names of that form.

use crate::codec::RelPath;

use super::error::{Error, Result};

const PREFIX: &[u8] = b".pareco-";
const SUFFIX: &[u8] = b".tmp";
const HEX_DIGITS: usize = 32;

/// The temporary file's name for a file named `name`.
pub fn temp_name(name: &[u8]) -> Vec<u8> {
    let digest = xxhash_rust::xxh3::xxh3_128(name);
    let mut temp = PREFIX.to_vec();
    temp.extend_from_slice(format!("{digest:032x}").as_bytes());
    temp.extend_from_slice(SUFFIX);
    temp
}

/// The temporary file's path for the file at `path` (beside it).
pub fn temp_path(path: &RelPath) -> Result<RelPath> {
    let (parent, name) =
        path.split_last().ok_or_else(|| Error::denied("the root cannot be written as a file"))?;
    parent.join(&temp_name(name)).map_err(|e| Error::denied(e.to_string()))
}

/// Is `name` one of pareco's temporary files?
pub fn is_temp_name(name: &[u8]) -> bool {
    name.len() == PREFIX.len() + HEX_DIGITS + SUFFIX.len()
        && name.starts_with(PREFIX)
        && name.ends_with(SUFFIX)
        && name[PREFIX.len()..PREFIX.len() + HEX_DIGITS]
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_has_a_short_temporary_name_that_is_never_listed() {
        for name in [&b"a"[..], &[b'x'; 255], "ünïcode ☃".as_bytes(), b".pareco-x.tmp"] {
            let temp = temp_name(name);
            assert_eq!(temp.len(), 44);
            assert!(is_temp_name(&temp));
            assert_eq!(temp, temp_name(name), "the same on every run");
        }
        assert_ne!(temp_name(b"a"), temp_name(b"b"));
        for not_temp in
            [&b".a.pareco.tmp"[..], b".pareco-.tmp", b"pareco-0123456789abcdef0123456789abcdef.tmp"]
        {
            assert!(!is_temp_name(not_temp), "{}", String::from_utf8_lossy(not_temp));
        }
        assert_eq!(
            temp_path(&RelPath::new("d/e/f").unwrap()).unwrap().as_bytes(),
            [&b"d/e/"[..], &temp_name(b"f")].concat()
        );
    }
}
