//! The validated patch layer: the one way a stored record changes.
//!
//! A PATCH body is parsed into [`PatchRequest`] (shape checked against
//! `schemas/patch-request.schema.json`), then [`apply`] runs its operations one by one on a
//! copy of the record, enforcing PDS's list rules as it goes (reference §3):
//!
//! * new list items only through `/<list>/-`; the server assigns their `id`;
//! * any other change inside a list item needs the item's `id` (extensions: `url`) asserted by
//!   an earlier operation of the same request (`test`, `add` or `replace` on `/<list>/<i>/id`);
//! * removing a list item must immediately follow a `test` of that item (whole, id or url);
//! * `test` values are really compared.
//!
//! The result is normalised, checked against the Patient schema and then against the business
//! rules ([`super::rules`]). Nothing is applied unless everything passes.

use std::collections::HashSet;

use serde_json::{Map, Value};
use time::Date;

use super::outcome::{clip, PdsError};
use super::patient::{self, item_key, Patient};
use super::role::Role;
use super::rules::{self, Change};
use super::schema::Schemas;
use super::view;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Remove,
    Replace,
    Test,
}

impl OpKind {
    fn name(self) -> &'static str {
        match self {
            OpKind::Add => "add",
            OpKind::Remove => "remove",
            OpKind::Replace => "replace",
            OpKind::Test => "test",
        }
    }
}

/// One JSON Patch operation, its pointer already split into unescaped tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    pub kind: OpKind,
    pub path: String,
    pub tokens: Vec<String>,
    pub value: Option<Value>,
}

/// A parsed PATCH body.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchRequest {
    pub ops: Vec<Op>,
    /// Why a correction is made (required for back-office corrections).
    pub reason: Option<String>,
}

impl PatchRequest {
    /// Parses `{"patches":[…]}` (or, leniently, a bare JSON Patch array).
    pub fn parse(body: &Value, schemas: &Schemas) -> Result<PatchRequest, PdsError> {
        let wrapped;
        let body = match body {
            Value::Array(_) => {
                wrapped = serde_json::json!({ "patches": body });
                &wrapped
            }
            Value::Object(_) => body,
            _ => return Err(PdsError::invalid_update("No patches found")),
        };
        match body.get("patches") {
            None => return Err(PdsError::invalid_update("No patches found")),
            Some(Value::Array(a)) if a.is_empty() => {
                return Err(PdsError::invalid_update("No patches found"))
            }
            _ => {}
        }
        if let Some(i) = body["patches"].as_array().and_then(|ops| {
            ops.iter().position(|op| {
                op.get("op") == Some(&Value::from("remove")) && op.get("value").is_some()
            })
        }) {
            return Err(PdsError::invalid_update(format!(
                "'value' must be omitted on a 'remove' operation (patch {i})"
            )));
        }
        schemas.check_patch_request(body)?;
        let ops = body["patches"]
            .as_array()
            .expect("schema checked")
            .iter()
            .enumerate()
            .map(|(i, op)| parse_op(i, op))
            .collect::<Result<Vec<_>, _>>()?;
        let reason = body
            .get("reason")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(PatchRequest { ops, reason })
    }
}

impl PatchRequest {
    /// Only `test` operations: a request that asserts and changes nothing.
    pub fn is_test_only(&self) -> bool {
        self.ops.iter().all(|op| op.kind == OpKind::Test)
    }
}

impl Op {
    /// An operation the service writes itself (`path` must be a valid pointer).
    pub fn new(kind: OpKind, path: &str, value: Option<Value>) -> Op {
        let tokens = split_pointer(path).expect("a valid JSON pointer");
        Op {
            kind,
            path: path.to_string(),
            tokens,
            value,
        }
    }

    /// The operation as RFC 6902 JSON (for the audit trail).
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::json!({"op": self.kind.name(), "path": self.path});
        if let Some(value) = &self.value {
            v["value"] = value.clone();
        }
        v
    }
}

fn parse_op(i: usize, op: &Value) -> Result<Op, PdsError> {
    let kind = match op["op"].as_str() {
        Some("add") => OpKind::Add,
        Some("remove") => OpKind::Remove,
        Some("replace") => OpKind::Replace,
        Some("test") => OpKind::Test,
        other => {
            return Err(PdsError::invalid_value(
                other.unwrap_or_default(),
                &format!("{i}/op"),
            ))
        }
    };
    let path = op["path"].as_str().unwrap_or_default().to_string();
    let tokens =
        split_pointer(&path).ok_or_else(|| PdsError::invalid_value(&path, &format!("{i}/path")))?;
    Ok(Op {
        kind,
        path,
        tokens,
        value: op.get("value").cloned(),
    })
}

/// Splits an RFC 6901 pointer into unescaped tokens; `None` for a malformed pointer.
fn split_pointer(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix('/')?;
    rest.split('/')
        .map(|t| {
            let mut out = String::with_capacity(t.len());
            let mut chars = t.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return None,
                    }
                } else {
                    out.push(c);
                }
            }
            Some(out)
        })
        .collect()
}

/// Who changes the record and when: everything the pure patch layer needs from outside.
pub struct PatchContext<'a> {
    pub role: Role,
    pub today: Date,
    /// Makes a fresh object id for a new list item.
    pub new_id: &'a mut dyn FnMut() -> String,
}

/// Fields that hold a single value and can be added, replaced or removed directly.
const SCALAR_FIELDS: [&str; 4] = [
    "gender",
    "birthDate",
    "deceasedDateTime",
    "multipleBirthInteger",
];
/// Fields only the server writes.
const SERVER_FIELDS: [&str; 7] = [
    "active",
    "link",
    "resourceType",
    "id",
    "identifier",
    "meta",
    "managingOrganization",
];

/// Applies a PATCH to a record and returns the next version, or the PDS error that stops it.
pub fn apply(
    current: &Patient,
    request: &PatchRequest,
    ctx: &mut PatchContext,
    schemas: &Schemas,
) -> Result<Patient, PdsError> {
    if current.is_restricted() && !ctx.role.is_back_office() {
        return Err(PdsError::forbidden_update(
            "updating a sensitive patient is only permitted from certain systems",
        ));
    }
    let updated = apply_ops(current, &request.ops, ctx, schemas, false)?;
    let operation = classify(current, &updated, &request.ops, ctx.role);
    if operation.needs_reason()
        && request
            .reason
            .as_deref()
            .is_none_or(|r| r.trim().is_empty())
    {
        return Err(PdsError::missing_value("reason"));
    }
    Ok(updated)
}

