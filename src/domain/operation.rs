//! The signatures of the `$` operations: each parameter's name, FHIR type and cardinality, as
//! one table. The `Parameters` parser accepts exactly these names, and the capability statement
//! publishes the same table as `OperationDefinition`s, so the two cannot drift apart.

/// One input parameter of an operation.
#[derive(Debug)]
pub struct Param {
    pub name: &'static str,
    /// The FHIR type of its value (`Identifier` for `valueIdentifier`, `Patient` for a
    /// `resource`...).
    pub kind: &'static str,
    /// 1 when the operation refuses a request without it.
    pub min: u32,
    pub documentation: &'static str,
}

/// An operation on the Patient type: `POST /Patient/$<code>` with a `Parameters` body.
#[derive(Debug)]
pub struct Signature {
    pub code: &'static str,
    pub params: &'static [Param],
    /// What the answer's `result` parameter holds.
    pub result: &'static str,
}

impl Signature {
    pub fn names(&self) -> Vec<&'static str> {
        self.params.iter().map(|p| p.name).collect()
    }
}

const fn param(
    name: &'static str,
    kind: &'static str,
    min: u32,
    documentation: &'static str,
) -> Param {
    Param {
        name,
        kind,
        min,
        documentation,
    }
}

const CASE: Param = param(
    "case",
    "Reference",
    0,
    "The case (`Task/<id>`) the correction is recorded on; `valueReference` or `valueString`.",
);
const REASON: Param = param(
    "reason",
    "string",
    1,
    "Why the correction is made; kept in the audit trail.",
);
const NHS_NUMBER: Param = param(
    "nhs-number",
    "Identifier",
    1,
    "The record's NHS number (system https://fhir.nhs.uk/Id/nhs-number).",
);

const MERGE_PARAMS: [Param; 6] = [
    CASE,
    param(
        "source-patient-identifier",
        "Identifier",
        1,
        "The duplicate: its NHS number (system https://fhir.nhs.uk/Id/nhs-number).",
    ),
    param(
        "target-patient-identifier",
        "Identifier",
        1,
        "The record the duplicate is merged into.",
    ),
    param(
        "preview",
        "boolean",
        0,
        "true: answer with the result without changing anything.",
    ),
    param(
        "result-patient",
        "Patient",
        0,
        "The target as it should read after the merge (its server fields are kept).",
    ),
    REASON,
];

pub const MERGE: Signature = Signature {
    code: "merge",
    params: &MERGE_PARAMS,
    result: "Patient",
};

const UNMERGE_PARAMS: [Param; 6] = [
    CASE,
    param(
        "source-patient-identifier",
        "Identifier",
        1,
        "The superseded record to make live again.",
    ),
    param(
        "target-patient-identifier",
        "Identifier",
        0,
        "The record it was merged into (checked when given).",
    ),
    param(
        "preview",
        "boolean",
        0,
        "true: answer with the result without changing anything.",
    ),
    param(
        "result-patient",
        "Patient",
        0,
        "Not used by an unmerge; accepted for symmetry with $merge.",
    ),
    REASON,
];

pub const UNMERGE: Signature = Signature {
    code: "unmerge",
    params: &UNMERGE_PARAMS,
    result: "Patient",
};

const CHANGE_IDENTITY_PARAMS: [Param; 4] = [
    CASE,
    NHS_NUMBER,
    param(
        "patient",
        "Patient",
        1,
        "The person's record as it should read under the new NHS number.",
    ),
    REASON,
];

pub const CHANGE_IDENTITY: Signature = Signature {
    code: "change-identity",
    params: &CHANGE_IDENTITY_PARAMS,
    result: "Patient",
};

const VALIDITY_PARAMS: [Param; 3] = [CASE, NHS_NUMBER, REASON];

pub const INVALIDATE: Signature = Signature {
    code: "invalidate",
    params: &VALIDITY_PARAMS,
    result: "Patient",
};

pub const REVALIDATE: Signature = Signature {
    code: "revalidate",
    params: &VALIDITY_PARAMS,
    result: "Patient",
};

/// Every operation, by code.
pub const OPERATIONS: [&Signature; 5] =
    [&MERGE, &UNMERGE, &CHANGE_IDENTITY, &INVALIDATE, &REVALIDATE];

pub fn by_code(code: &str) -> Option<&'static Signature> {
    OPERATIONS.iter().copied().find(|s| s.code == code)
}
