//! `--include` / `--exclude` globs, matched against `/`-separated paths
//! relative to the synced root.
//!
//! `*` stays inside one component, `**` crosses components anywhere in a
//! pattern (so `**.txt` matches `a.txt` and `d/e/b.txt`, as in the original
//! Pareco), and a directory that matches brings its whole subtree. An entry
//! is selected when neither it nor an ancestor matches an exclude, and, if
//! there are includes, it or an ancestor matches one. Excludes win.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::codec::RelPath;

/// Compiled include and exclude patterns.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

/// A glob that cannot be compiled, naming the pattern.
#[derive(Debug, thiserror::Error)]
#[error("bad glob pattern {pattern:?}: {reason}")]
pub struct FilterError {
    /// The pattern at fault (cut short when it is too long).
    pub pattern: String,
    /// Why it was refused.
    pub reason: String,
}

/// Patterns per list (includes, excludes) at most, and bytes per pattern:
/// compiling globs costs time and memory, and a server compiles those a
/// client sends.
pub const MAX_PATTERNS: usize = 64;
/// Bytes per pattern at most.
pub const MAX_PATTERN_LEN: usize = 1024;

impl Filter {
    /// Compiles the include and exclude globs; refuses more than
    /// [`MAX_PATTERNS`] per list, a pattern longer than [`MAX_PATTERN_LEN`]
    /// and one that does not compile.
    pub fn new(includes: &[String], excludes: &[String]) -> Result<Filter, FilterError> {
        for patterns in [includes, excludes] {
            if patterns.len() > MAX_PATTERNS {
                return Err(FilterError {
                    pattern: patterns[MAX_PATTERNS].clone(),
                    reason: format!("more than {MAX_PATTERNS} patterns"),
                });
            }
            if let Some(long) = patterns.iter().find(|p| p.len() > MAX_PATTERN_LEN) {
                return Err(FilterError {
                    pattern: long.chars().take(40).collect::<String>() + "...",
                    reason: format!("longer than {MAX_PATTERN_LEN} bytes"),
                });
            }
        }
        Ok(Filter { include: compile(includes)?, exclude: compile(excludes)? })
    }

    /// Is `path` neither excluded nor outside the includes?
    pub fn selects(&self, path: &RelPath) -> bool {
        !self.excludes(path) && self.includes(path)
    }

    /// Does `path` or an ancestor match an exclude?
    pub fn excludes(&self, path: &RelPath) -> bool {
        self.exclude.as_ref().is_some_and(|set| matches_or_ancestor(set, path))
    }

    fn includes(&self, path: &RelPath) -> bool {
        self.include.as_ref().is_none_or(|set| matches_or_ancestor(set, path))
    }
}

fn matches_or_ancestor(set: &GlobSet, path: &RelPath) -> bool {
    let matches = |bytes: &[u8]| set.is_match(Path::new(OsStr::from_bytes(bytes)));
    matches(path.as_bytes()) || path.ancestors().any(matches)
}

fn compile(patterns: &[String]) -> Result<Option<GlobSet>, FilterError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let error = |reason: String| FilterError { pattern: pattern.clone(), reason };
        for expanded in expand_free_double_stars(pattern).map_err(error)? {
            let glob = GlobBuilder::new(&expanded)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| error(e.kind().to_string()))?;
            builder.add(glob);
        }
    }
    builder.build().map(Some).map_err(|e| FilterError { pattern: patterns.join(" "), reason: e.to_string() })
}