/// What kind of change a PATCH makes, for the audit trail and the reason rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Patch,
    /// The sensitive (confidentiality) flag changed.
    Flag,
    /// The back office changed or removed a death.
    DeathCorrection,
    Merge,
    Unmerge,
    /// A new record with a newly allocated NHS number.
    Create,
    Invalidate,
    Revalidate,
    /// The old record of a change of identity (invalidated) and the new one (created).
    ChangeIdentity,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::Patch => "patch",
            Operation::Flag => "flag",
            Operation::DeathCorrection => "death-correction",
            Operation::Merge => "merge",
            Operation::Unmerge => "unmerge",
            Operation::Create => "create",
            Operation::Invalidate => "invalidate",
            Operation::Revalidate => "revalidate",
            Operation::ChangeIdentity => "change-identity",
        }
    }

    /// Back-office corrections must say why (400 MISSING_VALUE `reason` otherwise).
    pub fn needs_reason(self) -> bool {
        !matches!(self, Operation::Patch | Operation::Create)
    }
}

/// Classifies the change from `old` to `new` that `ops` made for `role`. Writing the
/// confidentiality label is a flag change even when it writes the label the record had (the
/// back office decided it: an unmerge keeps a label set after the merge).
pub fn classify(old: &Patient, new: &Patient, ops: &[Op], role: Role) -> Operation {
    let (o, n) = (old.doc(), new.doc());
    let writes_label = ops.iter().any(|op| {
        op.kind != OpKind::Test
            && op.tokens.first().map(String::as_str) == Some("meta")
            && op.tokens.get(1).is_none_or(|t| t == "security")
    });
    if writes_label || patient::security_code(o) != patient::security_code(n) {
        return Operation::Flag;
    }
    let death = |d: &Map<String, Value>| {
        (
            d.get("deceasedDateTime").cloned(),
            patient::extension(d, patient::DEATH_NOTIFICATION_URL).cloned(),
        )
    };
    if role.is_back_office() && death(o) != death(n) {
        return Operation::DeathCorrection;
    }
    Operation::Patch
}

/// Applies operations written by the service itself (merges): no client list rules and server
/// fields writable, but the same normalisation, schema and business rules as any change.
pub(crate) fn apply_system(
    current: &Patient,
    ops: &[Op],
    ctx: &mut PatchContext,
    schemas: &Schemas,
) -> Result<Patient, PdsError> {
    apply_ops(current, ops, ctx, schemas, true)
}

fn apply_ops(
    current: &Patient,
    ops: &[Op],
    ctx: &mut PatchContext,
    schemas: &Schemas,
    system: bool,
) -> Result<Patient, PdsError> {
    // A client's operations see the record as its role does: merge state, which only the back
    // office sees, is not there for them to address, test or have quoted back in an error; it
    // is put back, unchanged, once their operations are applied.
    let kept = if system || ctx.role.is_back_office() {
        Vec::new()
    } else {
        view::back_office_fields(current.doc())
    };
    let mut doc = current.doc().clone();
    for (k, _) in &kept {
        doc.remove(k);
    }
    let mut doc = Value::Object(doc);
    let mut state = OpState::default();
    for (i, op) in ops.iter().enumerate() {
        if system {
            run_json_patch(&mut doc, op, op.value.clone())?;
            continue;
        }
        let previous = i.checked_sub(1).map(|p| &ops[p]);
        apply_one(&mut doc, op, previous, ctx, &mut state)?;
    }
    let Value::Object(mut new) = doc else {
        unreachable!("a Patient stays an object")
    };
    new.extend(kept);
    default_periods(&mut new, &state.created, ctx.today);
    patient::normalise(&mut new);
    let version = current.version().next();
    patient::set_version(&mut new, version);
    let new_value = Value::Object(new);
    schemas.check_patient(&new_value)?;
    let Value::Object(new) = new_value else {
        unreachable!()
    };
    rules::check_change(&Change {
        old: current.doc(),
        new: &new,
        role: ctx.role,
        today: ctx.today,
    })?;
    Ok(Patient::from_parts(new, current.id(), version))
}

#[derive(Default)]
struct OpState {
    /// `(list, id-or-url)` of items whose identity an earlier op asserted.
    asserted: HashSet<(String, String)>,
    /// `(list, id)` of items added or replaced whole by this request (they get a default period).
    created: HashSet<(String, String)>,
}

fn apply_one(
    doc: &mut Value,
    op: &Op,
    previous: Option<&Op>,
    ctx: &mut PatchContext,
    state: &mut OpState,
) -> Result<(), PdsError> {
    if ctx.role == Role::Patient {
        super::patient_access::check(doc, op)?;
    }
    let field = op.tokens[0].as_str();
    if let Some(key) = item_key(field) {
        match check_list_op(doc, op, previous, key, ctx, state)? {
            ListOp::Skip => return Ok(()),
            ListOp::Append(v) => {
                let list = doc
                    .as_object_mut()
                    .expect("object")
                    .entry(field)
                    .or_insert_with(|| Value::Array(Vec::new()));
                if !list.is_array() {
                    *list = Value::Array(Vec::new());
                }
                list.as_array_mut().expect("array").push(v);
                return Ok(());
            }
            ListOp::Apply => {}
        }
    } else if field == "meta"
        && op.tokens.get(1).map(String::as_str) == Some("security")
        && op.kind != OpKind::Test
    {
        if !ctx.role.is_back_office() {
            return Err(PdsError::forbidden_update(
                "only the National Back Office may change a patient's confidentiality (sensitive) flag",
            ));
        }
    } else if SERVER_FIELDS.contains(&field) {
        if op.kind != OpKind::Test {
            return Err(PdsError::invalid_update(format!(
                "Update unsupported for resource - '{field}'"
            )));
        }
    } else if !SCALAR_FIELDS.contains(&field) {
        return Err(PdsError::invalid_update(format!(
            "Update unsupported for resource - '{}'",
            clip(field)
        )));
    }
    run_json_patch(doc, op, op.value.clone())
}

enum ListOp {
    /// Apply the operation as written.
    Apply,
    /// The operation only asserted an item's identity; the document does not change.
    Skip,
    /// Append this new item (with its server-assigned id) to the list.
    Append(Value),
}

