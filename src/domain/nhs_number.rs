//! NHS numbers: ten digits whose last digit is a modulus-11 check digit.
//!
//! Parsing is the only way to get an [`NhsNumber`], so a value of this type is always valid
//! (PDS §7: weights 10..2 over the first nine digits, `11 - sum % 11`, 11 → 0, 10 → invalid).

use std::fmt;
use std::str::FromStr;

/// A valid NHS number (10 digits, correct check digit). Stored as an integer: compact keys in
/// the store, cheap to copy, and `Display` pads it back to ten digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NhsNumber(u64);

/// Why a string is not an NHS number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidNhsNumber {
    #[error("an NHS number is exactly ten digits")]
    Format,
    #[error("the check digit does not match")]
    CheckDigit,
    #[error("the first nine digits give check digit 10, which no NHS number has")]
    CheckDigitTen,
}

impl NhsNumber {
    /// Parses a ten-digit string and verifies its check digit.
    pub fn parse(s: &str) -> Result<Self, InvalidNhsNumber> {
        let bytes = s.as_bytes();
        if bytes.len() != 10 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(InvalidNhsNumber::Format);
        }
        let digits: Vec<u8> = bytes.iter().map(|b| b - b'0').collect();
        let expected = check_digit(&digits[..9]).ok_or(InvalidNhsNumber::CheckDigitTen)?;
        if expected != digits[9] {
            return Err(InvalidNhsNumber::CheckDigit);
        }
        Ok(NhsNumber(s.parse().expect("ten ASCII digits fit in u64")))
    }

    /// Completes nine leading digits (`0..=999_999_999`) with their check digit; `None` when the
    /// check digit would be 10 (such prefixes are never issued).
    pub fn from_prefix(first_nine: u64) -> Option<Self> {
        if first_nine > 999_999_999 {
            return None;
        }
        let s = format!("{first_nine:09}");
        let digits: Vec<u8> = s.bytes().map(|b| b - b'0').collect();
        let check = check_digit(&digits)?;
        Some(NhsNumber(first_nine * 10 + u64::from(check)))
    }

    /// Rebuilds a number from its integer form (as kept in the store), re-checking it.
    pub fn from_u64(n: u64) -> Result<Self, InvalidNhsNumber> {
        if n > 9_999_999_999 {
            return Err(InvalidNhsNumber::Format);
        }
        Self::parse(&format!("{n:010}"))
    }

    pub fn as_u64(self) -> u64 {
        self.0
    }
}

/// The modulus-11 check digit of nine digits, or `None` when it comes out as 10.
fn check_digit(first_nine: &[u8]) -> Option<u8> {
    let sum: u32 = first_nine
        .iter()
        .zip((2..=10).rev())
        .map(|(d, w)| u32::from(*d) * w)
        .sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        c => Some(c as u8),
    }
}

impl fmt::Display for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:010}", self.0)
    }
}

impl FromStr for NhsNumber {
    type Err = InvalidNhsNumber;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_numbers() {
        for s in ["9000000009", "9111231130", "9990003343", "9727194737"] {
            let n = NhsNumber::parse(s).unwrap();
            assert_eq!(n.to_string(), s);
        }
    }

    #[test]
    fn keeps_leading_zeros() {
        // 000000001 → sum 2 → 11-2 = 9
        let n = NhsNumber::parse("0000000019").unwrap();
        assert_eq!(n.to_string(), "0000000019");
        assert_eq!(NhsNumber::from_u64(19).unwrap(), n);
    }

    #[test]
    fn rejects_bad_check_digit() {
        assert_eq!(
            NhsNumber::parse("9000000000"),
            Err(InvalidNhsNumber::CheckDigit)
        );
        assert_eq!(
            NhsNumber::parse("9000000008"),
            Err(InvalidNhsNumber::CheckDigit)
        );
    }

    #[test]
    fn rejects_check_digit_ten() {
        // 1,0,0,0,0,0,0,0,1: 10 + 2 = 12 → 12 % 11 = 1 → 11 - 1 = 10
        for last in 0..=9 {
            let s = format!("100000001{last}");
            assert_eq!(
                NhsNumber::parse(&s),
                Err(InvalidNhsNumber::CheckDigitTen),
                "{s}"
            );
        }
        assert_eq!(NhsNumber::from_prefix(100_000_001), None);
    }

    #[test]
    fn rejects_wrong_shape() {
        for s in [
            "",
            "900000000",
            "90000000099",
            "900000000a",
            " 900000009",
            "9000-00009",
            "９000000009",
        ] {
            assert_eq!(NhsNumber::parse(s), Err(InvalidNhsNumber::Format), "{s:?}");
        }
    }

    #[test]
    fn from_prefix_makes_valid_numbers() {
        let mut made = 0;
        for p in 999_000_000..999_000_200 {
            if let Some(n) = NhsNumber::from_prefix(p) {
                assert_eq!(NhsNumber::parse(&n.to_string()), Ok(n));
                made += 1;
            }
        }
        // about one prefix in eleven has check digit 10
        assert!((170..=190).contains(&made), "{made}");
    }
}
