//! Searching cases and messages: the query parameters parsed into the index keys that answer
//! them. Every query reads index entries (each key in due-date or sent order), never every case.

use super::message::{READ, UNREAD};
use super::{CaseKind, OdsCode, Owner, Status};
use crate::domain::{ErrorCode, NhsNumber, PdsError};

/// The most results one page holds, and the default.
pub const MAX_COUNT: usize = 500;
pub const DEFAULT_COUNT: usize = 100;

/// A `GET /Task` query.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskQuery {
    /// Any of these (none: any status).
    pub statuses: Vec<Status>,
    pub code: Option<CaseKind>,
    pub owner: Option<Owner>,
    pub requester: Option<OdsCode>,
    pub patient: Option<NhsNumber>,
    /// Open cases whose due date has passed.
    pub overdue: bool,
    /// Latest due first (`_sort=-due`).
    pub descending: bool,
    pub count: usize,
}

/// A `GET /Communication` query.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MessageQuery {
    pub recipient: Option<OdsCode>,
    /// `Some(true)`: read only; `Some(false)`: unread only.
    pub read: Option<bool>,
    /// `Task/<id>`.
    pub about: Option<String>,
    pub count: usize,
}

fn unknown(name: &str, known: &[&str]) -> PdsError {
    PdsError::new(
        ErrorCode::AdditionalProperties,
        format!(
            "Invalid search parameter - '{}'; the parameters are {}",
            crate::domain::outcome::clip(name),
            known.join(", ")
        ),
    )
}

fn bad(name: &str, expected: &str) -> PdsError {
    PdsError::new(
        ErrorCode::InvalidValue,
        format!("Invalid value for search parameter '{name}': expected {expected}"),
    )
}

fn once<'a>(
    pairs: &'a [(String, String)],
    known: &[&str],
) -> Result<Vec<(&'a str, &'a str)>, PdsError> {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for (k, v) in pairs {
        if !known.contains(&k.as_str()) {
            return Err(unknown(k, known));
        }
        if seen.contains(&k.as_str()) {
            return Err(PdsError::new(
                ErrorCode::TooManyValues,
                format!("Search parameter '{k}' is given more than once; list values with commas"),
            ));
        }
        seen.push(k);
        out.push((k.as_str(), v.trim()));
    }
    Ok(out)
}

fn count(v: &str) -> Result<usize, PdsError> {
    v.parse()
        .ok()
        .filter(|n| (1..=MAX_COUNT).contains(n))
        .ok_or_else(|| bad("_count", &format!("a number from 1 to {MAX_COUNT}")))
}

fn ods(name: &str, v: &str) -> Result<OdsCode, PdsError> {
    let code = v.rsplit('|').next().unwrap_or(v);
    OdsCode::parse(code).map_err(|_| bad(name, "an ODS code (e.g. Y12345)"))
}

impl TaskQuery {
    pub const PARAMETERS: &'static [&'static str] = &[
        "status",
        "code",
        "owner",
        "requester",
        "patient",
        "overdue",
        "_sort",
        "_count",
    ];

    pub fn parse(pairs: &[(String, String)]) -> Result<TaskQuery, PdsError> {
        let mut q = TaskQuery {
            count: DEFAULT_COUNT,
            ..TaskQuery::default()
        };
        for (k, v) in once(pairs, Self::PARAMETERS)? {
            match k {
                "status" => {
                    for s in v.split(',') {
                        let s = Status::parse(s.trim()).ok_or_else(|| {
                            let all: Vec<&str> = Status::ALL.iter().map(|s| s.code()).collect();
                            bad("status", &format!("one or more of {}", all.join(", ")))
                        })?;
                        if !q.statuses.contains(&s) {
                            q.statuses.push(s);
                        }
                    }
                }
                "code" => {
                    let code = v.rsplit('|').next().unwrap_or(v);
                    q.code = Some(CaseKind::parse(code).ok_or_else(|| {
                        let all: Vec<&str> = CaseKind::all().map(CaseKind::code).collect();
                        bad("code", &format!("one of {}", all.join(", ")))
                    })?);
                }
                "owner" => {
                    q.owner = Some(Owner::parse(v).ok_or_else(|| bad("owner", "pcse or nbo"))?)
                }
                "requester" => q.requester = Some(ods("requester", v)?),
                "patient" => {
                    let n = v.strip_prefix("Patient/").unwrap_or(v);
                    let n = n.rsplit('|').next().unwrap_or(n);
                    q.patient = Some(
                        NhsNumber::parse(n).map_err(|_| bad("patient", "a valid NHS number"))?,
                    );
                }
                "overdue" => {
                    q.overdue = match v {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad("overdue", "true or false")),
                    }
                }
                "_sort" => {
                    q.descending = match v {
                        "due" => false,
                        "-due" => true,
                        _ => return Err(bad("_sort", "due or -due")),
                    }
                }
                _ => q.count = count(v)?,
            }
        }
        Ok(q)
    }

    /// The index key sets whose intersection answers the query: each inner list is a union
    /// (the statuses asked for); `overdue` is the `open` key read below today's date.
    pub fn keys(&self) -> Vec<Vec<String>> {
        let mut sets = Vec::new();
        if !self.statuses.is_empty() {
            sets.push(
                self.statuses
                    .iter()
                    .map(|s| format!("status={}", s.code()))
                    .collect(),
            );
        }
        if let Some(c) = self.code {
            sets.push(vec![format!("code={}", c.code())]);
        }
        if let Some(o) = self.owner {
            sets.push(vec![format!("owner={}", o.code())]);
        }
        if let Some(r) = &self.requester {
            sets.push(vec![format!("requester={r}")]);
        }
        if let Some(p) = self.patient {
            sets.push(vec![format!("patient={p}")]);
        }
        sets
    }
}

