//! Record versions and the weak ETags that carry them (`W/"3"`).

use std::fmt;

/// A record version: 1 for a new record, +1 for every change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(u32);

impl Version {
    pub const FIRST: Version = Version(1);

    /// Versions start at 1; 0 is not a version.
    pub fn new(n: u32) -> Option<Self> {
        (n > 0).then_some(Version(n))
    }

    /// Parses `meta.versionId` (a positive decimal integer as a string).
    pub fn parse(s: &str) -> Option<Self> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('0') {
            return None;
        }
        s.parse().ok().and_then(Self::new)
    }

    /// Parses an `If-Match` value, which PDS requires to be exactly `W/"<n>"`.
    pub fn parse_if_match(header: &str) -> Option<Self> {
        let inner = header.strip_prefix("W/\"")?.strip_suffix('"')?;
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // `W/"007"` is a well-formed version 7; a number too large is no version we hold.
        inner
            .parse::<u64>()
            .ok()
            .map(|n| Version(n.min(u64::from(u32::MAX)) as u32))
    }

    pub fn next(self) -> Version {
        Version(self.0.checked_add(1).expect("version overflow"))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// The ETag header value for this version.
    pub fn etag(self) -> String {
        format!("W/\"{}\"", self.0)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_forms() {
        assert_eq!(Version::parse_if_match("W/\"2\""), Version::new(2));
        assert_eq!(Version::parse_if_match("W/\"0\""), Some(Version(0)));
        for bad in [
            "2",
            "\"2\"",
            "W/2",
            "W/\"\"",
            "W/\"2",
            "w/\"2\"",
            "W/\"-1\"",
            "W/\"1.5\"",
            " W/\"2\"",
        ] {
            assert_eq!(Version::parse_if_match(bad), None, "{bad}");
        }
    }

    #[test]
    fn version_ids() {
        assert_eq!(Version::parse("12"), Version::new(12));
        for bad in ["", "0", "01", "-1", "1a"] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
        assert_eq!(Version::new(3).unwrap().etag(), "W/\"3\"");
    }
}