/// globset knows `**` only as a whole component (`**/x`, `x/**`, `x/**/y`).
/// Elsewhere (`**.txt`, `a**b`) it means "any text, `/` included", which is
/// `*` (no `/` in between) or `*/**/*` (one or more `/`): each such `**` is
/// replaced by both, giving up to 2^n globs.
fn expand_free_double_stars(pattern: &str) -> Result<Vec<String>, String> {
    const MAX_FREE: usize = 4;
    let mut results = vec![String::new()];
    let bytes = pattern.as_bytes();
    let mut free = 0;
    let mut i = 0;
    let mut literal_start = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'*') {
            let mut end = i;
            while bytes.get(end) == Some(&b'*') {
                end += 1;
            }
            let bounded_before = i == 0 || bytes[i - 1] == b'/';
            let bounded_after = end == bytes.len() || bytes[end] == b'/';
            if !(bounded_before && bounded_after) {
                free += 1;
                if free > MAX_FREE {
                    return Err(format!("more than {MAX_FREE} '**' inside components"));
                }
                let literal = &pattern[literal_start..i];
                results = results
                    .into_iter()
                    .flat_map(|r| [format!("{r}{literal}*"), format!("{r}{literal}*/**/*")])
                    .collect();
                literal_start = end;
            }
            i = end;
            continue;
        }
        i += 1;
    }
    let rest = &pattern[literal_start.min(pattern.len())..];
    Ok(results.into_iter().map(|r| format!("{r}{rest}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selected(includes: &[&str], excludes: &[&str], paths: &[&str]) -> Vec<String> {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let f = Filter::new(&own(includes), &own(excludes)).unwrap();
        paths.iter().filter(|p| f.selects(&RelPath::new(**p).unwrap())).map(|p| p.to_string()).collect()
    }

    const FILES: [&str; 4] = ["file1.txt", "A-dir/file2.txt", "A-dir/file3.zip", "B-dir/file4.txt"];

    #[test]
    fn the_four_examples_of_the_original() {
        assert_eq!(selected(&["*.txt"], &[], &FILES), ["file1.txt"]);
        assert_eq!(selected(&["*/*.txt"], &[], &FILES), ["A-dir/file2.txt", "B-dir/file4.txt"]);
        assert_eq!(selected(&["**.txt"], &[], &FILES), ["file1.txt", "A-dir/file2.txt", "B-dir/file4.txt"]);
        assert_eq!(selected(&["A*"], &[], &FILES), ["A-dir/file2.txt", "A-dir/file3.zip"]);
    }

    #[test]
    fn excludes_win_and_take_subtrees() {
        assert_eq!(selected(&["**.txt"], &["A*"], &FILES), ["file1.txt", "B-dir/file4.txt"]);
        assert_eq!(selected(&[], &["B-dir"], &FILES), ["file1.txt", "A-dir/file2.txt", "A-dir/file3.zip"]);
    }

    #[test]
    fn expansion() {
        assert_eq!(expand_free_double_stars("**.txt").unwrap(), ["*.txt", "*/**/*.txt"]);
        assert_eq!(expand_free_double_stars("a/**/b").unwrap(), ["a/**/b"]);
        assert_eq!(expand_free_double_stars("**").unwrap(), ["**"]);
        assert!(expand_free_double_stars("a**b**c**d**e**f").is_err());
        assert!(Filter::new(&["[".to_string()], &[]).is_err());
    }

    #[test]
    fn pattern_lists_are_capped_and_the_largest_allowed_compile_in_bounded_time() {
        // The most the limits let through: compiled, or refused by
        // globset's own size limits, in bounded time either way.
        let worst: Vec<String> =
            (0..MAX_PATTERNS).map(|i| format!("{i}**a**b**c**d{}", "x".repeat(900))).collect();
        let started = std::time::Instant::now();
        let _ = Filter::new(&worst, &worst);
        // A generous bound for a debug build on a slow machine.
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "{:?}", started.elapsed());
        let too_many: Vec<String> = (0..=MAX_PATTERNS).map(|i| format!("{i}.txt")).collect();
        assert!(Filter::new(&too_many, &[]).unwrap_err().reason.contains("more than 64"));
        assert!(Filter::new(&[], &["y".repeat(MAX_PATTERN_LEN + 1)]).unwrap_err().reason.contains("longer"));
    }
}
