//! PDS business rules that JSON Schema cannot express, as two tables.
//!
//! * [`RECORD_RULES`] — "record" rules — hold for every stored record, however it arrived
//!   (import or change): structure the service relies on (ids, one usual name, real dates...).
//! * [`CHANGE_RULES`] — "change" rules — judge what a change brings: the record before, the
//!   record after and who asks. Every "a new value must…" rule is one (title casing, suffix
//!   capitals, permitted name characters, e-mail form, …): it checks only the values the change
//!   introduces, never values already stored. PDS holds records that predate its own rules (its
//!   titles are upper case: `"MR"`), and such a record loads, is served as stored, and takes a
//!   change elsewhere in it; a value the change brings in meets today's rules.
//!
//! Each row names the rule, the PDS error code it raises and the check. A check returns the
//! detail of the diagnostics; [`diagnostics`] adds the prefix PDS uses for that code. When a
//! change breaks several rules, a permission rule (403) wins over the others, as in PDS.

use std::collections::HashSet;

use serde_json::{Map, Value};
use time::{Date, Month};

use super::nhs_number::NhsNumber;
use super::outcome::{clip, ErrorCode, PdsError};
use super::patient::{
    self, list, BIRTH_PLACE_URL, COMMUNICATION_URL, CONTACT_PREFERENCE_URL, LIST_FIELDS,
};
use super::role::Role;

type Doc = Map<String, Value>;

/// A rule every stored record obeys.
pub struct RecordRule {
    pub name: &'static str,
    pub code: ErrorCode,
    pub check: fn(&Doc, Date) -> Result<(), String>,
}

/// What a change rule sees.
pub struct Change<'a> {
    pub old: &'a Doc,
    pub new: &'a Doc,
    pub role: Role,
    pub today: Date,
}

/// A rule about what a change may do.
pub struct ChangeRule {
    pub name: &'static str,
    pub code: ErrorCode,
    pub check: fn(&Change) -> Result<(), String>,
}

use ErrorCode::*;

#[rustfmt::skip]
pub const RECORD_RULES: &[RecordRule] = &[
    RecordRule { name: "id is a valid NHS number",                  code: InvalidValue,          check: id_is_nhs_number },
    RecordRule { name: "identifier carries the id",                 code: InvalidValue,          check: identifier_matches_id },
    RecordRule { name: "at most one usual name",                    code: ForbiddenUpdate,       check: one_usual_name },
    RecordRule { name: "at most one nickname",                      code: InvalidUpdate,         check: one_nickname },
    RecordRule { name: "object ids are unique within a list",       code: InvalidUpdate,         check: unique_item_ids },
    RecordRule { name: "dates are real calendar dates",             code: InvalidValue,          check: calendar_dates },
    RecordRule { name: "birthDate is not in the future",            code: InvalidValue,          check: birth_not_future },
    RecordRule { name: "deceasedDateTime is not in the future",     code: InvalidValue,          check: death_not_future },
    RecordRule { name: "death is not before birth",                 code: InvalidUpdate,         check: death_after_birth },
    RecordRule { name: "one extension of each kind",                code: TooManyValues,         check: one_extension_per_url },
    RecordRule { name: "one home, temp and billing address",        code: InvalidUpdate,         check: one_address_per_use },
    RecordRule { name: "periods do not end before they start",      code: InvalidValue,          check: period_order },
    RecordRule { name: "one telecom per system and use",            code: InvalidUpdate,         check: one_telecom_per_system_use },
];

#[rustfmt::skip]
pub const CHANGE_RULES: &[ChangeRule] = &[
    ChangeRule { name: "the usual name cannot be removed",          code: ForbiddenUpdate,  check: keep_usual_name },
    ChangeRule { name: "a name's use cannot change",                code: InvalidUpdate,    check: name_use_fixed },
    ChangeRule { name: "new names use permitted characters",        code: UnsupportedCharacters, check: name_characters },
    ChangeRule { name: "new titles use their exact casing",         code: InvalidValue,     check: title_casing },
    ChangeRule { name: "new suffixes start with a capital letter",  code: InvalidValue,     check: suffix_capital },
    ChangeRule { name: "gender cannot be removed",                  code: ForbiddenUpdate,  check: keep_gender },
    ChangeRule { name: "gender 'other' cannot be set",              code: InvalidValue,     check: no_other_gender },
    ChangeRule { name: "birthDate cannot be removed",               code: ForbiddenUpdate,  check: keep_birth_date },
    ChangeRule { name: "a death cannot be removed",                 code: ForbiddenUpdate,  check: keep_death },
    ChangeRule { name: "a formal death cannot be changed",          code: ForbiddenUpdate,  check: formal_death_fixed },
    ChangeRule { name: "only authorised systems set formal deaths", code: ForbiddenUpdate,  check: formal_death_authorised },
    ChangeRule { name: "death status 'U' cannot be set",            code: UnsupportedValue, check: no_removed_status },
    ChangeRule { name: "death date and notification go together",   code: InvalidUpdate,    check: death_date_with_status },
    ChangeRule { name: "new periods have a start",                  code: MissingValue,     check: changed_period_start },
    ChangeRule { name: "new periods do not start in the future",    code: InvalidValue,     check: changed_period_not_future },
    ChangeRule { name: "new temp and billing addresses have a period", code: MissingValue,  check: temp_billing_period },
    ChangeRule { name: "new temp addresses say what they are",      code: MissingValue,     check: temp_address_text },
    ChangeRule { name: "work addresses can only be removed",        code: InvalidUpdate,    check: no_work_address_change },
    ChangeRule { name: "a telecom keeps its system and use",        code: InvalidUpdate,    check: telecom_kind_fixed },
    ChangeRule { name: "new e-mail addresses are valid",            code: InvalidValue,     check: email_format },
    ChangeRule { name: "a GP registration has no end",              code: InvalidValue,     check: gp_no_end },
    ChangeRule { name: "only the back office changes GP registration", code: ForbiddenUpdate, check: gp_changes },
    ChangeRule { name: "interpreterRequired cannot be removed",     code: InvalidUpdate,    check: keep_interpreter_required },
    ChangeRule { name: "a new communication language is not English", code: InvalidValue,  check: communication_not_english },
    ChangeRule { name: "a new contact time needs a contact method", code: InvalidUpdate,    check: contact_time_needs_method },
    ChangeRule { name: "a new place of birth has a city, district or country", code: MissingValue, check: birth_place_has_value },
];

