//! The order in which a store tries NHS numbers for an allocation: both stores draw from the
//! same sequence of candidates and take the first that was never allocated nor stored.

use crate::domain::NhsNumber;
use crate::store::StoreError;

/// Candidate NHS numbers from `prefixes` (first nine digits, inclusive), drawn uniformly at
/// random with the operating system's generator: numbers handed out one after another must
/// not be adjacent or in order, or the gap between two a caller was given would point to the
/// new identity of someone whose old number just disappeared. First 64 random draws; then —
/// a range so full that they all landed on used numbers — every number of the range, walking
/// from a random point, so that the last free one is still found.
pub fn candidates((lo, hi): (u64, u64)) -> Result<impl Iterator<Item = NhsNumber>, StoreError> {
    let span = hi - lo + 1;
    let draws = (0..64)
        .map(|_| random_below(span))
        .collect::<Result<Vec<_>, _>>()?;
    let start = random_below(span)?;
    Ok(draws
        .into_iter()
        .chain((0..span).map(move |k| (start + k) % span))
        .filter_map(move |offset| NhsNumber::from_prefix(lo + offset)))
}

/// A uniform random number below `n` (> 0), without modulo bias.
fn random_below(n: u64) -> Result<u64, StoreError> {
    let zone = u64::MAX - u64::MAX % n;
    loop {
        let r = getrandom::u64()
            .map_err(|e| StoreError::Unavailable(format!("no random numbers: {e}")))?;
        if r < zone {
            return Ok(r % n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_stay_in_range_and_cover_it() {
        let range = (999_300_000, 999_300_099);
        let all: Vec<NhsNumber> = candidates(range).unwrap().collect();
        assert!(all
            .iter()
            .all(|n| (9_993_000_000..=9_993_000_999).contains(&n.as_u64())));
        let distinct: std::collections::HashSet<_> = all[all.len().saturating_sub(100)..]
            .iter()
            .copied()
            .collect();
        let valid = (range.0..=range.1)
            .filter(|p| NhsNumber::from_prefix(*p).is_some())
            .count();
        assert!(distinct.len() >= valid - 10, "the walk covers the range");
    }
}