/// Enforces the PDS list rules for an operation on a list field.
fn check_list_op(
    doc: &Value,
    op: &Op,
    previous: Option<&Op>,
    key: &str,
    ctx: &mut PatchContext,
    state: &mut OpState,
) -> Result<ListOp, PdsError> {
    let field = op.tokens[0].as_str();
    if op.tokens.len() == 1 {
        if op.kind == OpKind::Test {
            return Ok(ListOp::Apply);
        }
        return Err(PdsError::invalid_update(format!(
            "'/{field}' cannot be changed as a whole - add items at '/{field}/-' and change or remove them one at a time"
        )));
    }
    let index_token = op.tokens[1].as_str();
    if index_token == "-" {
        if op.kind != OpKind::Add || op.tokens.len() != 2 {
            return Err(PdsError::invalid_update(format!(
                "Invalid patch - '{}' is not a valid path",
                clip(&op.path)
            )));
        }
        let Some(Value::Object(mut item)) = op.value.clone() else {
            return Err(PdsError::invalid_value(
                &render(op.value.as_ref()),
                &format!("/{field}/-"),
            ));
        };
        if key == "id" {
            if item.contains_key("id") {
                return Err(PdsError::invalid_update(format!(
                    "'id' must not be supplied for a new '{field}' object - the server assigns it"
                )));
            }
            let id = (ctx.new_id)();
            item.insert("id".into(), Value::String(id.clone()));
            state.asserted.insert((field.to_string(), id.clone()));
            state.created.insert((field.to_string(), id));
        } else if let Some(url) = item.get("url").and_then(Value::as_str) {
            state.asserted.insert((field.to_string(), url.to_string()));
        }
        return Ok(ListOp::Append(Value::Object(item)));
    }
    let items = doc
        .get(field)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let index = parse_index(index_token).ok_or_else(|| {
        PdsError::invalid_update(format!(
            "Invalid patch - '{}' is not a valid index",
            clip(index_token)
        ))
    })?;
    if op.kind == OpKind::Add && op.tokens.len() == 2 {
        return Err(PdsError::invalid_update(format!(
            "new '{field}' objects must be added at '/{field}/-', not at '/{field}/{index}'"
        )));
    }
    let Some(item) = items.get(index) else {
        return Err(PdsError::invalid_update(format!(
            "Invalid patch - index '{index}' is out of bounds"
        )));
    };
    let current_key = item.get(key).and_then(Value::as_str).map(str::to_string);
    let root = format!("/{field}/{index}");

    // Operations on the item's identity (`/<list>/<i>/id`, or `url` for extensions).
    if op.tokens.len() == 3 && op.tokens[2] == key {
        return match op.kind {
            OpKind::Test => {
                if let (Some(Value::String(v)), Some(k)) = (&op.value, &current_key) {
                    if v == k {
                        state.asserted.insert((field.to_string(), k.clone()));
                    }
                }
                Ok(ListOp::Apply)
            }
            OpKind::Add | OpKind::Replace => {
                let claimed = op
                    .value
                    .as_ref()
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                match &current_key {
                    Some(k) if k == claimed => {
                        state.asserted.insert((field.to_string(), k.clone()));
                        Ok(ListOp::Skip)
                    }
                    _ => Err(no_such_object(field, key, claimed)),
                }
            }
            OpKind::Remove => Err(PdsError::invalid_update(format!(
                "the {key} of '{root}' cannot be removed"
            ))),
        };
    }

    match (op.kind, op.tokens.len()) {
        (OpKind::Test, 2) => {
            // A passing whole-object test asserts the item's identity.
            if op.value.as_ref() == Some(item) {
                if let Some(k) = &current_key {
                    state.asserted.insert((field.to_string(), k.clone()));
                }
            }
            Ok(ListOp::Apply)
        }
        (OpKind::Test, _) => Ok(ListOp::Apply),
        (OpKind::Remove, 2) => {
            let tested = previous.is_some_and(|p| {
                p.kind == OpKind::Test
                    && p.tokens.len() >= 2
                    && p.tokens[0] == field
                    && p.tokens[1] == index_token
                    && (p.tokens.len() == 2 || (p.tokens.len() == 3 && p.tokens[2] == key))
            });
            if !tested {
                let instead = match previous {
                    None => "it is the first item".to_string(),
                    Some(p) => format!("it is '{} {}'", p.kind.name(), clip(&p.path)),
                };
                return Err(PdsError::invalid_update(format!(
                    "removal '{root}' is not immediately preceded by equivalent test - instead {instead}"
                )));
            }
            Ok(ListOp::Apply)
        }
        (OpKind::Replace, 2) => {
            // Replacing a whole item: the new value must carry the item's own id (or url).
            let claimed = op
                .value
                .as_ref()
                .and_then(|v| v.get(key))
                .and_then(Value::as_str);
            match (claimed, &current_key) {
                (None, _) => Err(no_id_found(&root)),
                (Some(c), Some(k)) if c == k => {
                    if key == "id" {
                        state.created.insert((field.to_string(), k.clone()));
                    }
                    Ok(ListOp::Apply)
                }
                (Some(c), _) => Err(no_such_object(field, key, c)),
            }
        }
        _ => {
            // A change inside an item: its identity must have been asserted first.
            match &current_key {
                Some(k) if state.asserted.contains(&(field.to_string(), k.clone())) => {
                    Ok(ListOp::Apply)
                }
                _ => Err(no_id_found(&root)),
            }
        }
    }
}

fn no_id_found(root: &str) -> PdsError {
    PdsError::invalid_update(format!("no id or url found for path with root {root}"))
}

fn no_such_object(field: &str, key: &str, claimed: &str) -> PdsError {
    let what = if key == "url" { "url" } else { "object id" };
    PdsError::invalid_update(format!(
        "no '{field}' resources with {what} '{}'",
        clip(claimed)
    ))
}

/// RFC 6901 array index: `0` or digits without a leading zero.
fn parse_index(token: &str) -> Option<usize> {
    if token.is_empty()
        || !token.bytes().all(|b| b.is_ascii_digit())
        || (token.len() > 1 && token.starts_with('0'))
    {
        return None;
    }
    token.parse().ok()
}

fn render(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => clip(s),
        Some(other) => clip(&other.to_string()),
        None => String::new(),
    }
}

/// Runs one operation through the json-patch crate, explaining failures as PDS does.
fn run_json_patch(doc: &mut Value, op: &Op, value: Option<Value>) -> Result<(), PdsError> {
    use json_patch::jsonptr::PointerBuf;
    use json_patch::{
        AddOperation, PatchOperation, RemoveOperation, ReplaceOperation, TestOperation,
    };
    let path = PointerBuf::parse(op.path.clone()).map_err(|_| {
        PdsError::invalid_update(format!(
            "Invalid patch - '{}' is not a valid path",
            clip(&op.path)
        ))
    })?;
    let value = value.unwrap_or(Value::Null);
    let operation = match op.kind {
        OpKind::Add => PatchOperation::Add(AddOperation { path, value }),
        OpKind::Remove => PatchOperation::Remove(RemoveOperation { path }),
        OpKind::Replace => PatchOperation::Replace(ReplaceOperation { path, value }),
        OpKind::Test => PatchOperation::Test(TestOperation { path, value }),
    };
    let before_failure = explain_pointer(doc, op);
    json_patch::patch(doc, std::slice::from_ref(&operation)).map_err(|e| match e.kind {
        json_patch::PatchErrorKind::TestFailed => {
            let actual = doc
                .pointer(&op.path)
                .map(|v| render(Some(v)))
                .unwrap_or_default();
            PdsError::invalid_update(format!(
                "Invalid patch - '{actual}' is not equal to tested value '{}' at '{}'",
                render(op.value.as_ref()),
                clip(&op.path)
            ))
        }
        _ => PdsError::invalid_update(format!(
            "Invalid patch - {}",
            before_failure
                .clone()
                .unwrap_or_else(|| format!("'{}' cannot be applied", clip(&op.path)))
        )),
    })
}