/// The diagnostics PDS gives for a rule's detail under a code.
pub fn diagnostics(code: ErrorCode, detail: &str) -> String {
    match code {
        InvalidUpdate => format!("Invalid update with error - {detail}"),
        ForbiddenUpdate => format!("Forbidden update with error - {detail}"),
        _ => detail.to_string(),
    }
}

/// Checks every record rule; the first broken one (403 before 400) is the error.
pub fn check_record(doc: &Doc, today: Date) -> Result<(), PdsError> {
    let broken = RECORD_RULES
        .iter()
        .filter_map(|r| (r.check)(doc, today).err().map(|d| (r.code, d)));
    first_by_precedence(broken)
}

/// Checks a change: its rules and the record rules on the result.
pub fn check_change(change: &Change) -> Result<(), PdsError> {
    let broken = CHANGE_RULES
        .iter()
        .filter_map(|r| (r.check)(change).err().map(|d| (r.code, d)))
        .chain(RECORD_RULES.iter().filter_map(|r| {
            (r.check)(change.new, change.today)
                .err()
                .map(|d| (r.code, d))
        }));
    first_by_precedence(broken)
}

fn first_by_precedence(broken: impl Iterator<Item = (ErrorCode, String)>) -> Result<(), PdsError> {
    let mut first: Option<(ErrorCode, String)> = None;
    for (code, detail) in broken {
        if code == ForbiddenUpdate {
            return Err(PdsError::new(code, diagnostics(code, &detail)));
        }
        first.get_or_insert((code, detail));
    }
    match first {
        Some((code, detail)) => Err(PdsError::new(code, diagnostics(code, &detail))),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn invalid_value(value: &str, field: &str) -> String {
    format!("Invalid value - '{}' in field '{field}'", clip(value))
}

fn missing_value(field: &str) -> String {
    format!("Missing value - '{field}'")
}

/// Parses the date part of a FHIR date or dateTime (`yyyy`, `yyyy-mm`, `yyyy-mm-dd`, with an
/// optional `T…` time). Partial dates stand for their first day. `None` if not a real date.
pub fn date_part(s: &str) -> Option<Date> {
    let date = s.split('T').next()?;
    let mut parts = date.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next().map_or(Some(1), |m| m.parse().ok())?;
    let day: u8 = parts.next().map_or(Some(1), |d| d.parse().ok())?;
    if parts.next().is_some() {
        return None;
    }
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

/// The first and last day a FHIR date or dateTime may stand for: a partial date (`yyyy`,
/// `yyyy-mm`) is a span, so that `deceasedDateTime: "2010-05"` is not "before" a birth on
/// 2010-05-10.
pub fn date_span(s: &str) -> Option<(Date, Date)> {
    let first = date_part(s)?;
    let date = s.split('T').next()?;
    let last = match date.split('-').count() {
        1 => Date::from_calendar_date(first.year(), Month::December, 31).ok()?,
        2 => {
            let next = first.month().next();
            let year = first.year() + i32::from(next == Month::January);
            Date::from_calendar_date(year, next, 1)
                .ok()?
                .previous_day()?
        }
        _ => first,
    };
    Some((first, last))
}

/// Where a date sits in a record: a top-level field, or the `start` or `end` of a list item's
/// period (the item's own or its identifier's).
struct DateAt<'a> {
    field: &'static str,
    period: Option<PeriodAt>,
    value: &'a str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct PeriodAt {
    item: usize,
    of_identifier: bool,
    end: bool,
}

impl DateAt<'_> {
    /// Its JSON pointer, for an error (made only then: a record has dozens of dates).
    fn pointer(&self) -> String {
        match self.period {
            None => self.field.to_string(),
            Some(p) => format!(
                "{}/{}/{}period/{}",
                self.field,
                p.item,
                if p.of_identifier { "identifier/" } else { "" },
                if p.end { "end" } else { "start" }
            ),
        }
    }
}

/// Every date and period bound in a record, for the date rules.
fn all_dates(doc: &Doc) -> Vec<DateAt<'_>> {
    let mut out = Vec::new();
    for field in ["birthDate", "deceasedDateTime"] {
        if let Some(value) = doc.get(field).and_then(Value::as_str) {
            out.push(DateAt {
                field,
                period: None,
                value,
            });
        }
    }
    for (field, _) in LIST_FIELDS {
        for (item, entry) in list(doc, field).iter().enumerate() {
            let (period, of_identifier) = match entry.get("period") {
                Some(p) => (Some(p), false),
                None => (
                    entry.get("identifier").and_then(|id| id.get("period")),
                    true,
                ),
            };
            let Some(p) = period else { continue };
            for (k, end) in [("start", false), ("end", true)] {
                if let Some(value) = str_of(p, k) {
                    out.push(DateAt {
                        field,
                        period: Some(PeriodAt {
                            item,
                            of_identifier,
                            end,
                        }),
                        value,
                    });
                }
            }
        }
    }
    out
}

fn names(doc: &Doc) -> impl Iterator<Item = (usize, &Value)> {
    list(doc, "name").iter().enumerate()
}