impl MessageQuery {
    pub const PARAMETERS: &'static [&'static str] = &["recipient", "status", "about", "_count"];

    pub fn parse(pairs: &[(String, String)]) -> Result<MessageQuery, PdsError> {
        let mut q = MessageQuery {
            count: DEFAULT_COUNT,
            ..MessageQuery::default()
        };
        for (k, v) in once(pairs, Self::PARAMETERS)? {
            match k {
                "recipient" => q.recipient = Some(ods("recipient", v)?),
                "status" => {
                    q.read = Some(match v {
                        UNREAD | "unread" => false,
                        READ | "read" => true,
                        _ => return Err(bad("status", "in-progress (unread) or completed (read)")),
                    })
                }
                "about" => {
                    let id = v.strip_prefix("Task/").unwrap_or(v);
                    if id.is_empty()
                        || id.len() > 64
                        || !id
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                    {
                        return Err(bad("about", "Task/<id>"));
                    }
                    q.about = Some(format!("Task/{id}"));
                }
                _ => q.count = count(v)?,
            }
        }
        Ok(q)
    }

    pub fn keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        match (&self.recipient, self.read) {
            (Some(r), Some(read)) => keys.push(format!(
                "recipient-status={r}|{}",
                if read { READ } else { UNREAD }
            )),
            (Some(r), None) => keys.push(format!("recipient={r}")),
            (None, Some(read)) => keys.push(format!("status={}", if read { READ } else { UNREAD })),
            (None, None) => {}
        }
        if let Some(a) = &self.about {
            keys.push(format!("about={a}"));
        }
        if keys.is_empty() {
            keys.push("all".into());
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }

    #[test]
    fn task_queries_become_index_keys() {
        let q = TaskQuery::parse(&pairs(
            "status=requested,received&code=duplicate-nhs-number&overdue=true&_sort=-due&_count=5",
        ))
        .unwrap();
        assert_eq!(
            q.keys(),
            vec![
                vec![
                    "status=requested".to_string(),
                    "status=received".to_string()
                ],
                vec!["code=duplicate-nhs-number".to_string()],
            ]
        );
        assert!(q.overdue && q.descending && q.count == 5);
        for bad in [
            "status=done",
            "nope=1",
            "_count=0",
            "patient=123",
            "requester=y1",
            "status=requested&status=received",
        ] {
            assert!(TaskQuery::parse(&pairs(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn message_queries_become_index_keys() {
        let q = MessageQuery::parse(&pairs("recipient=Y12345&status=in-progress")).unwrap();
        assert_eq!(
            q.keys(),
            vec!["recipient-status=Y12345|in-progress".to_string()]
        );
        assert_eq!(
            MessageQuery::parse(&[]).unwrap().keys(),
            vec!["all".to_string()]
        );
        assert!(MessageQuery::parse(&pairs("status=maybe")).is_err());
    }
}
