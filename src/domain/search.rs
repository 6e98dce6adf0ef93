//! Patient search (PDS "trace"): the query, validated in PDS's order with PDS's codes, and how
//! a record matches it and scores.
//!
//! Scoring (documented in the README): every supplied field scores 0..1 and a record's score is
//! the mean over the supplied fields, rounded to 4 places; 1 means an exact match on every
//! field. Exact mode: a field matches exactly (1), by wildcard (0.85), or — with `_history` —
//! only on a past version (× 0.9); every field must match. Fuzzy mode (history always
//! included): names score 1 exact, 0.85 one edit away, 0.7 two edits away (names of 5+ letters),
//! 0.75 same Double Metaphone code, × 0.9 when given and family are transposed; gender, postcode
//! (0.6 for the same outward code), death date, GP, phone and e-mail score 1 or 0; a record
//! needs a name score above 0 and a total of at least [`FUZZY_THRESHOLD`].

use serde_json::{Map, Value};

use super::index::{self, date_key, fold, Lookup};
use super::outcome::{clip, ErrorCode, PdsError};
use super::patient::{list, DEATH_NOTIFICATION_URL};
use super::role::Role;
use super::view::{self, Element};

/// The record element each matching parameter reads, so that the restricted view decides what
/// a search may match on ([`SearchQuery::excludes_restricted_for`]).
#[rustfmt::skip]
pub const PARAMETER_ELEMENTS: [(&str, Element<'static>); 10] = [
    ("family",               Element::Field("name")),
    ("given",                Element::Field("name")),
    ("gender",               Element::Field("gender")),
    ("birthdate",            Element::Field("birthDate")),
    ("death-date",           Element::Field("deceasedDateTime")),
    ("address-postalcode",   Element::Field("address")),
    ("address-postcode",     Element::Field("address")),
    ("general-practitioner", Element::Field("generalPractitioner")),
    ("email",                Element::Field("telecom")),
    ("phone",                Element::Field("telecom")),
];

pub const PARAMETERS: [&str; 14] = [
    "family",
    "given",
    "gender",
    "birthdate",
    "death-date",
    "address-postalcode",
    "address-postcode",
    "general-practitioner",
    "email",
    "phone",
    "_fuzzy-match",
    "_exact-match",
    "_history",
    "_max-results",
];

/// Lowest total score a fuzzy match may have.
pub const FUZZY_THRESHOLD: f64 = 0.6;
const WILDCARD: f64 = 0.85;
const HISTORIC: f64 = 0.9;
const TRANSPOSED: f64 = 0.9;
pub const DEFAULT_MAX_RESULTS: usize = 50;

/// A part of a score that each version of a record is scored on (see [`SearchQuery::score`]).
#[derive(Clone, Copy)]
enum Part {
    Names,
    Postcode,
    Gp,
    Phone,
    Email,
}

/// A family or given name (or postcode) as searched: folded, possibly with `*` wildcards.
#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    pub pattern: String,
}

impl Term {
    fn new(raw: &str, postcode: bool) -> Term {
        Term {
            pattern: if postcode {
                index::postcode(raw)
            } else {
                fold(raw)
            },
        }
    }

    pub fn has_wildcard(&self) -> bool {
        self.pattern.contains('*')
    }

    /// The part before the first wildcard.
    pub fn prefix(&self) -> &str {
        self.pattern.split('*').next().unwrap_or_default()
    }

    /// Whether an (already normalised) value matches: equality, or glob with `*`.
    pub fn matches(&self, value: &str) -> bool {
        if !self.has_wildcard() {
            return self.pattern == value;
        }
        glob(&self.pattern, value)
    }

    /// 1 for an exact match, [`WILDCARD`] for a wildcard match.
    fn score(&self, value: &str) -> Option<f64> {
        self.matches(value)
            .then_some(if self.has_wildcard() { WILDCARD } else { 1.0 })
    }
}