fn count_use(doc: &Doc, field: &str, use_: &str) -> usize {
    list(doc, field)
        .iter()
        .filter(|n| str_of(n, "use") == Some(use_))
        .count()
}

/// Items of `field` in `new` that are new or differ from the item with the same key in `old`.
fn changed_items<'a>(old: &Doc, new: &'a Doc, field: &str) -> Vec<(usize, &'a Value)> {
    // most changes leave most lists as they were: one comparison instead of one per item
    if old.get(field) == new.get(field) {
        return Vec::new();
    }
    let key = patient::item_key(field).unwrap_or("id");
    list(new, field)
        .iter()
        .enumerate()
        .filter(|(_, item)| {
            let k = item.get(key);
            !list(old, field)
                .iter()
                .any(|o| o.get(key) == k && *o == **item)
        })
        .collect()
}

fn item_by_key<'a>(doc: &'a Doc, field: &str, key_value: &Value) -> Option<&'a Value> {
    let key = patient::item_key(field).unwrap_or("id");
    list(doc, field)
        .iter()
        .find(|i| i.get(key) == Some(key_value))
}

// ---------------------------------------------------------------------------------------------
// Record rules

fn id_is_nhs_number(doc: &Doc, _: Date) -> Result<(), String> {
    let id = doc.get("id").and_then(Value::as_str).unwrap_or_default();
    NhsNumber::parse(id)
        .map(|_| ())
        .map_err(|_| invalid_value(id, "id"))
}

fn identifier_matches_id(doc: &Doc, _: Date) -> Result<(), String> {
    let id = doc.get("id").and_then(Value::as_str);
    match list(doc, "identifier")
        .first()
        .and_then(|i| str_of(i, "value"))
    {
        Some(v) if Some(v) != id => Err(invalid_value(v, "identifier/0/value")),
        _ => Ok(()),
    }
}

fn one_usual_name(doc: &Doc, _: Date) -> Result<(), String> {
    if count_use(doc, "name", "usual") > 1 {
        return Err("multiple usual names cannot be added".into());
    }
    Ok(())
}

fn one_nickname(doc: &Doc, _: Date) -> Result<(), String> {
    if count_use(doc, "name", "nickname") > 1 {
        return Err("only one nickname is permitted".into());
    }
    Ok(())
}

/// A–Z a–z 0–9 space ' - . and the Latin-1 / Latin Extended-A letters PDS allows.
fn allowed_name_char(c: char) -> bool {
    let n = c as u32;
    c.is_ascii_alphanumeric()
        || matches!(c, ' ' | '\'' | '-' | '.')
        || (192..=214).contains(&n)
        || (216..=246).contains(&n)
        || (248..=383).contains(&n)
}

/// The string values at `key` of a list item (a string, or a list of strings) that the item
/// with the same key in `old` did not hold: what a change brings into that part of the item.
fn introduced<'a>(
    old: Option<&Value>,
    item: &'a Value,
    key: &str,
) -> Vec<(Option<usize>, &'a str)> {
    let before: Vec<&Value> = match old.and_then(|o| o.get(key)) {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v) => vec![v],
        None => Vec::new(),
    };
    match item.get(key) {
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .filter(|(_, v)| !before.contains(v))
            .filter_map(|(j, v)| v.as_str().map(|s| (Some(j), s)))
            .collect(),
        Some(v @ Value::String(s)) if !before.contains(&v) => vec![(None, s.as_str())],
        _ => Vec::new(),
    }
}

/// The parts of the names a change brings in: `(field path, value)` for each new family name,
/// given name, prefix and suffix.
fn introduced_name_parts<'a>(c: &Change<'a>, keys: &[&str]) -> Vec<(String, &'a str)> {
    let mut out = Vec::new();
    for (i, n) in names(c.new) {
        let old = n.get("id").and_then(|id| item_by_key(c.old, "name", id));
        for key in keys {
            for (j, v) in introduced(old, n, key) {
                let field = match j {
                    Some(j) => format!("name/{i}/{key}/{j}"),
                    None => format!("name/{i}/{key}"),
                };
                out.push((field, v));
            }
        }
    }
    out
}

fn name_characters(c: &Change) -> Result<(), String> {
    for (field, s) in introduced_name_parts(c, &["family", "given", "prefix", "suffix"]) {
        if !s.chars().all(allowed_name_char) {
            return Err(format!(
                "Unsupported characters - '{}' in field '{field}'",
                clip(s)
            ));
        }
    }
    Ok(())
}

const TITLES: [&str; 8] = ["Mr", "Mrs", "Ms", "Dr", "Rev", "Sir", "Lady", "Lord"];

fn title_casing(c: &Change) -> Result<(), String> {
    for (field, p) in introduced_name_parts(c, &["prefix"]) {
        if TITLES.iter().any(|t| t.eq_ignore_ascii_case(p) && *t != p) {
            return Err(invalid_value(p, &field));
        }
    }
    Ok(())
}

fn suffix_capital(c: &Change) -> Result<(), String> {
    for (field, s) in introduced_name_parts(c, &["suffix"]) {
        if !s.starts_with(|c: char| c.is_ascii_uppercase()) {
            return Err(invalid_value(s, &field));
        }
    }
    Ok(())
}

fn unique_item_ids(doc: &Doc, _: Date) -> Result<(), String> {
    for (field, key) in LIST_FIELDS {
        if key != "id" {
            continue;
        }
        let mut seen = HashSet::new();
        for item in list(doc, field) {
            if let Some(id) = str_of(item, "id") {
                if !seen.insert(id) {
                    return Err(format!(
                        "object id '{}' is used twice in '{field}'",
                        clip(id)
                    ));
                }
            }
        }
    }
    Ok(())
}

