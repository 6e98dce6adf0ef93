//! Search index keys: what a record is findable by, derived purely from its versions.
//!
//! A record is indexed under every value any of its versions held (current and past), so that
//! `_history` searches find old names and addresses; a search then checks each candidate
//! against the record itself, so the index only has to find a superset quickly.

use serde_json::{Map, Value};
use unicode_normalization::UnicodeNormalization;

use super::patient::list;
use super::rules::date_part;

/// One index entry's key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndexKey {
    /// Normalised family name and birth date (`yyyymmdd`).
    Family(String, u32),
    /// Double Metaphone code of a family name, and birth date.
    Phonetic(String, u32),
    /// Normalised first given name (first word), and birth date.
    Given(String, u32),
    /// Postcode, upper case without spaces.
    Postcode(String),
    /// Telephone number, digits and `+` only.
    Phone(String),
    /// E-mail address, lower case.
    Email(String),
    /// GP practice ODS code, upper case.
    Gp(String),
}

/// How a search reaches its candidates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Family names equal to `name` (or starting with it, when `prefix`), born in `birth`.
    Family {
        name: String,
        prefix: bool,
        birth: (u32, u32),
    },
    Phonetic {
        code: String,
        birth: (u32, u32),
    },
    /// First given names equal to `name`, born in `birth`.
    Given {
        name: String,
        birth: (u32, u32),
    },
    Postcode {
        code: String,
        prefix: bool,
    },
    Phone(String),
    Email(String),
    Gp(String),
}

impl IndexKey {
    /// What kind of key, without its value.
    pub fn kind(&self) -> &'static str {
        match self {
            IndexKey::Family(..) => "family name",
            IndexKey::Phonetic(..) => "family name sound",
            IndexKey::Given(..) => "first given name",
            IndexKey::Postcode(_) => "postcode",
            IndexKey::Phone(_) => "phone",
            IndexKey::Email(_) => "e-mail",
            IndexKey::Gp(_) => "GP",
        }
    }
}

/// The differences between the index entries the records call for (`expected`) and those
/// the indexes hold (`actual`), as `reindex --check` reports them: by record and kind of key,
/// never by value (the report may reach someone who may not read a restricted record's
/// postcode).
pub fn differences(
    expected: &std::collections::BTreeSet<(IndexKey, u64)>,
    actual: &std::collections::BTreeSet<(IndexKey, u64)>,
) -> Vec<String> {
    let missing = expected
        .difference(actual)
        .map(|(k, id)| format!("missing: a {} key of {id:010}", k.kind()));
    let extra = actual
        .difference(expected)
        .map(|(k, id)| format!("unexpected: a {} key of {id:010}", k.kind()));
    missing.chain(extra).collect()
}

/// Case- and accent-insensitive form of a name: NFD, combining marks dropped, lower case.
/// Control characters are dropped from every key (a database's text may not hold NUL).
pub fn fold(s: &str) -> String {
    s.nfd()
        .filter(|c| !('\u{300}'..='\u{36f}').contains(c) && !c.is_control())
        .flat_map(char::to_lowercase)
        .collect::<String>()
        .trim()
        .to_string()
}

/// The folded first word of a given name ("Mary Ann" → "mary").
pub fn first_word(s: &str) -> Option<String> {
    fold(s).split_whitespace().next().map(str::to_string)
}

pub fn postcode(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .flat_map(char::to_uppercase)
        .collect()
}

pub fn phone(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_digit() || *c == '+')
        .collect()
}

