//! The confidentiality label of a record (`meta.security[0]`, v3-Confidentiality), and how labels
//! compare: what a merge's survivor, a change of identity and an unmerge end up with.

use serde_json::{json, Value};

use super::patch::{Op, OpKind};
use super::patient::{security_code, Patient, CONFIDENTIALITY_SYSTEM};

/// A confidentiality code, ordered from least to most restrictive (V over R over U).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Label {
    /// `U` unrestricted (also a record without a label).
    Unrestricted,
    /// `R` restricted: the sensitive flag.
    Restricted,
    /// `V` very restricted: treated at least as strictly as R.
    VeryRestricted,
}

impl Label {
    /// The label of a record; `None` for an invalidated one (REDACTED is not a sensitivity).
    pub fn of(p: &Patient) -> Option<Label> {
        match security_code(p.doc()) {
            None | Some("U") => Some(Label::Unrestricted),
            Some("R") => Some(Label::Restricted),
            Some("V") => Some(Label::VeryRestricted),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Label::Unrestricted => "U",
            Label::Restricted => "R",
            Label::VeryRestricted => "V",
        }
    }

    fn display(self) -> &'static str {
        match self {
            Label::Unrestricted => "unrestricted",
            Label::Restricted => "restricted",
            Label::VeryRestricted => "very restricted",
        }
    }

    /// The `meta.security` entry.
    pub fn to_json(self) -> Value {
        json!({"system": CONFIDENTIALITY_SYSTEM, "code": self.code(), "display": self.display()})
    }
}

/// The operations that give `p` the label `label` (as its only `meta.security` entry).
pub fn set_ops(p: &Patient, label: Value) -> Vec<Op> {
    let kind = if p
        .doc()
        .get("meta")
        .and_then(|m| m.get("security"))
        .is_some()
    {
        OpKind::Replace
    } else {
        OpKind::Add
    };
    vec![Op::new(kind, "/meta/security", Some(json!([label])))]
}

/// The label a merge's survivor must carry: the stricter of the two records' labels, so that a
/// restricted record merged into an unrestricted one does not hand the survivor's address to
/// whoever reads the restricted number. `None` when the target's own label already is it.
pub fn for_survivor(source: &Patient, target: &Patient) -> Option<Label> {
    let (s, t) = (Label::of(source)?, Label::of(target)?);
    (s > t).then_some(s)
}

/// What the target of a merge was like just before the merge, as an unmerge needs to know it.
pub struct BeforeMerge<'a> {
    /// The target's version just before the merge.
    pub version: &'a Patient,
    /// The back office set the target's label after the merge.
    pub label_set_since: bool,
}

/// The label the target of a merge gets back when the merge is undone: the one it had before
/// the merge, raised to the stricter label of any other record still merged into it. `None`:
/// keep the current label — never lower it — when
/// * the back office set the label after the merge (that decision stands);
/// * the target's content changed since the merge (the merge's `result-patient`, a correction):
///   what it took on while it carried the stricter label would surface by itself — lifting
///   the flag is then the back office's explicit decision;
/// * the target is invalidated (REDACTED is not lifted by an unmerge).
pub fn after_unmerge(
    target: &Patient,
    before: &BeforeMerge,
    still_merged: &[Label],
) -> Option<Label> {
    let current = Label::of(target)?;
    if before.label_set_since {
        return None;
    }
    let wanted = still_merged.iter().copied().fold(
        Label::of(before.version).unwrap_or(Label::Unrestricted),
        Label::max,
    );
    if wanted < current && content(target) != content(before.version) {
        return None;
    }
    (wanted != current).then_some(wanted)
}

/// A record's content, leaving out what a merge or a label changes by itself.
fn content(p: &Patient) -> serde_json::Map<String, Value> {
    let mut doc = p.doc().clone();
    for k in ["meta", "link", "active"] {
        doc.remove(k);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Schemas;
    use time::macros::date;

    fn with(code: Option<&str>) -> Patient {
        let mut doc = json!({"resourceType": "Patient", "id": "9000000009",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}]});
        if let Some(c) = code {
            doc["meta"] = json!({"security": [{"system": CONFIDENTIALITY_SYSTEM, "code": c}]});
        }
        Patient::parse(doc, &Schemas::compile(), date!(2026 - 01 - 01)).unwrap()
    }

    #[test]
    fn the_stricter_label_wins() {
        assert_eq!(
            for_survivor(&with(Some("R")), &with(Some("U"))),
            Some(Label::Restricted)
        );
        assert_eq!(
            for_survivor(&with(Some("R")), &with(None)),
            Some(Label::Restricted)
        );
        assert_eq!(
            for_survivor(&with(Some("V")), &with(Some("R"))),
            Some(Label::VeryRestricted)
        );
        assert_eq!(for_survivor(&with(Some("U")), &with(Some("R"))), None);
        assert_eq!(for_survivor(&with(Some("R")), &with(Some("V"))), None);
    }

    #[test]
    fn an_unmerge_restores_the_label_only_when_nothing_else_changed() {
        let (raised, before) = (with(Some("R")), with(Some("U")));
        let since = |set| BeforeMerge {
            version: &before,
            label_set_since: set,
        };
        assert_eq!(
            after_unmerge(&raised, &since(false), &[]),
            Some(Label::Unrestricted)
        );
        assert_eq!(after_unmerge(&raised, &since(true), &[]), None);
        assert_eq!(
            after_unmerge(&raised, &since(false), &[Label::Restricted]),
            None,
            "another restricted record is still merged into it"
        );
        assert_eq!(after_unmerge(&before, &since(false), &[]), None);
        // content taken on while restricted keeps the label
        let mut doc = raised.doc().clone();
        doc.insert("gender".into(), json!("female"));
        let changed = Patient::parse(
            Value::Object(doc),
            &Schemas::compile(),
            date!(2026 - 01 - 01),
        )
        .unwrap();
        assert_eq!(after_unmerge(&changed, &since(false), &[]), None);
        // and an invalidated target stays so
        assert_eq!(
            after_unmerge(&with(Some("REDACTED")), &since(false), &[]),
            None
        );
    }
}