fn calendar_dates(doc: &Doc, _: Date) -> Result<(), String> {
    for d in all_dates(doc) {
        if date_part(d.value).is_none() {
            return Err(invalid_value(d.value, &d.pointer()));
        }
    }
    Ok(())
}

fn birth_not_future(doc: &Doc, today: Date) -> Result<(), String> {
    match doc.get("birthDate").and_then(Value::as_str) {
        Some(b) if date_part(b).is_some_and(|d| d > today) => Err(invalid_value(b, "birthDate")),
        _ => Ok(()),
    }
}

fn death_not_future(doc: &Doc, today: Date) -> Result<(), String> {
    match doc.get("deceasedDateTime").and_then(Value::as_str) {
        Some(d) if date_part(d).is_some_and(|d| d > today) => {
            Err(invalid_value(d, "deceasedDateTime"))
        }
        _ => Ok(()),
    }
}

fn death_after_birth(doc: &Doc, _: Date) -> Result<(), String> {
    let birth = doc
        .get("birthDate")
        .and_then(Value::as_str)
        .and_then(date_span);
    let death = doc
        .get("deceasedDateTime")
        .and_then(Value::as_str)
        .and_then(date_span);
    match (birth, death) {
        // before, whichever days partial dates stand for
        (Some((born, _)), Some((_, died))) if died < born => {
            Err("deceasedDateTime cannot be before birthDate".into())
        }
        _ => Ok(()),
    }
}

/// A change may not leave a date of death without a notification status, or a status without
/// a date — unless the record was already so before it (a record from elsewhere).
fn death_date_with_status(c: &Change) -> Result<(), String> {
    let state = |d: &Doc| {
        (
            d.contains_key("deceasedDateTime"),
            patient::death_status(d).is_some(),
        )
    };
    let (now, before) = (state(c.new), state(c.old));
    if now == before {
        return Ok(());
    }
    match now {
        (true, false) => Err(
            "deceasedDateTime requires a death notification status extension in the same update"
                .into(),
        ),
        (false, true) => {
            Err("a death notification status requires deceasedDateTime in the same update".into())
        }
        _ => Ok(()),
    }
}

fn one_extension_per_url(doc: &Doc, _: Date) -> Result<(), String> {
    let mut seen = HashSet::new();
    for (i, e) in list(doc, "extension").iter().enumerate() {
        if let Some(url) = str_of(e, "url") {
            if !seen.insert(url) {
                return Err(format!("Too many values submitted - a second '{url}' extension in field 'extension/{i}'"));
            }
        }
    }
    Ok(())
}

fn one_address_per_use(doc: &Doc, _: Date) -> Result<(), String> {
    for use_ in ["home", "temp", "billing"] {
        if count_use(doc, "address", use_) > 1 {
            return Err(format!("only one '{use_}' address is permitted"));
        }
    }
    Ok(())
}

/// Address items a change brings in or whose `use`, `period` or `text` it changes.
fn changed_addresses<'a>(c: &Change<'a>) -> Vec<(usize, &'a Value)> {
    changed_items(c.old, c.new, "address")
        .into_iter()
        .filter(|(_, a)| {
            let old = a.get("id").and_then(|id| item_by_key(c.old, "address", id));
            old.is_none_or(|o| {
                ["use", "period", "text"]
                    .iter()
                    .any(|k| o.get(k) != a.get(k))
            })
        })
        .collect()
}

fn temp_billing_period(c: &Change) -> Result<(), String> {
    for (i, a) in changed_addresses(c) {
        if matches!(str_of(a, "use"), Some("temp" | "billing")) {
            for k in ["start", "end"] {
                if a.get("period").and_then(|p| p.get(k)).is_none() {
                    return Err(missing_value(&format!("address/{i}/period/{k}")));
                }
            }
        }
    }
    Ok(())
}

fn temp_address_text(c: &Change) -> Result<(), String> {
    for (i, a) in changed_addresses(c) {
        if str_of(a, "use") == Some("temp") && a.get("text").is_none() {
            return Err(missing_value(&format!("address/{i}/text")));
        }
    }
    Ok(())
}

fn period_order(doc: &Doc, _: Date) -> Result<(), String> {
    let dates = all_dates(doc);
    for end in &dates {
        let Some(p) = end.period.filter(|p| p.end) else {
            continue;
        };
        let start = PeriodAt { end: false, ..p };
        let start = dates
            .iter()
            .find(|d| d.field == end.field && d.period == Some(start))
            .and_then(|d| date_span(d.value));
        if let (Some((s, _)), Some((_, e))) = (start, date_span(end.value)) {
            if e < s {
                return Err(invalid_value(end.value, &end.pointer()));
            }
        }
    }
    Ok(())
}

fn one_telecom_per_system_use(doc: &Doc, _: Date) -> Result<(), String> {
    let mut seen = HashSet::new();
    for t in list(doc, "telecom") {
        let key = (str_of(t, "system"), str_of(t, "use"));
        if !seen.insert(key) {
            return Err(format!(
                "only one telecom per system and use is permitted (system '{}', use '{}')",
                key.0.unwrap_or(""),
                key.1.unwrap_or("none")
            ));
        }
    }
    Ok(())
}