pub fn email(s: &str) -> String {
    s.trim()
        .chars()
        .filter(|c| !c.is_control())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Double Metaphone codes (primary and, when different, alternate) of a name; none for a
/// name with no letters. Only ASCII letters are encoded (after accents are folded away):
/// Double Metaphone is defined for them, and its implementation panics on other scripts.
pub fn phonetic(name: &str) -> Vec<String> {
    let folded: String = fold(name)
        .chars()
        .filter(char::is_ascii_alphabetic)
        .collect();
    if folded.is_empty() {
        return Vec::new();
    }
    let dm = rphonetic::DoubleMetaphone::new(Some(6));
    let r = dm.double_metaphone(&folded);
    let (p, a) = (r.primary(), r.alternate());
    match (p.is_empty(), a.is_empty() || a == p) {
        (true, _) => Vec::new(),
        (false, true) => vec![p],
        (false, false) => vec![p, a],
    }
}

/// A date (or date-time) as a sortable `yyyymmdd` number.
pub fn date_key(s: &str) -> Option<u32> {
    let d = date_part(s)?;
    Some(d.year() as u32 * 10_000 + u32::from(u8::from(d.month())) * 100 + u32::from(d.day()))
}

/// The index keys of one version of a record.
pub fn keys(doc: &Map<String, Value>) -> Vec<IndexKey> {
    let mut out = Vec::new();
    let birth = doc
        .get("birthDate")
        .and_then(Value::as_str)
        .and_then(date_key);
    if let Some(birth) = birth {
        for n in list(doc, "name") {
            if let Some(family) = n.get("family").and_then(Value::as_str) {
                out.push(IndexKey::Family(fold(family), birth));
                out.extend(
                    phonetic(family)
                        .into_iter()
                        .map(|c| IndexKey::Phonetic(c, birth)),
                );
            }
            let first_given = n
                .get("given")
                .and_then(|g| g.get(0))
                .and_then(Value::as_str);
            if let Some(given) = first_given.and_then(first_word) {
                out.push(IndexKey::Given(given, birth));
            }
        }
    }
    for a in list(doc, "address") {
        if let Some(pc) = a.get("postalCode").and_then(Value::as_str) {
            out.push(IndexKey::Postcode(postcode(pc)));
        }
    }
    for t in list(doc, "telecom") {
        let value = t.get("value").and_then(Value::as_str).unwrap_or_default();
        match t.get("system").and_then(Value::as_str) {
            Some("phone") | Some("other") => out.push(IndexKey::Phone(phone(value))),
            Some("email") => out.push(IndexKey::Email(email(value))),
            _ => {}
        }
    }
    for gp in list(doc, "generalPractitioner") {
        if let Some(code) = gp.pointer("/identifier/value").and_then(Value::as_str) {
            let code: String = code.chars().filter(|c| !c.is_control()).collect();
            out.push(IndexKey::Gp(code.to_uppercase()));
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_hold_no_control_characters() {
        let doc = json!({"birthDate": "2001-01-01",
            "name": [{"family": "Smi\u{0}th", "given": ["Ja\u{7}ne"]}],
            "address": [{"postalCode": "LS1\u{0} 6AE"}],
            "telecom": [{"system": "email", "value": "a\u{0}b@example.com"},
                        {"system": "phone", "value": "0163\u{0}2960587"}],
            "generalPractitioner": [{"identifier": {"value": "Y1\u{0}2345"}}]});
        let keys = keys(doc.as_object().unwrap());
        let text = format!("{keys:?}");
        assert!(
            !keys.is_empty() && !text.contains("\\0") && !text.contains("\\u{7}"),
            "{text}"
        );
        assert!(keys.contains(&IndexKey::Email("ab@example.com".into())));
        assert!(keys.contains(&IndexKey::Family("smith".into(), 20010101)));
    }

    #[test]
    fn folding_and_codes() {
        assert_eq!(fold(" Zieliński "), "zielinski");
        assert_eq!(fold("O'Brien-Núñez"), "o'brien-nunez");
        assert_eq!(postcode("ls1 6ae"), "LS16AE");
        assert_eq!(phone("01632 960 001"), "01632960001");
        // homophones share a code
        assert_eq!(phonetic("Smith")[0], phonetic("Smyth")[0]);
        assert_eq!(phonetic("Stephens")[0], phonetic("Stevens")[0]);
        assert_eq!(phonetic("Knight")[0], phonetic("Night")[0]);
        assert!(phonetic("''").is_empty());
        // found by fuzzing: other scripts once panicked inside the encoder
        assert_eq!(phonetic("BIRHDTEGERϘ"), phonetic("BIRHDTEGER"));
        assert!(phonetic("Ϙώ").is_empty());
        // letters PDS allows in names that have no ASCII decomposition
        for name in [
            "Søren",
            "Ødegård",
            "Łukasz",
            "Strauß",
            "Æthelred",
            "Đorđević",
        ] {
            let _ = phonetic(name);
        }
        assert_eq!(phonetic("Ødegård"), phonetic("degard"));
        assert_eq!(date_key("1990-02-03"), Some(19900203));
        assert_eq!(date_key("1990"), Some(19900101));
    }

    #[test]
    fn keys_of_a_record() {
        let doc = json!({"birthDate": "1990-02-03", "name": [{"use": "usual", "family": "Smith"}, {"use": "old", "family": "Jones"}],
            "address": [{"postalCode": "LS1 6AE"}], "telecom": [{"system": "email", "value": "A@Example.com"}, {"system": "phone", "value": "0113 496 0000"}],
            "generalPractitioner": [{"identifier": {"value": "y12345"}}]});
        let Value::Object(m) = doc else {
            unreachable!()
        };
        let k = keys(&m);
        assert!(k.contains(&IndexKey::Family("smith".into(), 19900203)));
        assert!(k.contains(&IndexKey::Family("jones".into(), 19900203)));
        assert!(
            !k.iter().any(|k| matches!(k, IndexKey::Given(..))),
            "no given names here"
        );
        let Value::Object(m) = json!({"birthDate": "1990-02-03", "name": [{"use": "usual", "family": "Smith", "given": ["Mary Ann", "Jo"]}]})
        else {
            unreachable!()
        };
        assert!(keys(&m).contains(&IndexKey::Given("mary".into(), 19900203)));
        assert!(k.contains(&IndexKey::Postcode("LS16AE".into())));
        assert!(k.contains(&IndexKey::Email("a@example.com".into())));
        assert!(k.contains(&IndexKey::Phone("01134960000".into())));
        assert!(k.contains(&IndexKey::Gp("Y12345".into())));
        assert!(k
            .iter()
            .any(|k| matches!(k, IndexKey::Phonetic(c, 19900203) if c == "SM0")));
    }
}