fn glob(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !value.starts_with(first) || value.len() < first.len() + last.len() || !value.ends_with(last)
    {
        return false;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// An inclusive range of `yyyymmdd` dates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateRange {
    pub lo: u32,
    pub hi: u32,
}

impl DateRange {
    const ALL: DateRange = DateRange {
        lo: 0,
        hi: 99_999_999,
    };

    fn contains(&self, value: Option<&str>) -> bool {
        value
            .and_then(date_key)
            .is_some_and(|d| self.lo <= d && d <= self.hi)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SearchQuery {
    pub family: Option<Term>,
    pub given: Vec<Term>,
    pub gender: Option<String>,
    pub birth: DateRange,
    pub death: Option<DateRange>,
    pub postcode: Option<Term>,
    pub gp: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub fuzzy: bool,
    pub exact_only: bool,
    pub history: bool,
    pub max_results: usize,
}

fn invalid_search(detail: &str) -> PdsError {
    PdsError::new(
        ErrorCode::InvalidSearchData,
        format!("Invalid search data provided - '{detail}'"),
    )
}

const MINIMUM: &str =
    "No searches were performed as the search criteria did not meet the minimum requirements";
const FUZZY_CRITERIA: &str =
    "A fuzzy search was requested however the data given did not meet the fuzzy search criteria";

fn parse_bool(v: &str, field: &str) -> Result<bool, PdsError> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(PdsError::invalid_value(v, field)),
    }
}

/// `[eq|ge|le]yyyy-mm-dd` → the range it allows.
fn parse_date_param(v: &str, field: &str) -> Result<DateRange, PdsError> {
    let (prefix, date) = if v.len() > 2 && v.is_char_boundary(2) {
        v.split_at(2)
    } else {
        ("", v)
    };
    let (prefix, date) = match prefix {
        "eq" | "ge" | "le" => (prefix, date),
        _ => ("eq", v),
    };
    let well_formed = date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-';
    let d = well_formed
        .then(|| date_key(date))
        .flatten()
        .ok_or_else(|| PdsError::invalid_value(v, field))?;
    Ok(match prefix {
        "ge" => DateRange {
            lo: d,
            hi: DateRange::ALL.hi,
        },
        "le" => DateRange {
            lo: DateRange::ALL.lo,
            hi: d,
        },
        _ => DateRange { lo: d, hi: d },
    })
}

impl SearchQuery {
    /// Validates query parameters in PDS's order: none → UNSUPPORTED_SERVICE; unknown →
    /// ADDITIONAL_PROPERTIES; values (dates, gender, flags…) → INVALID_VALUE; birthdate missing →
    /// MISSING_VALUE; minimum / fuzzy criteria → INVALID_SEARCH_DATA.
    pub fn parse(pairs: &[(String, String)], role: Role) -> Result<SearchQuery, PdsError> {
        // `&=` (empty pairs) and empty values are ignored
        let pairs = super::query::given(pairs);
        if pairs.is_empty() {
            return Err(PdsError::new(
                ErrorCode::UnsupportedService,
                "Invalid request with error - a search needs query parameters: at least family and birthdate (or a fuzzy search's combination)",
            ));
        }
        super::query::refuse_unknown(&pairs, &PARAMETERS)?;
        let all = |name: &str| {
            pairs
                .iter()
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| *v)
                .collect::<Vec<&str>>()
        };
        let single = |name: &str| -> Result<Option<&str>, PdsError> {
            let values = all(name);
            match values.len() {
                0 => Ok(None),
                1 => Ok(Some(values[0])),
                _ => Err(PdsError::new(
                    ErrorCode::TooManyValues,
                    format!(
                        "Too many values submitted - [{}] in field '{name}'",
                        values
                            .iter()
                            .map(|v| format!("'{}'", clip(v)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
            }
        };
        let postalcode = single("address-postalcode")?;
        let old_postcode = single("address-postcode")?;
        if postalcode.is_some() && old_postcode.is_some() {
            return Err(invalid_search("address-postalcode and address-postcode cannot both be supplied; use address-postalcode"));
        }
        // values
        let mut birth = DateRange::ALL;
        let births = all("birthdate");
        if births.len() > 2 {
            return Err(PdsError::new(
                ErrorCode::TooManyValues,
                "Too many values submitted - at most 2 in field 'birthdate'",
            ));
        }
        for b in &births {
            let r = parse_date_param(b, "birthdate")?;
            birth = DateRange {
                lo: birth.lo.max(r.lo),
                hi: birth.hi.min(r.hi),
            };
        }
        let death = single("death-date")?
            .map(|d| parse_date_param(d, "death-date"))
            .transpose()?;
        let gender = single("gender")?.map(str::to_string);
        if let Some(g) = &gender {
            if !["male", "female", "other", "unknown"].contains(&g.as_str()) {
                return Err(PdsError::invalid_value(g, "gender"));
            }
        }
        let fuzzy = single("_fuzzy-match")?
            .map(|v| parse_bool(v, "_fuzzy-match"))
            .transpose()?
            .unwrap_or(false);
        let exact_only = single("_exact-match")?
            .map(|v| parse_bool(v, "_exact-match"))
            .transpose()?
            .unwrap_or(false);
        let history = single("_history")?
            .map(|v| parse_bool(v, "_history"))
            .transpose()?
            .unwrap_or(false);
        let max_given = single("_max-results")?;
        let max_results = match max_given {
            None => None,
            Some(v) => Some(
                v.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=50).contains(n))
                    .ok_or_else(|| PdsError::invalid_value(v, "_max-results"))?,
            ),
        };
        let family = single("family")?;
        let givens = all("given");
        if givens.len() > 5 {
            return Err(PdsError::new(
                ErrorCode::TooManyValues,
                "Too many values submitted - at most 5 in field 'given'",
            ));
        }
        for (field, v) in family
            .iter()
            .map(|f| ("family", *f))
            .chain(givens.iter().map(|g| ("given", *g)))
        {
            if v.chars().count() > 35 {
                return Err(PdsError::invalid_value(v, field));
            }
        }
        let email = single("email")?;
        let phone = single("phone")?;
        for (field, v) in [("email", email), ("phone", phone)] {
            if let Some(v) = v.filter(|v| v.contains('*')) {
                return Err(PdsError::invalid_value(v, field));
            }
        }
        if role == Role::ApplicationRestricted && max_results.is_some_and(|n| n != 1) {
            return Err(PdsError::new(
                ErrorCode::SearchLimitForRole,
                "Your app has insufficient permissions to perform this search. Please contact support.",
            ));
        }
        // requirements
        if births.is_empty() {
            return Err(PdsError::new(
                ErrorCode::MissingValue,
                "Missing value - 'birthdate' (a search needs a birth date, birthdate=yyyy-mm-dd, or a range with ge and le)",
            ));
        }
        let family = family.map(|f| Term::new(f, false));
        let given: Vec<Term> = givens.iter().map(|g| Term::new(g, false)).collect();
        let postcode = postalcode.or(old_postcode).map(|p| Term::new(p, true));
        let terms: Vec<&Term> = family
            .iter()
            .chain(given.iter())
            .chain(postcode.iter())
            .collect();
        if fuzzy {
            let combo = (family.is_some() && !given.is_empty())
                || (family.is_some() && gender.is_some() && postcode.is_some())
                || (!given.is_empty() && gender.is_some() && postcode.is_some());
            if !combo || terms.iter().any(|t| t.has_wildcard()) {
                return Err(invalid_search(FUZZY_CRITERIA));
            }
        } else {
            if family.is_none() {
                return Err(invalid_search(MINIMUM));
            }
            if terms
                .iter()
                .any(|t| t.has_wildcard() && t.prefix().chars().count() < 2)
            {
                return Err(invalid_search(MINIMUM));
            }
        }
        let default_max = if role == Role::ApplicationRestricted {
            1
        } else {
            DEFAULT_MAX_RESULTS
        };
        Ok(SearchQuery {
            family,
            given,
            gender,
            birth,
            death,
            postcode,
            gp: single("general-practitioner")?.map(str::to_uppercase),
            email: email.map(index::email),
            phone: phone.map(index::phone),
            fuzzy,
            exact_only,
            history: history || fuzzy,
            max_results: max_results.unwrap_or(default_max),
        })
    }

    /// The record elements this query reads (see [`PARAMETER_ELEMENTS`]).
    pub fn elements(&self) -> Vec<Element<'static>> {
        let used = [
            ("family", self.family.is_some()),
            ("given", !self.given.is_empty()),
            ("gender", self.gender.is_some()),
            ("birthdate", true),
            ("death-date", self.death.is_some()),
            ("address-postalcode", self.postcode.is_some()),
            ("general-practitioner", self.gp.is_some()),
            ("email", self.email.is_some()),
            ("phone", self.phone.is_some()),
        ];
        used.iter()
            .filter(|(_, on)| *on)
            .filter_map(|(p, _)| {
                PARAMETER_ELEMENTS
                    .iter()
                    .find(|(q, _)| q == p)
                    .map(|(_, e)| *e)
            })
            .collect()
    }

    /// A restricted record is left out of this search — before counting and scoring — for a
    /// role that may not see every element the query reads: it must behave as if the hidden
    /// elements did not exist, and a match (or a count, or a score) on one would reveal it.
    /// PDS does this for postcode and GP searches (§5); the table makes it hold for phone,
    /// e-mail and any element the restricted view hides.
    pub fn excludes_restricted_for(&self, role: Role) -> bool {
        self.elements()
            .into_iter()
            .any(|e| !view::visible(e, role, true))
    }

    /// The index lookups whose union holds every possible match.
    pub fn lookups(&self) -> Vec<Lookup> {
        let birth = (self.birth.lo, self.birth.hi);
        if !self.fuzzy {
            if let Some(p) = &self.phone {
                return vec![Lookup::Phone(p.clone())];
            }
            if let Some(e) = &self.email {
                return vec![Lookup::Email(e.clone())];
            }
            if let Some(f) = &self.family {
                return vec![Lookup::Family {
                    name: f.prefix().to_string(),
                    prefix: f.has_wildcard(),
                    birth,
                }];
            }
            return Vec::new();
        }
        let mut out = Vec::new();
        // family and first given name, each also in the other's place (transposed), by
        // spelling, by sound and by first given name: a typo in one is found through the other
        let mut names: Vec<&Term> = self.family.iter().collect();
        names.extend(self.given.first());
        for n in names {
            out.push(Lookup::Family {
                name: n.pattern.clone(),
                prefix: false,
                birth,
            });
            out.extend(
                index::phonetic(&n.pattern)
                    .into_iter()
                    .map(|code| Lookup::Phonetic { code, birth }),
            );
            if let Some(first) = index::first_word(&n.pattern) {
                out.push(Lookup::Given { name: first, birth });
            }
        }
        if self.family.is_none() {
            if let Some(p) = &self.postcode {
                out.push(Lookup::Postcode {
                    code: p.pattern.clone(),
                    prefix: false,
                });
            }
        }
        out
    }

    /// A second index lookup every match is also found by, when the query has one that is
    /// usually far narrower than [`SearchQuery::lookups`]: the exact postcode of a search that
    /// is not fuzzy (such a search matches only records with that postcode in a version it
    /// reads, and every postcode of every version is indexed). About fifteen people share a
    /// postcode, where a common family name over a year of births is a hundred candidates; the
    /// search reads only the records both lookups find. Fuzzy searches score a postcode rather
    /// than require it, so they have none.
    pub fn narrowing(&self) -> Option<Lookup> {
        if self.fuzzy || self.phone.is_some() || self.email.is_some() {
            return None; // phone and e-mail are the first lookup already
        }
        let code = self.postcode.as_ref().filter(|p| !p.has_wildcard())?;
        Some(Lookup::Postcode {
            code: code.pattern.clone(),
            prefix: false,
        })
    }

    /// The score of a record (its current version and, for `_history`/fuzzy, its past
    /// versions), or `None` when it does not match.
    pub fn score(&self, current: &Map<String, Value>, past: &[Map<String, Value>]) -> Option<f64> {
        if !self
            .birth
            .contains(current.get("birthDate").and_then(Value::as_str))
        {
            return None;
        }
        let versions: Vec<(&Map<String, Value>, f64)> = std::iter::once((current, 1.0))
            .chain(past.iter().filter(|_| self.history).map(|p| (p, HISTORIC)))
            .collect();
        let best = |f: &dyn Fn(&Map<String, Value>) -> Option<f64>| {
            versions
                .iter()
                .filter_map(|(v, weight)| f(v).map(|s| s * weight))
                .fold(None, |a: Option<f64>, s| Some(a.map_or(s, |a| a.max(s))))
        };
        let mut scores: Vec<f64> = Vec::new();
        let names = best(&|v| self.part(Part::Names, v));
        if self.family.is_some() || !self.given.is_empty() {
            let n = names.filter(|s| *s > 0.0)?;
            // family and given count as one field each
            let fields = usize::from(self.family.is_some()) + usize::from(!self.given.is_empty());
            scores.extend(std::iter::repeat_n(n, fields));
        }
        scores.push(1.0); // birth date, checked above
        let exact = !self.fuzzy;
        let field = |s: Option<f64>, scores: &mut Vec<f64>| -> Option<()> {
            match s {
                Some(s) => scores.push(s),
                None if exact => return None,
                None => scores.push(0.0),
            }
            Some(())
        };
        if let Some(g) = &self.gender {
            field(
                (current.get("gender").and_then(Value::as_str) == Some(g.as_str())).then_some(1.0),
                &mut scores,
            )?;
        }
        if self.postcode.is_some() {
            field(best(&|v| self.part(Part::Postcode, v)), &mut scores)?;
        }
        if let Some(d) = &self.death {
            field(
                d.contains(current.get("deceasedDateTime").and_then(Value::as_str))
                    .then_some(1.0),
                &mut scores,
            )?;
        }
        if self.gp.is_some() {
            field(best(&|v| self.part(Part::Gp, v)), &mut scores)?;
        }
        for (wanted, part) in [(&self.phone, Part::Phone), (&self.email, Part::Email)] {
            if wanted.is_some() {
                // PDS: "If you use phone number and/or email address, only exact matches will
                // be returned" — a filter in every mode, fuzzy included
                scores.push(best(&|v| self.part(part, v))?);
            }
        }
        let total = scores.iter().sum::<f64>() / scores.len() as f64;
        let total = (total * 10_000.0).round() / 10_000.0;
        if self.fuzzy && total < FUZZY_THRESHOLD {
            return None;
        }
        if self.exact_only && total < 1.0 {
            return None;
        }
        Some(total)
    }

    /// The parts of this query a past version can score on (each scored on every version, the
    /// best counting): the others (birth date, gender, death) are the current record's.
    fn versioned_parts(&self) -> impl Iterator<Item = Part> + '_ {
        [
            (self.family.is_some() || !self.given.is_empty(), Part::Names),
            (self.postcode.is_some(), Part::Postcode),
            (self.gp.is_some(), Part::Gp),
            (self.phone.is_some(), Part::Phone),
            (self.email.is_some(), Part::Email),
        ]
        .into_iter()
        .filter_map(|(asked, part)| asked.then_some(part))
    }

    /// Whether the past versions can change the score of a record whose current version is
    /// `current`: not when every part the query scores on past versions already scores
    /// [`HISTORIC`] or more on the current one, since a past version's part scores at most
    /// `HISTORIC` (every part is at most 1, times the weight). The search then need not read
    /// the history — the answer is the same, and a record with thousands of versions costs
    /// what one with a single version does.
    pub fn history_can_change(&self, current: &Map<String, Value>) -> bool {
        self.history
            && self
                .versioned_parts()
                .any(|part| self.part(part, current).is_none_or(|s| s < HISTORIC))
    }

    /// One part's score on one version (at most 1), `None` when the version has nothing that
    /// matches it.
    fn part(&self, part: Part, v: &Map<String, Value>) -> Option<f64> {
        match part {
            Part::Names if self.fuzzy => self.fuzzy_names(v),
            Part::Names => self.exact_names(v),
            Part::Postcode => {
                let pc = self.postcode.as_ref()?;
                list(v, "address")
                    .iter()
                    .filter_map(|a| a.get("postalCode").and_then(Value::as_str))
                    .filter_map(|p| {
                        let p = index::postcode(p);
                        pc.score(&p).or_else(|| {
                            (self.fuzzy && outward(&p) == outward(&pc.pattern)).then_some(0.6)
                        })
                    })
                    .reduce(f64::max)
            }
            Part::Gp => {
                let gp = self.gp.as_ref()?;
                list(v, "generalPractitioner")
                    .iter()
                    .any(|g| {
                        g.pointer("/identifier/value")
                            .and_then(Value::as_str)
                            .is_some_and(|c| c.eq_ignore_ascii_case(gp))
                    })
                    .then_some(1.0)
            }
            Part::Phone => telecom(v, "phone", self.phone.as_ref()?, index::phone),
            Part::Email => telecom(v, "email", self.email.as_ref()?, index::email),
        }
    }

    /// The names of a version a search looks at, with their weight: current names (usual,
    /// nickname, temp) fully; past names (old, maiden) only with `_history`, as historic.
    fn names<'a>(&self, v: &'a Map<String, Value>) -> impl Iterator<Item = (&'a Value, f64)> + 'a {
        let history = self.history;
        list(v, "name")
            .iter()
            .filter_map(move |n| match n.get("use").and_then(Value::as_str) {
                Some("old" | "maiden") => history.then_some((n, HISTORIC)),
                _ => Some((n, 1.0)),
            })
    }

    /// Exact mode: the best name of the version where family and given all match.
    fn exact_names(&self, v: &Map<String, Value>) -> Option<f64> {
        self.names(v)
            .filter_map(|(n, weight)| {
                let mut s: Vec<f64> = Vec::new();
                if let Some(f) = &self.family {
                    s.push(f.score(&fold(n.get("family").and_then(Value::as_str)?))?);
                }
                let record_given: Vec<String> = n
                    .get("given")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(fold)
                    .collect();
                for (i, g) in self.given.iter().enumerate() {
                    s.push(g.score(record_given.get(i)?)?);
                }
                Some(s.iter().copied().fold(1.0, f64::min) * weight)
            })
            .reduce(f64::max)
    }

    /// Fuzzy mode: similarity of family and first given name, also transposed.
    fn fuzzy_names(&self, v: &Map<String, Value>) -> Option<f64> {
        let qf = self.family.as_ref().map(|t| t.pattern.as_str());
        let qg = self.given.first().map(|t| t.pattern.as_str());
        self.names(v)
            .map(|(n, weight)| {
                let rf = fold(n.get("family").and_then(Value::as_str).unwrap_or_default());
                let rg = n
                    .get("given")
                    .and_then(|g| g.get(0))
                    .and_then(Value::as_str)
                    .map(fold)
                    .unwrap_or_default();
                let pair = |f: &str, g: &str| -> f64 {
                    let mut parts = Vec::new();
                    if let Some(q) = qf {
                        parts.push(similarity(q, f));
                    }
                    if let Some(q) = qg {
                        parts.push(similarity(q, g));
                    }
                    if parts.contains(&0.0) {
                        0.0
                    } else {
                        parts.iter().sum::<f64>() / parts.len() as f64
                    }
                };
                let straight = pair(&rf, &rg);
                let transposed = if qf.is_some() && qg.is_some() {
                    pair(&rg, &rf) * TRANSPOSED
                } else {
                    0.0
                };
                straight.max(transposed) * weight
            })
            .reduce(f64::max)
    }
}

/// 1 when a telecom of `system` (a phone also as `other`) holds `wanted` once normalised by
/// `norm`, else `None`.
fn telecom(
    v: &Map<String, Value>,
    system: &str,
    wanted: &str,
    norm: fn(&str) -> String,
) -> Option<f64> {
    list(v, "telecom")
        .iter()
        .any(|t| {
            let sys = t.get("system").and_then(Value::as_str);
            (sys == Some(system) || (system == "phone" && sys == Some("other")))
                && t.get("value")
                    .and_then(Value::as_str)
                    .is_some_and(|x| norm(x) == wanted)
        })
        .then_some(1.0)
}

/// How alike two folded names are (fuzzy mode).
pub fn similarity(query: &str, value: &str) -> f64 {
    if query.is_empty() || value.is_empty() {
        return 0.0;
    }
    if query == value {
        return 1.0;
    }
    let d = strsim::damerau_levenshtein(query, value);
    let edit = match d {
        1 => 0.85,
        2 if query.chars().count() >= 5 => 0.7,
        _ => 0.0,
    };
    let (a, b) = (index::phonetic(query), index::phonetic(value));
    let sound = if a.iter().any(|c| b.contains(c)) {
        0.75
    } else {
        0.0
    };
    f64::max(edit, sound)
}

/// The outward code of a normalised postcode (all but the last three characters).
fn outward(p: &str) -> &str {
    // by characters, not bytes: a searched postcode may hold any text
    match p.char_indices().rev().nth(2) {
        Some((i, _)) if i > 0 => &p[..i],
        _ => p,
    }
}

/// What a search result shows of a record (PDS search subset): usual, nickname and temporary
/// names; the home address; only the death-notification extension; no managing organisation.
pub fn result_view(doc: &Map<String, Value>) -> Map<String, Value> {
    let mut out = doc.clone();
    out.remove("managingOrganization");
    let keep = |field: &str, f: &dyn Fn(&Value) -> bool, out: &mut Map<String, Value>| {
        if let Some(Value::Array(items)) = out.get_mut(field) {
            items.retain(|i| f(i));
            if items.is_empty() {
                out.remove(field);
            }
        }
    };
    keep(
        "name",
        &|n| {
            matches!(
                n.get("use").and_then(Value::as_str),
                Some("usual" | "nickname" | "temp")
            )
        },
        &mut out,
    );
    keep(
        "address",
        &|a| a.get("use").and_then(Value::as_str) == Some("home"),
        &mut out,
    );
    keep(
        "extension",
        &|e| e.get("url").and_then(Value::as_str) == Some(DEATH_NOTIFICATION_URL),
        &mut out,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> Result<SearchQuery, PdsError> {
        q_as(s, Role::HealthcareWorker)
    }

    fn q_as(s: &str, role: Role) -> Result<SearchQuery, PdsError> {
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(s.as_bytes()).into_owned().collect();
        SearchQuery::parse(&pairs, role)
    }

    fn code(s: &str) -> (ErrorCode, Option<String>) {
        let e = q(s).unwrap_err();
        (e.code, e.diagnostics)
    }

    #[test]
    fn validation_order_and_codes() {
        assert_eq!(code("").0, ErrorCode::UnsupportedService);
        assert_eq!(code("&=").0, ErrorCode::UnsupportedService);
        assert_eq!(code("year=2020&family=Smith").1.unwrap(), "Invalid request with error - Additional properties are not allowed ('year' was unexpected)");
        assert_eq!(code("model=a&year=2").1.unwrap(), "Invalid request with error - Additional properties are not allowed ('model', 'year' were unexpected)");
        assert_eq!(
            code("family=Smith&birthdate=20101022").1.unwrap(),
            "Invalid value - '20101022' in field 'birthdate'"
        );
        assert_eq!(
            code("family=Smith&birthdate=eq2010-02-30").0,
            ErrorCode::InvalidValue
        );
        assert_eq!(
            code("family=Smith&birthdate=2010-10-22&death-date=x")
                .1
                .unwrap(),
            "Invalid value - 'x' in field 'death-date'"
        );
        assert_eq!(
            code("family=Smith&gender=mal&birthdate=2010-10-22")
                .1
                .unwrap(),
            "Invalid value - 'mal' in field 'gender'"
        );
        assert_eq!(
            code("gender=female").1.unwrap(),
            "Missing value - 'birthdate' (a search needs a birth date, birthdate=yyyy-mm-dd, or a range with ge and le)"
        );
        assert_eq!(
            code("email=a@example.com&phone=01632960000").0,
            ErrorCode::MissingValue
        );
        assert_eq!(code("birthdate=2010-10-22").0, ErrorCode::InvalidSearchData);
        assert_eq!(
            code("family=S*&birthdate=2010-10-22").0,
            ErrorCode::InvalidSearchData
        );
        assert_eq!(
            code("family=Smith&birthdate=2010-10-22&_max-results=51").0,
            ErrorCode::InvalidValue
        );
        assert_eq!(
            code("family=Smith&birthdate=2010-10-22&address-postcode=LS1&address-postalcode=LS1").0,
            ErrorCode::InvalidSearchData
        );
        assert_eq!(code("family=Smith&birthdate=2010-10-22&_fuzzy-match=true").1.unwrap(),
            "Invalid search data provided - 'A fuzzy search was requested however the data given did not meet the fuzzy search criteria'");
        assert_eq!(
            code("family=Sm*&given=Jo&birthdate=2010-10-22&_fuzzy-match=true").0,
            ErrorCode::InvalidSearchData
        );
        let e = q_as(
            "family=Smith&birthdate=2010-10-22&_max-results=2",
            Role::ApplicationRestricted,
        )
        .unwrap_err();
        assert_eq!((e.code, e.status()), (ErrorCode::SearchLimitForRole, 403));
        assert_eq!(
            q_as(
                "family=Smith&birthdate=2010-10-22",
                Role::ApplicationRestricted
            )
            .unwrap()
            .max_results,
            1
        );
        assert_eq!(
            q("family=Smith&birthdate=2010-10-22").unwrap().max_results,
            50
        );
    }

    #[test]
    fn birth_ranges() {
        let r = q("family=Smith&birthdate=ge2010-01-01&birthdate=le2010-12-31").unwrap();
        assert_eq!(
            r.birth,
            DateRange {
                lo: 20100101,
                hi: 20101231
            }
        );
        assert_eq!(
            q("family=Smith&birthdate=eq2010-10-22").unwrap().birth,
            DateRange {
                lo: 20101022,
                hi: 20101022
            }
        );
    }

    fn record(v: Value) -> Map<String, Value> {
        let Value::Object(m) = v else { unreachable!() };
        m
    }

    #[test]
    fn exact_wildcard_and_history_scores() {
        let current = record(
            json!({"name": [{"use": "usual", "family": "Smith", "given": ["Jane", "Ann"]}], "gender": "female", "birthDate": "2010-10-22",
            "address": [{"use": "home", "postalCode": "LS1 6AE"}]}),
        );
        let old = record(
            json!({"name": [{"use": "usual", "family": "Jones", "given": ["Jane"]}], "birthDate": "2010-10-22", "address": [{"postalCode": "M1 1AA"}]}),
        );
        let s = |query: &str| {
            q(query)
                .unwrap()
                .score(&current, std::slice::from_ref(&old))
        };
        assert_eq!(s("family=smith&birthdate=2010-10-22"), Some(1.0));
        assert_eq!(s("family=Smith&given=Jane&given=Ann&gender=female&birthdate=2010-10-22&address-postalcode=ls16ae"), Some(1.0));
        assert_eq!(s("family=Sm*&birthdate=2010-10-22"), Some(0.925));
        assert_eq!(
            s("family=Smith&given=Ann&birthdate=2010-10-22"),
            None,
            "given is positional"
        );
        assert_eq!(
            s("family=Jones&birthdate=2010-10-22"),
            None,
            "past names need _history"
        );
        assert_eq!(
            s("family=Jones&birthdate=2010-10-22&_history=true"),
            Some(0.95)
        );
        let with_maiden = record(
            json!({"name": [{"use": "usual", "family": "Smith"}, {"use": "maiden", "family": "Brown"}], "birthDate": "2010-10-22"}),
        );
        let m = |query: &str| q(query).unwrap().score(&with_maiden, &[]);
        assert_eq!(
            m("family=Brown&birthdate=2010-10-22"),
            None,
            "a maiden name is a past name"
        );
        assert_eq!(
            m("family=Brown&birthdate=2010-10-22&_history=true"),
            Some(0.95)
        );
        assert_eq!(s("family=Smith&birthdate=2010-10-23"), None);
        assert_eq!(s("family=Smith&birthdate=2010-10-22&gender=male"), None);
        assert_eq!(s("family=Sm*&birthdate=2010-10-22&_exact-match=true"), None);
    }

    #[test]
    fn an_exact_postcode_narrows_a_search_that_requires_it() {
        let n = |query: &str| q(query).unwrap().narrowing();
        assert_eq!(
            n("family=Smith&birthdate=ge2010-01-01&birthdate=le2010-12-31&address-postalcode=ls1 6ae"),
            Some(Lookup::Postcode {
                code: "LS16AE".into(),
                prefix: false
            })
        );
        assert_eq!(n("family=Smith&birthdate=2010-10-22"), None);
        assert_eq!(
            n("family=Smith&birthdate=2010-10-22&address-postalcode=LS1*"),
            None
        );
        assert_eq!(
            n("family=Smith&given=Jane&birthdate=2010-10-22&address-postalcode=LS16AE&_fuzzy-match=true"),
            None,
            "a fuzzy search scores the postcode, it does not require it"
        );
        // where it applies, the postcode is required: a record without it does not match
        let query = q("family=Smith&birthdate=2010-10-22&address-postalcode=LS16AE").unwrap();
        let elsewhere = record(
            json!({"name": [{"use": "usual", "family": "Smith"}], "birthDate": "2010-10-22", "address": [{"postalCode": "M1 1AA"}]}),
        );
        assert_eq!(query.score(&elsewhere, &[]), None);
    }

    #[test]
    fn history_is_read_only_when_it_can_change_the_score() {
        let current = record(
            json!({"name": [{"use": "usual", "family": "Smith", "given": ["Jane"]}, {"use": "maiden", "family": "Brown"}],
            "gender": "female", "birthDate": "2010-10-22", "address": [{"use": "home", "postalCode": "LS1 6AE"}],
            "telecom": [{"system": "phone", "value": "0113 496 0000"}],
            "generalPractitioner": [{"identifier": {"value": "Y12345"}}]}),
        );
        let pasts = [
            record(
                json!({"name": [{"use": "usual", "family": "Jones", "given": ["Jane"]}], "birthDate": "2010-10-22",
                "address": [{"use": "home", "postalCode": "M1 1AA"}], "telecom": [{"system": "email", "value": "j@example.org"}],
                "generalPractitioner": [{"identifier": {"value": "B82001"}}]}),
            ),
            record(
                json!({"name": [{"use": "usual", "family": "Smyth", "given": ["Janet"]}], "birthDate": "2010-10-22",
                "address": [{"use": "home", "postalCode": "LS1 6AE"}]}),
            ),
        ];
        let queries = [
            "family=Smith&birthdate=2010-10-22&_history=true",
            "family=Jones&birthdate=2010-10-22&_history=true",
            "family=Sm*&birthdate=2010-10-22&_history=true",
            "family=Smith&address-postalcode=M1 1AA&birthdate=2010-10-22&_history=true",
            "family=Smith&general-practitioner=B82001&birthdate=2010-10-22&_history=true",
            "family=Smith&email=j@example.org&birthdate=2010-10-22&_history=true",
            "family=Smith&phone=01134960000&birthdate=2010-10-22&_history=true",
            "family=Smith&given=Jane&birthdate=2010-10-22&_fuzzy-match=true",
            "family=Smiht&given=Jane&birthdate=2010-10-22&_fuzzy-match=true",
            "family=Smyth&given=Janet&birthdate=2010-10-22&_fuzzy-match=true",
            "family=Jones&given=Jane&birthdate=2010-10-22&_fuzzy-match=true",
            "given=Jane&gender=female&address-postalcode=M1 1AB&birthdate=2010-10-22&_fuzzy-match=true",
            "family=Brown&birthdate=2010-10-22&_history=true",
        ];
        let mut read = 0;
        for query in queries {
            let query = q(query).unwrap();
            let with = query.score(&current, &pasts);
            if query.history_can_change(&current) {
                read += 1;
            } else {
                assert_eq!(with, query.score(&current, &[]), "{query:?}");
            }
        }
        // the history is still read where it can matter: past names, postcodes, GPs, e-mails
        assert!(read >= 6, "{read}");
        let jones = q("family=Jones&birthdate=2010-10-22&_history=true").unwrap();
        assert!(jones.history_can_change(&current));
        assert_eq!(jones.score(&current, &pasts), Some(0.95));
        let smith = q("family=Smith&birthdate=2010-10-22&_history=true").unwrap();
        assert!(!smith.history_can_change(&current));
        assert!(!q("family=Smith&birthdate=2010-10-22")
            .unwrap()
            .history_can_change(&current));
    }

    #[test]
    fn fuzzy_scores() {
        let current = record(
            json!({"name": [{"use": "usual", "family": "Smith", "given": ["Jane"]}], "gender": "female", "birthDate": "2010-10-22",
            "address": [{"use": "home", "postalCode": "LS1 6AE"}]}),
        );
        let s = |query: &str| q(query).unwrap().score(&current, &[]);
        assert_eq!(
            s("family=Smith&given=Jane&birthdate=2010-10-22&_fuzzy-match=true"),
            Some(1.0)
        );
        let homophone =
            s("family=Smyth&given=Jane&birthdate=2010-10-22&_fuzzy-match=true").unwrap();
        let transposed =
            s("family=Jane&given=Smith&birthdate=2010-10-22&_fuzzy-match=true").unwrap();
        let typo = s("family=Smiht&given=Jane&birthdate=2010-10-22&_fuzzy-match=true").unwrap();
        assert!(
            homophone < 1.0 && transposed < 1.0 && typo < 1.0,
            "{homophone} {transposed} {typo}"
        );
        assert_eq!(
            s("family=Brown&given=Jane&birthdate=2010-10-22&_fuzzy-match=true"),
            None
        );
        assert!(s("given=Jane&gender=female&address-postalcode=LS1 6AE&birthdate=2010-10-22&_fuzzy-match=true").is_some());
    }

    #[test]
    fn fuzzy_lookups_reach_a_misspelt_family_through_the_given_name() {
        let l = q("_fuzzy-match=true&family=Smiht&given=Mary%20Ann&birthdate=2010-10-22")
            .unwrap()
            .lookups();
        let range = (20101022, 20101022);
        assert!(
            l.contains(&Lookup::Given {
                name: "mary".into(),
                birth: range
            }),
            "{l:?}"
        );
        assert!(l.contains(&Lookup::Family {
            name: "smiht".into(),
            prefix: false,
            birth: range
        }));
    }

    #[test]
    fn outward_codes_by_character() {
        assert_eq!(outward("LS16AE"), "LS1");
        assert_eq!(outward("SW1A1AA"), "SW1A");
        assert_eq!(outward("ĀĀĀĀ"), "Ā");
        assert_eq!(outward("AB"), "AB");
        let current = record(
            json!({"name": [{"use": "usual", "family": "Smith", "given": ["Jane"]}], "gender": "female",
            "birthDate": "2010-10-22", "address": [{"use": "home", "postalCode": "LS1 6AE"}]}),
        );
        let q = q("_fuzzy-match=true&given=Jane&gender=female&birthdate=2010-10-22&address-postalcode=%C4%80%C4%80%C4%80%C4%80").unwrap();
        let _ = q.score(&current, &[]);
    }

    #[test]
    fn globbing() {
        assert!(glob("sm*", "smith"));
        assert!(glob("sm*th", "smith"));
        assert!(!glob("sm*th", "smithy"));
        assert!(glob("o'*n", "o'brien"));
    }

    #[test]
    fn result_subset() {
        let doc = record(
            json!({"name": [{"use": "usual", "family": "A"}, {"use": "maiden", "family": "B"}],
            "address": [{"use": "home"}, {"use": "temp"}], "managingOrganization": {},
            "extension": [{"url": DEATH_NOTIFICATION_URL}, {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"}]}),
        );
        let v = result_view(&doc);
        assert_eq!(v["name"].as_array().unwrap().len(), 1);
        assert_eq!(v["address"].as_array().unwrap().len(), 1);
        assert_eq!(v["extension"].as_array().unwrap().len(), 1);
        assert!(v.get("managingOrganization").is_none());
    }
}