/// 7–89 characters, one `@`, something before it and a dotted domain after it.
pub(crate) fn valid_email(s: &str) -> bool {
    let len = s.chars().count();
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    (7..=89).contains(&len)
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// E-mail addresses a change brings in (a telecom, or an emergency contact's telecom, whose
/// value is new) must be valid; stored ones are not judged again.
fn email_format(c: &Change) -> Result<(), String> {
    let emails = |d: &'_ Doc| -> Vec<(String, String)> {
        let telecoms = list(d, "telecom")
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("telecom/{i}/value"), t));
        let contacts = list(d, "contact").iter().enumerate().flat_map(|(i, c)| {
            c.get("telecom")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
                .map(move |(j, t)| (format!("contact/{i}/telecom/{j}/value"), t))
        });
        telecoms
            .chain(contacts)
            .filter(|(_, t)| str_of(t, "system") == Some("email"))
            .map(|(f, t)| (f, str_of(t, "value").unwrap_or_default().to_string()))
            .collect()
    };
    let before: HashSet<String> = emails(c.old).into_iter().map(|(_, v)| v).collect();
    for (field, v) in emails(c.new) {
        if !before.contains(&v) && !valid_email(&v) {
            return Err(invalid_value(&v, &field));
        }
    }
    Ok(())
}

/// The extension with `url` when the change brings it in or changes it.
fn changed_extension<'a>(c: &Change<'a>, url: &str) -> Option<&'a Value> {
    let new = patient::extension(c.new, url)?;
    (patient::extension(c.old, url) != Some(new)).then_some(new)
}

fn communication_not_english(c: &Change) -> Result<(), String> {
    let Some(ext) = changed_extension(c, COMMUNICATION_URL) else {
        return Ok(());
    };
    fn language(e: Option<&Value>) -> Option<&str> {
        e.and_then(|e| patient::sub_extension(e, "language"))
            .and_then(|l| l.pointer("/valueCodeableConcept/coding/0/code"))
            .and_then(Value::as_str)
    }
    match language(Some(ext)) {
        Some(code)
            if code.eq_ignore_ascii_case("en")
                && language(patient::extension(c.old, COMMUNICATION_URL)) != Some(code) =>
        {
            Err(invalid_value(code, "extension/communication/language"))
        }
        _ => Ok(()),
    }
}

fn contact_time_needs_method(c: &Change) -> Result<(), String> {
    let Some(ext) = changed_extension(c, CONTACT_PREFERENCE_URL) else {
        return Ok(());
    };
    if patient::sub_extension(ext, "PreferredContactTimes").is_some()
        && patient::sub_extension(ext, "PreferredContactMethod").is_none()
    {
        return Err("a preferred contact time requires a preferred contact method".into());
    }
    Ok(())
}

fn birth_place_has_value(c: &Change) -> Result<(), String> {
    let Some(ext) = changed_extension(c, BIRTH_PLACE_URL) else {
        return Ok(());
    };
    let addr = ext.get("valueAddress");
    if ["city", "district", "country"]
        .iter()
        .any(|k| addr.and_then(|a| a.get(*k)).is_some())
    {
        Ok(())
    } else {
        Err(missing_value("extension/birthPlace/valueAddress/city"))
    }
}

// ---------------------------------------------------------------------------------------------
// Change rules

fn keep_usual_name(c: &Change) -> Result<(), String> {
    if count_use(c.old, "name", "usual") > 0 && count_use(c.new, "name", "usual") == 0 {
        return Err("not permitted to remove usual name".into());
    }
    Ok(())
}

fn name_use_fixed(c: &Change) -> Result<(), String> {
    for n in list(c.new, "name") {
        let Some(id) = n.get("id") else { continue };
        if let Some(old) = item_by_key(c.old, "name", id) {
            if old.get("use") != n.get("use") {
                return Err(format!(
                    "the use of name '{}' cannot be changed",
                    id.as_str().unwrap_or_default()
                ));
            }
        }
    }
    Ok(())
}

fn keep_field(c: &Change, field: &str) -> Result<(), String> {
    if c.old.contains_key(field) && !c.new.contains_key(field) {
        return Err(format!("source not permitted to remove '{field}'"));
    }
    Ok(())
}

fn keep_gender(c: &Change) -> Result<(), String> {
    keep_field(c, "gender")
}

fn keep_birth_date(c: &Change) -> Result<(), String> {
    keep_field(c, "birthDate")
}

fn no_other_gender(c: &Change) -> Result<(), String> {
    match c.new.get("gender").and_then(Value::as_str) {
        Some("other") if c.old.get("gender") != c.new.get("gender") => {
            Err(invalid_value("other", "gender"))
        }
        _ => Ok(()),
    }
}

fn keep_death(c: &Change) -> Result<(), String> {
    if c.role.is_back_office() {
        return Ok(());
    }
    keep_field(c, "deceasedDateTime")?;
    if patient::death_status(c.old).is_some() && patient::death_status(c.new).is_none() {
        return Err("source not permitted to remove the death notification status".into());
    }
    Ok(())
}

fn death_extension(doc: &Doc) -> Option<&Value> {
    patient::extension(doc, patient::DEATH_NOTIFICATION_URL)
}

fn formal_death_fixed(c: &Change) -> Result<(), String> {
    if c.role.is_back_office() || patient::death_status(c.old) != Some("2") {
        return Ok(());
    }
    if c.old.get("deceasedDateTime") != c.new.get("deceasedDateTime")
        || death_extension(c.old) != death_extension(c.new)
    {
        return Err("the date of death cannot be changed once a formal death notification has been recorded".into());
    }
    Ok(())
}

fn formal_death_authorised(c: &Change) -> Result<(), String> {
    if c.role.is_back_office() {
        return Ok(());
    }
    if patient::death_status(c.new) == Some("2") && patient::death_status(c.old) != Some("2") {
        return Err("a formal death notification can only be added by authorised systems".into());
    }
    Ok(())
}

fn no_removed_status(c: &Change) -> Result<(), String> {
    if patient::death_status(c.new) == Some("U") && death_extension(c.old) != death_extension(c.new)
    {
        return Err(format!(
            "Unsupported value - 'U' in field 'extension/{}/deathNotificationStatus'",
            patient::DEATH_NOTIFICATION_URL
        ));
    }
    Ok(())
}

