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

/// The label the target of a merge gets back when the merge is undone: the one it had before
/// the merge, raised to the stricter label of any other record still merged into it — unless
/// the back office set its label after the merge (that decision stands). `None`: keep the
/// current label.
pub fn after_unmerge(
    target: &Patient,
    before_merge: Label,
    still_merged: &[Label],
    set_since_merge: bool,
) -> Option<Label> {
    if set_since_merge {
        return None;
    }
    let wanted = still_merged.iter().copied().fold(before_merge, Label::max);
    (Label::of(target) != Some(wanted)).then_some(wanted)
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
    fn an_unmerge_restores_unless_the_label_was_set_since() {
        let raised = with(Some("R"));
        assert_eq!(
            after_unmerge(&raised, Label::Unrestricted, &[], false),
            Some(Label::Unrestricted)
        );
        assert_eq!(after_unmerge(&raised, Label::Unrestricted, &[], true), None);
        assert_eq!(
            after_unmerge(&raised, Label::Unrestricted, &[Label::Restricted], false),
            None,
            "another restricted record is still merged into it"
        );
        assert_eq!(
            after_unmerge(&with(Some("U")), Label::Unrestricted, &[], false),
            None
        );
    }
}