/// Why a pointer cannot be applied, in the words PDS uses; `None` if it looks applicable.
fn explain_pointer(doc: &Value, op: &Op) -> Option<String> {
    let mut current = doc;
    let last = op.tokens.len() - 1;
    for (i, token) in op.tokens.iter().enumerate() {
        let is_last = i == last;
        match current {
            Value::Object(map) => match map.get(token) {
                Some(next) => current = next,
                None if is_last => {
                    return match op.kind {
                        OpKind::Add => None,
                        OpKind::Remove => Some(format!(
                            "can't remove non-existent object '{}'",
                            clip(token)
                        )),
                        OpKind::Replace => Some(format!(
                            "can't replace non-existent object '{}'",
                            clip(token)
                        )),
                        OpKind::Test => {
                            Some(format!("can't test non-existent object '{}'", clip(token)))
                        }
                    };
                }
                None => {
                    let next = &op.tokens[i + 1];
                    return Some(if parse_index(next).is_some() {
                        format!("index '{next}' is out of bounds")
                    } else {
                        format!("member '{}' not found", clip(token))
                    });
                }
            },
            Value::Array(items) => {
                if is_last && token == "-" && op.kind == OpKind::Add {
                    return None;
                }
                let Some(index) = parse_index(token) else {
                    return Some(format!("'{}' is not a valid index", clip(token)));
                };
                let limit = if is_last && op.kind == OpKind::Add {
                    items.len() + 1
                } else {
                    items.len()
                };
                if index >= limit {
                    return Some(if is_last && op.kind == OpKind::Remove {
                        format!("can't remove non-existent object '{index}'")
                    } else {
                        format!("index '{index}' is out of bounds")
                    });
                }
                match items.get(index) {
                    Some(next) => current = next,
                    None => return None,
                }
            }
            _ => return Some(format!("'{}' does not exist", clip(&op.path))),
        }
    }
    None
}