/// Lists whose items carry a `period` (GP registrations keep theirs under `identifier`).
const PERIOD_LISTS: [&str; 5] = [
    "name",
    "address",
    "telecom",
    "contact",
    "generalPractitioner",
];

fn item_period<'a>(field: &str, item: &'a Value) -> Option<(String, &'a Value)> {
    if field == "generalPractitioner" {
        item.get("identifier")?
            .get("period")
            .map(|p| ("identifier/period".to_string(), p))
    } else {
        item.get("period").map(|p| ("period".to_string(), p))
    }
}

/// The periods a change brings in: of new items, or periods that differ from the item's old one.
fn changed_periods<'a>(c: &'a Change) -> Vec<(String, &'a Value)> {
    let mut out = Vec::new();
    for field in PERIOD_LISTS {
        for (i, item) in changed_items(c.old, c.new, field) {
            let Some((sub, p)) = item_period(field, item) else {
                continue;
            };
            let old = item
                .get("id")
                .and_then(|id| item_by_key(c.old, field, id))
                .and_then(|o| item_period(field, o))
                .map(|(_, p)| p);
            if old != Some(p) {
                out.push((format!("{field}/{i}/{sub}"), p));
            }
        }
    }
    out
}

fn changed_period_start(c: &Change) -> Result<(), String> {
    for (field, p) in changed_periods(c) {
        if p.get("start").is_none() {
            return Err(missing_value(&format!("{field}/start")));
        }
    }
    Ok(())
}

fn changed_period_not_future(c: &Change) -> Result<(), String> {
    for (field, p) in changed_periods(c) {
        if let Some(s) = str_of(p, "start") {
            if date_part(s).is_some_and(|d| d > c.today) {
                return Err(invalid_value(s, &format!("{field}/start")));
            }
        }
    }
    Ok(())
}

fn no_work_address_change(c: &Change) -> Result<(), String> {
    for (i, a) in changed_items(c.old, c.new, "address") {
        if str_of(a, "use") == Some("work") {
            return Err(format!("a 'work' address cannot be added or replaced (address/{i}); it can only be removed"));
        }
    }
    Ok(())
}

fn telecom_kind_fixed(c: &Change) -> Result<(), String> {
    for t in list(c.new, "telecom") {
        let Some(id) = t.get("id") else { continue };
        if let Some(old) = item_by_key(c.old, "telecom", id) {
            if old.get("system") != t.get("system") || old.get("use") != t.get("use") {
                return Err(format!(
                    "telecom '{}' must keep its system and use; remove it and add a new one instead",
                    id.as_str().unwrap_or_default()
                ));
            }
        }
    }
    Ok(())
}

fn gp_no_end(c: &Change) -> Result<(), String> {
    for (i, gp) in changed_items(c.old, c.new, "generalPractitioner") {
        if let Some(end) = gp.pointer("/identifier/period/end").and_then(Value::as_str) {
            return Err(invalid_value(
                end,
                &format!("generalPractitioner/{i}/identifier/period/end"),
            ));
        }
    }
    Ok(())
}

/// GP registration is corrected by the National Back Office (in PDS: NHAIS / back office);
/// other callers may neither set, replace nor remove it.
fn gp_changes(c: &Change) -> Result<(), String> {
    if c.role.is_back_office()
        || c.old.get("generalPractitioner") == c.new.get("generalPractitioner")
    {
        return Ok(());
    }
    if list(c.new, "generalPractitioner").is_empty() {
        Err("source not permitted to remove 'generalPractitioner'".into())
    } else {
        Err("source not permitted to update 'generalPractitioner'".into())
    }
}

