//! Query parameters as every route reads them: `&=` pairs and empty values are ignored (PDS's
//! search does so), and a parameter the route does not take is refused with
//! ADDITIONAL_PROPERTIES naming it — once, however often it was sent — never silently ignored.

use super::outcome::PdsError;

/// The pairs given: names with a non-empty value (trimmed).
pub fn given(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.trim()))
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .collect()
}

/// ADDITIONAL_PROPERTIES for the names in `given` that are not `known`, in the order first sent.
pub fn refuse_unknown(given: &[(&str, &str)], known: &[&str]) -> Result<(), PdsError> {
    let mut unknown: Vec<String> = Vec::new();
    for (k, _) in given {
        if !known.contains(k) && !unknown.iter().any(|u| u == k) {
            unknown.push(k.to_string());
        }
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(super::schema::additional_properties(&unknown))
    }
}

/// Owned pairs from literals, for tests.
#[cfg(test)]
pub fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
    q.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_pairs_are_ignored_and_unknown_names_named_once() {
        let q = pairs(&[
            ("", ""),
            ("a", " "),
            ("b", "1"),
            ("x", "1"),
            ("x", "2"),
            ("y", "3"),
        ]);
        assert_eq!(given(&q), [("b", "1"), ("x", "1"), ("x", "2"), ("y", "3")]);
        assert!(refuse_unknown(&given(&q), &["b", "x", "y"]).is_ok());
        let e = refuse_unknown(&given(&q), &["b"]).unwrap_err();
        assert_eq!(
            e.diagnostics.as_deref(),
            Some("Invalid request with error - Additional properties are not allowed ('x', 'y' were unexpected)")
        );
    }
}
