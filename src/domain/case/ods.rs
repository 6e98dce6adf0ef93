//! ODS codes: the Organisation Data Service's identifiers of GP practices and other bodies.

use std::fmt;

/// An ODS organisation code: 3 to 10 upper-case letters and digits, starting with a letter
/// (GP practices: a letter and five digits, e.g. `Y12345`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OdsCode(String);

impl OdsCode {
    pub fn parse(s: &str) -> Result<OdsCode, String> {
        let ok = (3..=10).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_uppercase())
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if ok {
            Ok(OdsCode(s.to_string()))
        } else {
            Err("an ODS code is 3 to 10 upper-case letters and digits, starting with a letter (e.g. Y12345)".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OdsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_parsed_not_trusted() {
        for good in ["Y12345", "A81001", "X26", "RX1AB"] {
            assert!(OdsCode::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "y12345",
            "12345",
            "Y1",
            "Y12345678901",
            "Y12 45",
            "Y1234é",
        ] {
            assert!(OdsCode::parse(bad).is_err(), "{bad}");
        }
    }
}