fn keep_interpreter_required(c: &Change) -> Result<(), String> {
    let had = patient::extension(c.old, COMMUNICATION_URL)
        .and_then(|e| patient::sub_extension(e, "interpreterRequired"))
        .is_some();
    let has = patient::extension(c.new, COMMUNICATION_URL)
        .and_then(|e| patient::sub_extension(e, "interpreterRequired"))
        .is_some();
    if had && !has && patient::extension(c.new, COMMUNICATION_URL).is_some() {
        return Err("interpreterRequired cannot be removed".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::date;

    const TODAY: Date = date!(2026 - 11 - 27);

    /// A record with a valid id around the fields under test.
    fn doc(v: Value) -> Doc {
        let Value::Object(mut m) = v else { panic!() };
        m.insert("id".into(), json!("9000000009"));
        m
    }

    #[test]
    fn dates() {
        assert_eq!(date_part("2020-02-29"), Some(date!(2020 - 02 - 29)));
        assert_eq!(date_part("2021-02-29"), None);
        assert_eq!(date_part("2020"), Some(date!(2020 - 01 - 01)));
        assert_eq!(date_part("2020-03"), Some(date!(2020 - 03 - 01)));
        assert_eq!(
            date_part("2020-03-04T10:00:00+00:00"),
            Some(date!(2020 - 03 - 04))
        );
    }

    #[test]
    fn date_rules_name_the_date_they_refuse() {
        let gp = |period: Value| {
            doc(json!({"generalPractitioner": [
                {"id": "G1", "identifier": {"value": "A12345", "period": period}}
            ]}))
        };
        let address =
            |period: Value| doc(json!({"address": [{"id": "A1"}, {"id": "A2", "period": period}]}));
        assert_eq!(
            calendar_dates(&address(json!({"start": "2021-02-29"})), TODAY).unwrap_err(),
            "Invalid value - '2021-02-29' in field 'address/1/period/start'"
        );
        assert_eq!(
            calendar_dates(
                &gp(json!({"start": "2020-01-01", "end": "2021-13-01"})),
                TODAY
            )
            .unwrap_err(),
            "Invalid value - '2021-13-01' in field 'generalPractitioner/0/identifier/period/end'"
        );
        assert_eq!(
            calendar_dates(&doc(json!({"birthDate": "1990-02-30"})), TODAY).unwrap_err(),
            "Invalid value - '1990-02-30' in field 'birthDate'"
        );
        assert_eq!(
            period_order(&gp(json!({"start": "2020-02-01", "end": "2020-01"})), TODAY).unwrap_err(),
            "Invalid value - '2020-01' in field 'generalPractitioner/0/identifier/period/end'"
        );
        // each end against its own item's start
        let two = doc(json!({"address": [
            {"id": "A1", "period": {"start": "2020-01-01", "end": "2020-06-01"}},
            {"id": "A2", "period": {"start": "2021-01-01", "end": "2020-12-01"}}
        ]}));
        assert_eq!(
            period_order(&two, TODAY).unwrap_err(),
            "Invalid value - '2020-12-01' in field 'address/1/period/end'"
        );
        assert!(period_order(
            &address(json!({"start": "2020-01", "end": "2020-01-01"})),
            TODAY
        )
        .is_ok());
    }

    #[test]
    fn partial_dates_are_spans() {
        assert_eq!(
            date_span("2010-05"),
            Some((date!(2010 - 05 - 01), date!(2010 - 05 - 31)))
        );
        assert_eq!(
            date_span("2024-02"),
            Some((date!(2024 - 02 - 01), date!(2024 - 02 - 29)))
        );
        assert_eq!(
            date_span("2010-12"),
            Some((date!(2010 - 12 - 01), date!(2010 - 12 - 31)))
        );
        assert_eq!(
            date_span("2010"),
            Some((date!(2010 - 01 - 01), date!(2010 - 12 - 31)))
        );
        // a death recorded as a month is not before a birth that month
        let status = json!({"url": patient::DEATH_NOTIFICATION_URL, "extension": [{"url": "deathNotificationStatus",
            "valueCodeableConcept": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-DeathNotificationStatus", "code": "1"}]}}]});
        let d = doc(
            json!({"birthDate": "2010-05-10", "deceasedDateTime": "2010-05", "extension": [status.clone()]}),
        );
        check_record(&d, TODAY).unwrap();
        let d = doc(
            json!({"birthDate": "2010-05-10", "deceasedDateTime": "2010-04", "extension": [status]}),
        );
        assert!(check_record(&d, TODAY).is_err());
        let d = doc(
            json!({"address": [{"use": "home", "id": "a", "period": {"start": "2020-03-15", "end": "2020-03"}}]}),
        );
        check_record(&d, TODAY).unwrap();
    }

    #[test]
    fn emails() {
        assert!(valid_email("a.b@example.com"));
        for bad in [
            "a@b.c",
            "no-at-sign.example",
            "a@@example.com",
            "x y@example.com",
            "abc@example.",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
        assert!(!valid_email(&format!("{}@example.com", "a".repeat(80))));
    }

    /// A change by `role` from `old` to `new`, checked.
    fn change(old: &Doc, new: &Doc) -> Result<(), PdsError> {
        check_change(&Change {
            old,
            new,
            role: Role::HealthcareWorker,
            today: TODAY,
        })
    }

    #[test]
    fn name_values_a_change_brings_are_checked_and_stored_ones_are_not() {
        let empty = doc(json!({}));
        let ok = doc(
            json!({"name": [{"id": "n", "use": "usual", "family": "O'Brien-Ñúñez", "given": ["Zoë"], "prefix": ["Mrs"]}]}),
        );
        change(&empty, &ok).unwrap();
        let with = |name: Value| doc(json!({"name": [name]}));
        for (bad, code) in [
            (
                json!({"id": "n", "use": "usual", "family": "Smith!"}),
                UnsupportedCharacters,
            ),
            (
                json!({"id": "n", "use": "usual", "family": "Smith", "prefix": ["MRS"]}),
                InvalidValue,
            ),
            (
                json!({"id": "n", "use": "usual", "family": "Smith", "suffix": ["mbe"]}),
                InvalidValue,
            ),
        ] {
            let legacy = with(bad.clone());
            // a record that already holds the value: loads (record rules) and takes a change
            // elsewhere (only what the change brings is judged)
            check_record(&legacy, TODAY).unwrap();
            let mut edited = legacy.clone();
            edited.insert("gender".into(), json!("female"));
            change(&legacy, &edited).unwrap();
            let mut renamed = legacy.clone();
            renamed["name"][0]["given"] = json!(["Ann"]);
            change(&legacy, &renamed).unwrap();
            // the same value brought in by a change is refused
            assert_eq!(change(&empty, &legacy).unwrap_err().code, code, "{bad}");
            assert_eq!(
                change(&ok, &with(bad.clone())).unwrap_err().code,
                code,
                "{bad}"
            );
        }
        // a second title brought in next to a stored upper-case one is judged on its own
        let legacy = with(json!({"id": "n", "use": "usual", "family": "Smith", "prefix": ["MR"]}));
        let more =
            with(json!({"id": "n", "use": "usual", "family": "Smith", "prefix": ["MR", "DR"]}));
        assert_eq!(
            change(&legacy, &more).unwrap_err().diagnostics.unwrap(),
            "Invalid value - 'DR' in field 'name/0/prefix/1'"
        );
    }

    #[test]
    fn other_values_a_change_brings_are_checked_and_stored_ones_are_not() {
        let cases = [
            json!({"telecom": [{"id": "t", "system": "email", "value": "not-an-email"}]}),
            json!({"extension": [{"url": COMMUNICATION_URL, "extension": [{"url": "language",
                "valueCodeableConcept": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-HumanLanguage", "code": "en"}]}}]}]}),
            json!({"extension": [{"url": CONTACT_PREFERENCE_URL, "extension": [{"url": "PreferredContactTimes", "valueString": "mornings"}]}]}),
            json!({"address": [{"id": "a", "use": "temp", "text": "Second Home", "period": {"start": "2020-01-01"}}]}),
            json!({"address": [{"id": "a", "use": "temp", "period": {"start": "2020-01-01", "end": "2020-02-01"}}]}),
            json!({"deceasedDateTime": "2020-01-01T00:00:00+00:00", "birthDate": "2000-01-01"}),
        ];
        for legacy in cases {
            let legacy = doc(legacy);
            check_record(&legacy, TODAY).unwrap();
            let mut edited = legacy.clone();
            edited.insert("multipleBirthInteger".into(), json!(1));
            change(&legacy, &edited).unwrap();
            assert!(change(&doc(json!({})), &legacy).is_err(), "{legacy:?}");
        }
    }

    #[test]
    fn two_usual_names_is_forbidden_and_wins() {
        // a 403 rule wins over a 400 rule broken at the same time
        let d = doc(
            json!({"name": [{"use": "usual", "family": "A!"}, {"use": "usual", "family": "B"}]}),
        );
        let e = check_record(&d, TODAY).unwrap_err();
        assert_eq!(e.code, ForbiddenUpdate);
        assert_eq!(
            e.diagnostics.unwrap(),
            "Forbidden update with error - multiple usual names cannot be added"
        );
    }

    #[test]
    fn death_rules() {
        let status = |code: &str| {
            json!({"url": patient::DEATH_NOTIFICATION_URL, "extension": [{"url": "deathNotificationStatus",
                "valueCodeableConcept": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-DeathNotificationStatus", "code": code}]}}]})
        };
        let d = doc(
            json!({"birthDate": "2000-01-01", "deceasedDateTime": "2020-01-01T00:00:00+00:00"}),
        );
        assert_eq!(
            change(&doc(json!({"birthDate": "2000-01-01"})), &d)
                .unwrap_err()
                .code,
            InvalidUpdate
        );
        let d = doc(
            json!({"birthDate": "2000-01-01", "deceasedDateTime": "1999-01-01", "extension": [status("1")]}),
        );
        assert!(check_record(&d, TODAY)
            .unwrap_err()
            .diagnostics
            .unwrap()
            .contains("before birthDate"));
        let d = doc(
            json!({"birthDate": "2000-01-01", "deceasedDateTime": "2030-01-01", "extension": [status("1")]}),
        );
        assert_eq!(check_record(&d, TODAY).unwrap_err().code, InvalidValue);

        let old = doc(json!({"deceasedDateTime": "2020-01-01", "extension": [status("2")]}));
        let new = doc(json!({"deceasedDateTime": "2020-01-02", "extension": [status("2")]}));
        let hcw = Change {
            old: &old,
            new: &new,
            role: Role::HealthcareWorker,
            today: TODAY,
        };
        assert_eq!(check_change(&hcw).unwrap_err().code, ForbiddenUpdate);
        let bo = Change {
            role: Role::BackOffice,
            ..hcw
        };
        check_change(&bo).unwrap();

        let old = doc(json!({}));
        let new = doc(json!({"deceasedDateTime": "2020-01-02", "extension": [status("2")]}));
        let c = Change {
            old: &old,
            new: &new,
            role: Role::HealthcareWorker,
            today: TODAY,
        };
        assert!(check_change(&c)
            .unwrap_err()
            .diagnostics
            .unwrap()
            .contains("authorised"));
        let new = doc(json!({"deceasedDateTime": "2020-01-02", "extension": [status("U")]}));
        let c = Change {
            old: &old,
            new: &new,
            role: Role::HealthcareWorker,
            today: TODAY,
        };
        assert_eq!(check_change(&c).unwrap_err().code, UnsupportedValue);
    }

    #[test]
    fn addresses() {
        let d = doc(json!({"address": [{"use": "home", "id": "a"}, {"use": "home", "id": "b"}]}));
        assert!(check_record(&d, TODAY)
            .unwrap_err()
            .diagnostics
            .unwrap()
            .contains("'home'"));
        let d = doc(
            json!({"address": [{"use": "temp", "id": "a", "text": "Second Home", "period": {"start": "2020-01-01"}}]}),
        );
        assert_eq!(
            change(&doc(json!({})), &d)
                .unwrap_err()
                .diagnostics
                .unwrap(),
            "Missing value - 'address/0/period/end'"
        );
        let d = doc(
            json!({"address": [{"use": "home", "id": "a", "period": {"start": "2020-01-02", "end": "2020-01-01"}}]}),
        );
        assert_eq!(check_record(&d, TODAY).unwrap_err().code, InvalidValue);
    }

    #[test]
    fn periods_of_changed_items_only() {
        let old = doc(
            json!({"address": [{"use": "home", "id": "a", "period": {"start": "2030-01-01"}}]}),
        );
        let same = old.clone();
        // an untouched item is not judged by the change rules
        check_change(&Change {
            old: &old,
            new: &same,
            role: Role::HealthcareWorker,
            today: TODAY,
        })
        .unwrap();
        // nor is a period the change did not bring (it changed the postcode only)
        let new = doc(
            json!({"address": [{"use": "home", "id": "a", "period": {"start": "2030-01-01"}, "postalCode": "LS1 1AA"}]}),
        );
        change(&old, &new).unwrap();
        // a period it brings is
        let new = doc(
            json!({"address": [{"use": "home", "id": "a", "period": {"start": "2030-01-02"}}]}),
        );
        assert_eq!(
            change(&old, &new).unwrap_err().diagnostics.unwrap(),
            "Invalid value - '2030-01-02' in field 'address/0/period/start'"
        );
    }
}