/// Items added or replaced whole without a period start today (PDS period rules).
pub(crate) fn default_periods(
    doc: &mut Map<String, Value>,
    created: &HashSet<(String, String)>,
    today: Date,
) {
    if created.is_empty() {
        return;
    }
    let today = format!(
        "{:04}-{:02}-{:02}",
        today.year(),
        u8::from(today.month()),
        today.day()
    );
    for (field, _) in patient::LIST_FIELDS {
        let Some(Value::Array(items)) = doc.get_mut(field) else {
            continue;
        };
        for item in items.iter_mut() {
            let Some(id) = item.get("id").and_then(Value::as_str) else {
                continue;
            };
            if !created.contains(&(field.to_string(), id.to_string())) {
                continue;
            }
            let holder = if field == "generalPractitioner" {
                item.get_mut("identifier")
            } else {
                Some(item)
            };
            if let Some(Value::Object(h)) = holder {
                if !h.contains_key("period") {
                    let mut p = Map::new();
                    p.insert("start".into(), Value::String(today.clone()));
                    h.insert("period".into(), Value::Object(p));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::outcome::ErrorCode;
    use serde_json::json;
    use time::macros::date;

    const TODAY: Date = date!(2026 - 11 - 27);
    const DEATH_SYSTEM: &str = "https://fhir.hl7.org.uk/CodeSystem/UKCore-DeathNotificationStatus";

    fn schemas() -> &'static Schemas {
        static S: std::sync::OnceLock<Schemas> = std::sync::OnceLock::new();
        S.get_or_init(Schemas::compile)
    }

    fn record() -> Patient {
        let doc = json!({
            "resourceType": "Patient", "id": "9000000009",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}],
            "meta": {"versionId": "3", "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "U", "display": "unrestricted"}]},
            "name": [{"id": "N1", "use": "usual", "period": {"start": "2010-01-01"}, "given": ["Ada", "Mary"], "family": "Lovelace", "prefix": ["Mrs"]},
                     {"id": "N2", "use": "maiden", "family": "Byron"}],
            "gender": "female",
            "birthDate": "1990-12-10",
            "address": [{"id": "A1", "use": "home", "period": {"start": "2015-01-01"}, "line": ["1 Example Road", "Leeds"], "postalCode": "LS1 1AA"}],
            "telecom": [{"id": "T1", "system": "phone", "use": "home", "value": "01632960001", "period": {"start": "2015-01-01"}}],
            "generalPractitioner": [{"id": "G1", "type": "Organization", "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y12345", "period": {"start": "2015-01-01"}}}]
        });
        Patient::parse(doc, schemas(), TODAY).unwrap()
    }

    /// A PATCH by `role`; back-office ones carry a reason, as corrections must.
    fn patch_as(p: &Patient, role: Role, ops: Value) -> Result<Patient, PdsError> {
        let body = if role.is_back_office() {
            json!({ "patches": ops, "reason": "unit test correction" })
        } else {
            json!({ "patches": ops })
        };
        patch_body(p, role, body)
    }

    fn patch_body(p: &Patient, role: Role, body: Value) -> Result<Patient, PdsError> {
        let req = PatchRequest::parse(&body, schemas())?;
        let mut n = 0;
        let mut new_id = || {
            n += 1;
            format!("NEW{n}")
        };
        let mut ctx = PatchContext {
            role,
            today: TODAY,
            new_id: &mut new_id,
        };
        apply(p, &req, &mut ctx, schemas())
    }

    fn patch(p: &Patient, ops: Value) -> Result<Patient, PdsError> {
        patch_as(p, Role::HealthcareWorker, ops)
    }

    #[test]
    fn patient_access_changes_only_what_its_table_allows() {
        let p = record();
        let mobile = json!({"system": "phone", "use": "mobile", "value": "07700900123"});
        let after = patch_as(
            &p,
            Role::Patient,
            json!([{"op": "add", "path": "/telecom/-", "value": mobile}]),
        )
        .unwrap();
        assert_eq!(after.doc()["telecom"][1]["value"], "07700900123");
        for ops in [
            json!([{"op": "replace", "path": "/gender", "value": "male"}]),
            json!([{"op": "test", "path": "/telecom/0/id", "value": "T1"},
                   {"op": "remove", "path": "/telecom/0"}]),
            json!([{"op": "test", "path": "/address/0/id", "value": "A1"},
                   {"op": "replace", "path": "/address/0/postalCode", "value": "LS2 2AA"}]),
        ] {
            let e = patch_as(&p, Role::Patient, ops.clone()).unwrap_err();
            assert_eq!(
                (e.code, e.diagnostics.as_deref()),
                (
                    ErrorCode::InvalidUpdate,
                    Some("Invalid update with error - This user does not have permission to update the fields in the patches provided.")
                ),
                "{ops}"
            );
            // a healthcare worker may make the same change
            assert!(patch(&p, ops.clone()).is_ok(), "{ops}");
        }
    }

    fn err(p: &Patient, ops: Value) -> (ErrorCode, String) {
        let e = patch(p, ops).unwrap_err();
        (e.code, e.diagnostics.unwrap_or_default())
    }

    fn death(code: &str) -> Value {
        json!({"url": crate::domain::patient::DEATH_NOTIFICATION_URL, "extension": [{"url": "deathNotificationStatus",
            "valueCodeableConcept": {"coding": [{"system": DEATH_SYSTEM, "version": "1.0.0", "code": code}]}}]})
    }

    #[test]
    fn simple_replace_bumps_version() {
        let p = patch(
            &record(),
            json!([{"op": "replace", "path": "/gender", "value": "male"}]),
        )
        .unwrap();
        assert_eq!(p.version().get(), 4);
        assert_eq!(p.doc()["gender"], "male");
        assert_eq!(p.doc()["meta"]["versionId"], "4");
    }

    #[test]
    fn body_shapes() {
        let s = schemas();
        assert!(PatchRequest::parse(&json!([{"op": "remove", "path": "/gender"}]), s).is_ok());
        for empty in [json!({}), json!({"patches": []}), json!([]), json!("x")] {
            let e = PatchRequest::parse(&empty, s).unwrap_err();
            assert_eq!(
                e.diagnostics.unwrap(),
                "Invalid update with error - No patches found",
                "{empty}"
            );
        }
        let e = PatchRequest::parse(
            &json!({"patches": [{"op": "bad_value", "path": "/gender"}]}),
            s,
        )
        .unwrap_err();
        assert_eq!(
            (e.code, e.diagnostics.unwrap().as_str()),
            (
                ErrorCode::InvalidValue,
                "Invalid value - 'bad_value' in field '0/op'"
            )
        );
        let e = PatchRequest::parse(
            &json!({"patches": [{"op": "remove", "path": "/gender", "value": "x"}]}),
            s,
        )
        .unwrap_err();
        assert_eq!(
            e.diagnostics.unwrap(),
            "Invalid update with error - 'value' must be omitted on a 'remove' operation (patch 0)"
        );
        let e = PatchRequest::parse(&json!({"patches": [{"op": "add", "path": "/gender"}]}), s)
            .unwrap_err();
        assert_eq!(
            (e.code, e.diagnostics.unwrap().as_str()),
            (ErrorCode::MissingValue, "Missing value - '0/value'")
        );
        let req = PatchRequest::parse(&json!({"patches": [{"op": "test", "path": "/a~1b/~0c", "value": 1}], "correction": true, "reason": "typo"}), s).unwrap();
        assert_eq!(req.ops[0].tokens, vec!["a/b", "~c"]);
        assert_eq!(req.reason.as_deref(), Some("typo"));
    }

    #[test]
    fn unknown_and_server_fields() {
        let (code, msg) = err(
            &record(),
            json!([{"op": "add", "path": "/pets", "value": "cat"}]),
        );
        assert_eq!(
            (code, msg.as_str()),
            (
                ErrorCode::InvalidUpdate,
                "Invalid update with error - Update unsupported for resource - 'pets'"
            )
        );
        for path in [
            "/id",
            "/identifier/0/value",
            "/meta/versionId",
            "/resourceType",
        ] {
            let (code, _) = err(
                &record(),
                json!([{"op": "replace", "path": path, "value": "9000000017"}]),
            );
            assert_eq!(code, ErrorCode::InvalidUpdate, "{path}");
        }
        // a test of a server field is only a read
        patch(&record(), json!([{"op": "test", "path": "/id", "value": "9000000009"}, {"op": "replace", "path": "/gender", "value": "male"}])).unwrap();
    }

    #[test]
    fn new_items_only_at_dash_with_server_id_and_default_period() {
        let p = patch(&record(), json!([{"op": "add", "path": "/name/-", "value": {"use": "nickname", "family": "Countess"}}])).unwrap();
        let n = &p.doc()["name"][2];
        assert_eq!(n["id"], "NEW1");
        assert_eq!(n["period"]["start"], "2026-11-27");

        let (code, msg) = err(
            &record(),
            json!([{"op": "add", "path": "/name/0", "value": {"use": "nickname", "family": "X"}}]),
        );
        assert_eq!(code, ErrorCode::InvalidUpdate);
        assert!(msg.contains("'/name/-'"), "{msg}");

        let (code, msg) = err(
            &record(),
            json!([{"op": "add", "path": "/name/-", "value": {"id": "mine", "use": "nickname", "family": "X"}}]),
        );
        assert_eq!(code, ErrorCode::InvalidUpdate);
        assert!(msg.contains("server assigns"), "{msg}");
    }

    #[test]
    fn first_item_of_an_absent_list() {
        let mut doc = record().into_value();
        doc.as_object_mut().unwrap().remove("telecom");
        let p = Patient::parse(doc, schemas(), TODAY).unwrap();
        let p = patch(&p, json!([{"op": "add", "path": "/telecom/-", "value": {"system": "email", "use": "home", "value": "ada@example.com"}}])).unwrap();
        assert_eq!(p.doc()["telecom"][0]["value"], "ada@example.com");
    }

    #[test]
    fn edits_inside_items_need_the_id() {
        let (code, msg) = err(
            &record(),
            json!([{"op": "replace", "path": "/address/0/line/0", "value": "2 Example Road"}]),
        );
        assert_eq!(
            (code, msg.as_str()),
            (
                ErrorCode::InvalidUpdate,
                "Invalid update with error - no id or url found for path with root /address/0"
            )
        );

        let (_, msg) = err(
            &record(),
            json!([{"op": "replace", "path": "/address/0/id", "value": "123456"}, {"op": "replace", "path": "/address/0/line/0", "value": "x"}]),
        );
        assert_eq!(
            msg,
            "Invalid update with error - no 'address' resources with object id '123456'"
        );

        let p = patch(&record(), json!([{"op": "replace", "path": "/address/0/id", "value": "A1"}, {"op": "replace", "path": "/address/0/line/0", "value": "2 Example Road"}])).unwrap();
        assert_eq!(p.doc()["address"][0]["line"][0], "2 Example Road");
        assert_eq!(p.doc()["address"][0]["id"], "A1");
        // sub-value edits keep the original period start
        assert_eq!(p.doc()["address"][0]["period"]["start"], "2015-01-01");

        patch(&record(), json!([{"op": "test", "path": "/name/0/id", "value": "N1"}, {"op": "add", "path": "/name/0/given/0", "value": "Rose"}])).unwrap();
        let (_, msg) = err(
            &record(),
            json!([{"op": "add", "path": "/name/0/given/-", "value": "Rose"}]),
        );
        assert!(
            msg.contains("no id or url found for path with root /name/0"),
            "{msg}"
        );
    }

    #[test]
    fn whole_item_replace_must_keep_id() {
        let v = json!({"use": "home", "line": ["3 Example Road"], "postalCode": "LS2 2BB"});
        let (_, msg) = err(
            &record(),
            json!([{"op": "replace", "path": "/address/0", "value": v}]),
        );
        assert_eq!(
            msg,
            "Invalid update with error - no id or url found for path with root /address/0"
        );
        let mut with_id = v.clone();
        with_id["id"] = json!("A1");
        let p = patch(
            &record(),
            json!([{"op": "replace", "path": "/address/0", "value": with_id}]),
        )
        .unwrap();
        assert_eq!(p.doc()["address"][0]["period"]["start"], "2026-11-27");
    }

    #[test]
    fn removal_must_follow_a_test() {
        let (_, msg) = err(&record(), json!([{"op": "remove", "path": "/name/1"}]));
        assert_eq!(msg, "Invalid update with error - removal '/name/1' is not immediately preceded by equivalent test - instead it is the first item");
        let (_, msg) = err(
            &record(),
            json!([{"op": "test", "path": "/name/1/id", "value": "N2"}, {"op": "replace", "path": "/gender", "value": "male"}, {"op": "remove", "path": "/name/1"}]),
        );
        assert!(msg.contains("instead it is 'replace /gender'"), "{msg}");
        // a test of another item does not count
        let (_, msg) = err(
            &record(),
            json!([{"op": "test", "path": "/name/0/id", "value": "N1"}, {"op": "remove", "path": "/name/1"}]),
        );
        assert!(msg.contains("removal '/name/1'"), "{msg}");

        let p = patch(&record(), json!([{"op": "test", "path": "/name/1/id", "value": "N2"}, {"op": "remove", "path": "/name/1"}])).unwrap();
        assert_eq!(p.doc()["name"].as_array().unwrap().len(), 1);
        let whole = record().doc()["name"][1].clone();
        patch(&record(), json!([{"op": "test", "path": "/name/1", "value": whole}, {"op": "remove", "path": "/name/1"}])).unwrap();
    }

    #[test]
    fn test_values_are_compared() {
        let (code, msg) = err(
            &record(),
            json!([{"op": "test", "path": "/name/1/id", "value": "WRONG"}, {"op": "remove", "path": "/name/1"}]),
        );
        assert_eq!(code, ErrorCode::InvalidUpdate);
        assert!(
            msg.contains("is not equal to tested value 'WRONG'"),
            "{msg}"
        );
        let (_, msg) = err(
            &record(),
            json!([{"op": "test", "path": "/gender", "value": "male"}]),
        );
        assert!(
            msg.contains("'female' is not equal to tested value 'male'"),
            "{msg}"
        );
    }

    #[test]
    fn pointer_errors_in_pds_words() {
        let (_, msg) = err(
            &record(),
            json!([{"op": "replace", "path": "/address/1/id", "value": "A1"}]),
        );
        assert_eq!(
            msg,
            "Invalid update with error - Invalid patch - index '1' is out of bounds"
        );
        let (_, msg) = err(
            &record(),
            json!([{"op": "test", "path": "/address/0/id", "value": "A1"}, {"op": "replace", "path": "/address/0/text", "value": "Second Home"}]),
        );
        assert_eq!(
            msg,
            "Invalid update with error - Invalid patch - can't replace non-existent object 'text'"
        );
        let (_, msg) = err(
            &record(),
            json!([{"op": "test", "path": "/address/0/id", "value": "A1"}, {"op": "remove", "path": "/address/0/line/5"}]),
        );
        assert_eq!(
            msg,
            "Invalid update with error - Invalid patch - can't remove non-existent object '5'"
        );
        let (_, msg) = err(
            &record(),
            json!([{"op": "remove", "path": "/multipleBirthInteger"}]),
        );
        assert!(
            msg.contains("can't remove non-existent object 'multipleBirthInteger'"),
            "{msg}"
        );
    }

    #[test]
    fn all_or_nothing() {
        let before = record();
        let e = patch(
            &before,
            json!([{"op": "replace", "path": "/gender", "value": "male"}, {"op": "replace", "path": "/birthDate", "value": "bad"}]),
        );
        assert!(e.is_err());
        assert_eq!(before.doc()["gender"], "female");
    }

    #[test]
    fn name_rules() {
        let (code, msg) = err(
            &record(),
            json!([{"op": "add", "path": "/name/-", "value": {"use": "usual", "family": "Other"}}]),
        );
        assert_eq!(
            (code, msg.as_str()),
            (
                ErrorCode::ForbiddenUpdate,
                "Forbidden update with error - multiple usual names cannot be added"
            )
        );
        let whole = record().doc()["name"][0].clone();
        let (code, msg) = err(
            &record(),
            json!([{"op": "test", "path": "/name/0", "value": whole}, {"op": "remove", "path": "/name/0"}]),
        );
        assert_eq!(
            (code, msg.as_str()),
            (
                ErrorCode::ForbiddenUpdate,
                "Forbidden update with error - not permitted to remove usual name"
            )
        );
        let (code, _) = err(
            &record(),
            json!([{"op": "test", "path": "/name/1/id", "value": "N2"}, {"op": "replace", "path": "/name/1/use", "value": "old"}]),
        );
        assert_eq!(code, ErrorCode::InvalidUpdate);
        let (code, _) = err(
            &record(),
            json!([{"op": "add", "path": "/name/-", "value": {"use": "nickname", "family": "A"}}, {"op": "add", "path": "/name/-", "value": {"use": "nickname", "family": "B"}}]),
        );
        assert_eq!(code, ErrorCode::InvalidUpdate);
        let (code, _) = err(
            &record(),
            json!([{"op": "test", "path": "/name/0/id", "value": "N1"}, {"op": "replace", "path": "/name/0/family", "value": "L0v3l@ce"}]),
        );
        assert_eq!(code, ErrorCode::UnsupportedCharacters);
        let p = patch(&record(), json!([{"op": "test", "path": "/name/0/id", "value": "N1"}, {"op": "replace", "path": "/name/0/prefix/0", "value": "Dr."}])).unwrap();
        assert_eq!(p.doc()["name"][0]["prefix"][0], "Dr");
    }

    #[test]
    fn gender_and_birth_date_rules() {
        let (code, msg) = err(&record(), json!([{"op": "remove", "path": "/gender"}]));
        assert_eq!(
            (code, msg.as_str()),
            (
                ErrorCode::ForbiddenUpdate,
                "Forbidden update with error - source not permitted to remove 'gender'"
            )
        );
        let (code, msg) = err(&record(), json!([{"op": "remove", "path": "/birthDate"}]));
        assert_eq!(
            (code, msg.as_str()),
            (
                ErrorCode::ForbiddenUpdate,
                "Forbidden update with error - source not permitted to remove 'birthDate'"
            )
        );
        let (code, msg) = err(
            &record(),
            json!([{"op": "replace", "path": "/gender", "value": "other"}]),
        );
        assert_eq!(
            (code, msg.as_str()),
            (
                ErrorCode::InvalidValue,
                "Invalid value - 'other' in field 'gender'"
            )
        );
        let (code, msg) = err(
            &record(),
            json!([{"op": "replace", "path": "/gender", "value": "mal"}]),
        );
        assert_eq!(
            (code, msg.as_str()),
            (
                ErrorCode::InvalidValue,
                "Invalid value - 'mal' in field 'gender'"
            )
        );
        let (code, msg) = err(
            &record(),
            json!([{"op": "replace", "path": "/birthDate", "value": "2027-01-01"}]),
        );
        assert_eq!(
            (code, msg.as_str()),
            (
                ErrorCode::InvalidValue,
                "Invalid value - '2027-01-01' in field 'birthDate'"
            )
        );
        let (code, _) = err(
            &record(),
            json!([{"op": "replace", "path": "/birthDate", "value": "1990-02-30"}]),
        );
        assert_eq!(code, ErrorCode::InvalidValue);
    }

    #[test]
    fn death_rules() {
        let add = |date: &str, code: &str| json!([{"op": "add", "path": "/extension/-", "value": death(code)}, {"op": "add", "path": "/deceasedDateTime", "value": date}]);
        let p = patch(&record(), add("2024-05-01T00:00:00+00:00", "1")).unwrap();
        assert_eq!(p.doc()["deceasedDateTime"], "2024-05-01T00:00:00+00:00");
        let p2 = patch(&record(), add("2024-05-01T00:00:00", "1")).unwrap();
        assert_eq!(p2.doc()["deceasedDateTime"], "2024-05-01T00:00:00+00:00");

        let (code, msg) = err(&record(), add("2024-05-01T00:00:00+01:00", "1"));
        assert_eq!(
            (code, msg.as_str()),
            (
                ErrorCode::InvalidValue,
                "Invalid value - '2024-05-01T00:00:00+01:00' in field 'deceasedDateTime'"
            )
        );
        let (code, _) = err(
            &record(),
            json!([{"op": "add", "path": "/deceasedDateTime", "value": "2024-05-01T00:00:00+00:00"}]),
        );
        assert_eq!(code, ErrorCode::InvalidUpdate);
        let (code, _) = err(
            &record(),
            json!([{"op": "add", "path": "/extension/-", "value": death("1")}]),
        );
        assert_eq!(code, ErrorCode::InvalidUpdate);
        let (code, _) = err(&record(), add("1980-01-01T00:00:00+00:00", "1"));
        assert_eq!(code, ErrorCode::InvalidUpdate, "death before birth");
        let (code, _) = err(&record(), add("2030-01-01T00:00:00+00:00", "1"));
        assert_eq!(code, ErrorCode::InvalidValue, "death in the future");
        let (code, msg) = err(&record(), add("2024-05-01T00:00:00+00:00", "2"));
        assert_eq!(code, ErrorCode::ForbiddenUpdate, "{msg}");
        let (code, _) = err(&record(), add("2024-05-01T00:00:00+00:00", "U"));
        assert_eq!(code, ErrorCode::UnsupportedValue);

        // informal: replaceable, not removable
        patch(&p, json!([{"op": "replace", "path": "/deceasedDateTime", "value": "2024-05-02T00:00:00+00:00"}])).unwrap();
        let (code, _) = err(&p, json!([{"op": "remove", "path": "/deceasedDateTime"}]));
        assert_eq!(code, ErrorCode::ForbiddenUpdate);
        let (code, _) = err(
            &p,
            json!([{"op": "test", "path": "/extension/0/url", "value": crate::domain::patient::DEATH_NOTIFICATION_URL}, {"op": "remove", "path": "/extension/0"}]),
        );
        assert_eq!(code, ErrorCode::ForbiddenUpdate);

        // formal: back office sets it; nobody else may change it
        let formal = patch_as(
            &record(),
            Role::BackOffice,
            add("2024-05-01T00:00:00+00:00", "2"),
        )
        .unwrap();
        let (code, _) = err(
            &formal,
            json!([{"op": "replace", "path": "/deceasedDateTime", "value": "2024-05-02T00:00:00+00:00"}]),
        );
        assert_eq!(code, ErrorCode::ForbiddenUpdate);
    }

    #[test]
    fn address_and_telecom_rules() {
        let (code, _) = err(
            &record(),
            json!([{"op": "add", "path": "/address/-", "value": {"use": "home", "line": ["2 Road"], "postalCode": "LS1 2AA"}}]),
        );
        assert_eq!(code, ErrorCode::InvalidUpdate, "second home address");
        let (code, _) = err(
            &record(),
            json!([{"op": "add", "path": "/address/-", "value": {"use": "work", "line": ["2 Road"], "postalCode": "LS1 2AA"}}]),
        );
        assert_eq!(code, ErrorCode::InvalidUpdate, "work address");
        let (code, msg) = err(
            &record(),
            json!([{"op": "add", "path": "/address/-", "value": {"use": "temp", "text": "Second Home", "line": ["2 Road"], "postalCode": "LS1 2AA"}}]),
        );
        assert_eq!(
            (code, msg.as_str()),
            (
                ErrorCode::MissingValue,
                "Missing value - 'address/1/period/end'"
            )
        );
        patch(&record(), json!([{"op": "add", "path": "/address/-", "value": {"use": "temp", "text": "Second Home", "period": {"start": "2026-11-01", "end": "2027-01-01"}, "line": ["2 Road", "", "Leeds"], "postalCode": "LS1 2AA"}}]))
            .map(|p| assert_eq!(p.doc()["address"][1]["line"], json!(["2 Road", "Leeds"])))
            .unwrap();
        let (code, _) = err(
            &record(),
            json!([{"op": "add", "path": "/address/-", "value": {"use": "temp", "text": "Second Home", "period": {"start": "2027-11-01", "end": "2028-01-01"}, "postalCode": "LS1 2AA"}}]),
        );
        assert_eq!(code, ErrorCode::InvalidValue, "period start in the future");

        let (code, _) = err(
            &record(),
            json!([{"op": "add", "path": "/telecom/-", "value": {"system": "phone", "use": "home", "value": "01632960002"}}]),
        );
        assert_eq!(code, ErrorCode::InvalidUpdate, "second home phone");
        let (code, _) = err(
            &record(),
            json!([{"op": "add", "path": "/telecom/-", "value": {"system": "email", "use": "home", "value": "not-an-email"}}]),
        );
        assert_eq!(code, ErrorCode::InvalidValue);
        let (code, _) = err(
            &record(),
            json!([{"op": "test", "path": "/telecom/0/id", "value": "T1"}, {"op": "replace", "path": "/telecom/0/use", "value": "mobile"}]),
        );
        assert_eq!(code, ErrorCode::InvalidUpdate, "telecom use is fixed");
    }

    #[test]
    fn gp_rules() {
        // only the back office corrects GP registration
        let (code, msg) = err(
            &record(),
            json!([{"op": "test", "path": "/generalPractitioner/0/id", "value": "G1"}, {"op": "remove", "path": "/generalPractitioner/0"}]),
        );
        assert_eq!((code, msg.as_str()), (ErrorCode::ForbiddenUpdate, "Forbidden update with error - source not permitted to remove 'generalPractitioner'"));
        let (code, msg) = err(
            &record(),
            json!([{"op": "test", "path": "/generalPractitioner/0/id", "value": "G1"}, {"op": "replace", "path": "/generalPractitioner/0/identifier/value", "value": "Y54321"}]),
        );
        assert_eq!((code, msg.as_str()), (ErrorCode::ForbiddenUpdate, "Forbidden update with error - source not permitted to update 'generalPractitioner'"));
        let bo = |ops: Value| patch_as(&record(), Role::BackOffice, ops);
        let moved = bo(json!([{"op": "test", "path": "/generalPractitioner/0/id", "value": "G1"}, {"op": "replace", "path": "/generalPractitioner/0/identifier/value", "value": "Y54321"}])).unwrap();
        assert_eq!(
            moved.doc()["generalPractitioner"][0]["identifier"]["value"],
            "Y54321"
        );
        bo(json!([{"op": "test", "path": "/generalPractitioner/0/id", "value": "G1"}, {"op": "remove", "path": "/generalPractitioner/0"}])).unwrap();
        // ODS code format and no end date, for the back office too
        assert_eq!(bo(json!([{"op": "test", "path": "/generalPractitioner/0/id", "value": "G1"}, {"op": "add", "path": "/generalPractitioner/0/identifier/period/end", "value": "2026-01-01"}])).unwrap_err().code, ErrorCode::InvalidValue);
        assert_eq!(bo(json!([{"op": "test", "path": "/generalPractitioner/0/id", "value": "G1"}, {"op": "replace", "path": "/generalPractitioner/0/identifier/value", "value": "y1"}])).unwrap_err().code, ErrorCode::InvalidValue);
    }

    #[test]
    fn extensions_are_asserted_by_url() {
        let p = patch(&record(), json!([{"op": "add", "path": "/extension/-", "value": {"url": crate::domain::patient::PHARMACY_URLS[0],
            "valueReference": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "FA123"}}}}])).unwrap();
        let (_, msg) = err(
            &p,
            json!([{"op": "replace", "path": "/extension/0/valueReference/identifier/value", "value": "FB456"}]),
        );
        assert_eq!(
            msg,
            "Invalid update with error - no id or url found for path with root /extension/0"
        );
        let p2 = patch(&p, json!([{"op": "test", "path": "/extension/0/url", "value": crate::domain::patient::PHARMACY_URLS[0]},
            {"op": "replace", "path": "/extension/0/valueReference/identifier/value", "value": "FB456"}])).unwrap();
        assert_eq!(
            p2.doc()["extension"][0]["valueReference"]["identifier"]["value"],
            "FB456"
        );
        let (code, _) = err(
            &p,
            json!([{"op": "add", "path": "/extension/-", "value": p.doc()["extension"][0].clone()}]),
        );
        assert_eq!(code, ErrorCode::TooManyValues);
    }

    #[test]
    fn corrections_need_a_reason() {
        let flag = json!([{"op": "replace", "path": "/meta/security/0/code", "value": "R"}]);
        let e = patch_body(&record(), Role::BackOffice, json!({ "patches": flag })).unwrap_err();
        assert_eq!(
            (e.code, e.diagnostics.unwrap().as_str()),
            (ErrorCode::MissingValue, "Missing value - 'reason'")
        );
        let e = patch_body(
            &record(),
            Role::BackOffice,
            json!({ "patches": flag, "reason": "  " }),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::MissingValue);
        // an ordinary back-office edit needs none
        patch_body(
            &record(),
            Role::BackOffice,
            json!({"patches": [{"op": "replace", "path": "/gender", "value": "male"}]}),
        )
        .unwrap();
        // classification
        let before = record();
        let after = patch_as(&before, Role::BackOffice, flag).unwrap();
        assert_eq!(
            classify(&before, &after, &[], Role::BackOffice),
            Operation::Flag
        );
    }

    #[test]
    fn back_office_removes_a_wrong_death_with_its_status() {
        let add = json!([{"op": "add", "path": "/extension/-", "value": death("1")}, {"op": "add", "path": "/deceasedDateTime", "value": "2024-05-01T00:00:00+00:00"}]);
        let dead = patch(&record(), add).unwrap();
        let remove_both = json!([{"op": "test", "path": "/extension/0/url", "value": crate::domain::patient::DEATH_NOTIFICATION_URL},
            {"op": "remove", "path": "/extension/0"}, {"op": "remove", "path": "/deceasedDateTime"}]);
        let alive = patch_as(&dead, Role::BackOffice, remove_both.clone()).unwrap();
        assert!(
            alive.doc().get("deceasedDateTime").is_none() && alive.doc().get("extension").is_none()
        );
        assert_eq!(
            classify(&dead, &alive, &[], Role::BackOffice),
            Operation::DeathCorrection
        );
        // the date alone cannot go: date and status are removed together
        let (code, _) = (
            patch_as(
                &dead,
                Role::BackOffice,
                json!([{"op": "remove", "path": "/deceasedDateTime"}]),
            )
            .unwrap_err()
            .code,
            (),
        );
        assert_eq!(code, ErrorCode::InvalidUpdate);
        // a healthcare worker may not remove it
        assert_eq!(
            patch(&dead, remove_both).unwrap_err().code,
            ErrorCode::ForbiddenUpdate
        );
    }

    #[test]
    fn sensitive_records_and_flag() {
        let p = patch_as(
            &record(),
            Role::BackOffice,
            json!([{"op": "replace", "path": "/meta/security/0/code", "value": "R"},
            {"op": "replace", "path": "/meta/security/0/display", "value": "restricted"}]),
        )
        .unwrap();
        assert!(p.is_restricted());
        let (code, _) = err(
            &p,
            json!([{"op": "replace", "path": "/gender", "value": "male"}]),
        );
        assert_eq!(code, ErrorCode::ForbiddenUpdate);
        let (code, _) = err(
            &record(),
            json!([{"op": "replace", "path": "/meta/security/0/code", "value": "R"}]),
        );
        assert_eq!(code, ErrorCode::ForbiddenUpdate);
    }
}
