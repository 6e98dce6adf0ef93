//! `GET /metadata`: the FHIR R4 CapabilityStatement, and `GET /OperationDefinition/{id}` for
//! each `$` operation.
//!
//! Both are derived from the OpenAPI document (itself generated from the handlers' annotations)
//! and the operations' signature table ([`crate::domain::operation`]), never kept by hand: a
//! route added to the router and its documentation appears here as an interaction, a search
//! parameter documented on a search route as a `searchParam`.

use std::sync::OnceLock;

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::headers::RequestId;
use super::openapi::{self, docs};
use super::render::fhir;
use super::AppState;
use crate::domain::operation::{self, Signature};
use crate::domain::ErrorCode;

/// What a route is, in FHIR terms.
#[derive(Debug, PartialEq)]
enum Route<'a> {
    /// A RESTful interaction on a resource type (`read`, `vread`, `patch`, `search-type`…).
    Interaction(&'a str, &'static str),
    /// `$code` on a resource type.
    Operation(&'a str, &'a str),
    /// `/<Type>/{id}/<Other>`: `Other` resources in the compartment of `Type`.
    Compartment(&'a str, &'a str),
}

/// Classifies an OpenAPI path and method. Paths starting with `_` (`/_ping`, `/_audit`) and
/// `/metadata` are not FHIR interactions.
fn route<'a>(path: &'a str, method: &str) -> Option<Route<'a>> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let resource = *segments.first()?;
    if !resource.starts_with(|c: char| c.is_ascii_uppercase()) {
        return None;
    }
    let interaction = |code| Some(Route::Interaction(resource, code));
    match (&segments[1..], method) {
        ([], "get") => interaction("search-type"),
        ([], "post") => interaction("create"),
        ([op], "post") if op.starts_with('$') => Some(Route::Operation(resource, &op[1..])),
        // `$export`: the Bulk Data IG's operation, declared by its own canonical definition
        ([op], "get") if op.starts_with('$') => None,
        (["{id}"], "get") => interaction("read"),
        (["{id}"], "patch") => interaction("patch"),
        (["{id}"], "put") => interaction("update"),
        (["{id}", "_history"], "get") => interaction("history-instance"),
        (["{id}", "_history", "{vid}"], "get") => interaction("vread"),
        (["{id}", other], "get") => Some(Route::Compartment(resource, other)),
        // a fixed instance (`/CodeSystem/case-kind`)
        ([_], "get") => interaction("read"),
        _ => None,
    }
}

/// The FHIR type of a search parameter: by name for the ones whose FHIR type the OpenAPI
/// schema cannot tell (references, tokens held in strings), else from the schema.
fn search_type(name: &str, schema: &Value) -> &'static str {
    const REFERENCES: [&str; 7] = [
        "general-practitioner",
        "patient",
        "recipient",
        "about",
        "owner",
        "requester",
        "entity",
    ];
    const TOKENS: [&str; 5] = ["gender", "email", "phone", "status", "code"];
    const DATES: [&str; 2] = ["birthdate", "death-date"];
    if REFERENCES.contains(&name) {
        return "reference";
    }
    if TOKENS.contains(&name) || schema.get("enum").is_some() || schema.get("$ref").is_some() {
        return "token";
    }
    if DATES.contains(&name) {
        return "date";
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("boolean") => "token",
        Some("integer" | "number") => "number",
        _ => "string",
    }
}

/// FHIR's result parameters: they shape an answer rather than select records, so they are no
/// `searchParam`.
const RESULT_PARAMETERS: [&str; 5] = ["_count", "_sort", "_summary", "_elements", "_format"];

/// The `$` operations' definitions, keyed by id (`Patient-merge`).
fn definition_id(resource: &str, code: &str) -> String {
    format!("{resource}-{code}")
}

fn pascal(s: &str) -> String {
    s.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The process start, as the statement's `date` (it describes this running server).
fn started() -> &'static str {
    static STARTED: OnceLock<String> = OnceLock::new();
    STARTED.get_or_init(|| {
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("a UTC time formats")
    })
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The CapabilityStatement of a server whose FHIR base is `base`.
pub fn capability_statement(base: &str) -> Value {
    let doc = openapi::document();
    // by type, in the order first met (serde_json keeps insertion order here)
    let mut resources: Map<String, Value> = Map::new();
    let mut compartments: Vec<String> = Vec::new();
    fn entry<'r>(resources: &'r mut Map<String, Value>, name: &str) -> &'r mut Map<String, Value> {
        resources
            .entry(name)
            .or_insert_with(|| json!({"type": name}))
            .as_object_mut()
            .expect("a resource entry is an object")
    }
    let paths = doc["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let Some(route) = route(path, method) else {
                continue;
            };
            match route {
                Route::Interaction(resource, code) => {
                    let e = entry(&mut resources, resource);
                    push(
                        e,
                        "interaction",
                        json!({"code": code, "documentation": op["summary"]}),
                    );
                    if code == "search-type" {
                        for p in op["parameters"].as_array().into_iter().flatten() {
                            let name = p["name"].as_str().unwrap_or_default();
                            if p["in"] != "query" || RESULT_PARAMETERS.contains(&name) {
                                continue;
                            }
                            let mut sp =
                                json!({"name": name, "type": search_type(name, &p["schema"])});
                            if let Some(d) = p["description"].as_str() {
                                sp["documentation"] = json!(d);
                            }
                            push(e, "searchParam", sp);
                        }
                    }
                    if code == "patch" {
                        e.insert("versioning".into(), json!("versioned-update"));
                        e.insert("updateCreate".into(), json!(false));
                    }
                    if code == "vread" {
                        e.insert("readHistory".into(), json!(true));
                    }
                    let conditional_read = op["parameters"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|p| p["in"] == "header" && p["name"] == "If-None-Match");
                    if code == "read" && conditional_read {
                        e.insert("conditionalRead".into(), json!("not-match"));
                    }
                }
                Route::Operation(resource, code) => {
                    let e = entry(&mut resources, resource);
                    push(
                        e,
                        "operation",
                        json!({"name": code,
                        "definition": format!("{base}/OperationDefinition/{}", definition_id(resource, code)),
                        "documentation": op["summary"]}),
                    );
                }
                Route::Compartment(owner, member) => {
                    let e = entry(&mut resources, member);
                    e.entry("documentation").or_insert_with(|| {
                        json!(format!(
                            "Read in the {owner} compartment: GET /{owner}/{{id}}/{member}"
                        ))
                    });
                    let url = format!(
                        "http://hl7.org/fhir/CompartmentDefinition/{}",
                        owner.to_ascii_lowercase()
                    );
                    if !compartments.contains(&url) {
                        compartments.push(url);
                    }
                }
            }
        }
    }
    if let Some(patient) = resources.get_mut("Patient").and_then(Value::as_object_mut) {
        patient.insert(
            "profile".into(),
            json!("https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"),
        );
        if let Some(export) = doc["paths"]["/Patient/$export"]["get"].as_object() {
            push(
                patient,
                "operation",
                json!({"name": "export",
                    "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
                    "documentation": export["summary"]}),
            );
        }
    }
    let mut rest = json!({
        "mode": "server",
        "documentation": doc["info"]["description"],
        "security": {
            "cors": false,
            "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "OAuth", "display": "OAuth"}],
                "text": "Bearer JWT"}],
            "description": doc["components"]["securitySchemes"]["bearer"]["description"],
        },
        "resource": resources.into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
    });
    if !compartments.is_empty() {
        rest["compartment"] = json!(compartments);
    }
    json!({
        "resourceType": "CapabilityStatement",
        "id": "pds-facade",
        "url": format!("{base}/metadata"),
        "version": VERSION,
        "name": "PdsFacade",
        "title": "pds-facade",
        "status": "active",
        "experimental": false,
        "date": started(),
        "publisher": "pds-facade",
        "description": "What this pds-facade server does, derived from its routes and their OpenAPI description.",
        "kind": "instance",
        "software": {"name": "pds-facade", "version": VERSION},
        "implementation": {"description": "pds-facade: PDS FHIR API compatible Patient service", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [rest],
    })
}

fn push(e: &mut Map<String, Value>, list: &str, item: Value) {
    let items = e.entry(list).or_insert_with(|| json!([]));
    if let Value::Array(items) = items {
        items.push(item);
    }
}

/// The OperationDefinition `id` (`Patient-merge`) describes, when there is such an operation.
pub fn operation_definition(base: &str, id: &str) -> Option<Value> {
    let doc = openapi::document();
    let (resource, code) = id.split_once('-')?;
    let op = &doc["paths"][format!("/{resource}/${code}")]["post"];
    if op.is_null() {
        return None;
    }
    let signature = operation::by_code(code)?;
    Some(definition(base, resource, signature, op))
}

fn definition(base: &str, resource: &str, signature: &Signature, op: &Value) -> Value {
    let id = definition_id(resource, signature.code);
    let mut parameters: Vec<Value> = signature
        .params
        .iter()
        .map(|p| {
            json!({"name": p.name, "use": "in", "min": p.min, "max": "1",
                "documentation": p.documentation, "type": p.kind})
        })
        .collect();
    parameters.push(
        json!({"name": "outcome", "use": "out", "min": 1, "max": "1",
        "documentation": "What was done, as a sentence.", "type": "OperationOutcome"}),
    );
    parameters.push(json!({"name": "result", "use": "out", "min": 1, "max": "1",
        "documentation": "The record after the operation, as the caller may see it.", "type": signature.result}));
    json!({
        "resourceType": "OperationDefinition",
        "id": id,
        "url": format!("{base}/OperationDefinition/{id}"),
        "version": VERSION,
        "name": format!("{resource}{}", pascal(signature.code)),
        "title": op["summary"],
        "status": "active",
        "kind": "operation",
        "date": started(),
        "publisher": "pds-facade",
        "description": op["description"],
        "affectsState": true,
        "code": signature.code,
        "resource": [resource],
        "system": false,
        "type": true,
        "instance": false,
        "parameter": parameters,
    })
}

#[utoipa::path(
    get,
    path = "/metadata",
    tag = "Service",
    summary = "The server's FHIR R4 CapabilityStatement",
    description = "What this server does, in FHIR terms: the resources, their interactions (read, vread, patch, search-type, history-instance…), search parameters with their types, `$` operations (each defined at `/OperationDefinition/{id}`) and security. Derived from the routes and this document. Needs no `X-Request-ID` (FHIR clients read it first, without one).",
    params(("mode" = Option<String>, Query, description = "`full` (the default; no other mode is served)", pattern = "^full$")),
    responses(
        (status = 200, description = "The CapabilityStatement", body = docs::CapabilityStatement, content_type = "application/fhir+json"),
        (status = 400, description = "INVALID_VALUE (`mode` other than `full`), ADDITIONAL_PROPERTIES (another parameter)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_get_400())),
    )
)]
pub async fn metadata(
    State(app): State<AppState>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    // `mode=full` is what this answers; other modes are not served
    let pairs = super::query::pairs(&uri);
    if let Some((_, mode)) = pairs.iter().find(|(k, v)| k == "mode" && v != "full") {
        return Err(ApiError(crate::domain::PdsError::invalid_value(
            mode, "mode",
        )));
    }
    super::query::only(&uri, &["mode"])?;
    // built once: the routes and the base URL do not change while the server runs
    static STATEMENT: OnceLock<Vec<u8>> = OnceLock::new();
    let bytes = STATEMENT.get_or_init(|| {
        serde_json::to_vec(&capability_statement(&app.app.base_url)).expect("JSON")
    });
    Ok(fhir(axum::http::StatusCode::OK, None, bytes.clone()))
}

#[utoipa::path(
    get,
    path = "/OperationDefinition/{id}",
    tag = "Service",
    summary = "The definition of a `$` operation",
    description = "Its parameters (name, type, cardinality), as the CapabilityStatement's `operation.definition` names them: `Patient-merge`, `Patient-unmerge`, `Patient-change-identity`, `Patient-invalidate`, `Patient-revalidate`.",
    params(("id" = String, Path, description = "`<Resource>-<code>`", example = "Patient-merge"), docs::RequestHeaders),
    responses(
        (status = 200, description = "The OperationDefinition", body = docs::OperationDefinition, content_type = "application/fhir+json"),
        (status = 400, description = "MISSING_VALUE / INVALID_VALUE (X-Request-ID), ADDITIONAL_PROPERTIES (any query parameter)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_get_400())),
        (status = 404, description = "RESOURCE_NOT_FOUND (no such operation)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_404())),
    )
)]
pub async fn read_operation_definition(
    State(app): State<AppState>,
    _request_id: RequestId,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    super::query::only(&uri, &[])?;
    let definition = operation_definition(&app.app.base_url, &id)
        .ok_or_else(|| ApiError::bare(ErrorCode::ResourceNotFound))?;
    Ok(fhir(
        axum::http::StatusCode::OK,
        None,
        serde_json::to_vec(&definition).expect("JSON"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_classified_as_fhir_interactions() {
        use Route::*;
        for (path, method, expected) in [
            (
                "/Patient",
                "get",
                Some(Interaction("Patient", "search-type")),
            ),
            ("/Patient/{id}", "get", Some(Interaction("Patient", "read"))),
            (
                "/Patient/{id}",
                "patch",
                Some(Interaction("Patient", "patch")),
            ),
            (
                "/Patient/{id}/_history",
                "get",
                Some(Interaction("Patient", "history-instance")),
            ),
            (
                "/Patient/{id}/_history/{vid}",
                "get",
                Some(Interaction("Patient", "vread")),
            ),
            (
                "/Patient/$merge",
                "post",
                Some(Operation("Patient", "merge")),
            ),
            (
                "/Patient/{id}/RelatedPerson",
                "get",
                Some(Compartment("Patient", "RelatedPerson")),
            ),
            ("/_ping", "get", None),
            ("/_audit", "get", None),
            ("/metadata", "get", None),
        ] {
            assert_eq!(route(path, method), expected, "{method} {path}");
        }
    }

    #[test]
    fn every_documented_operation_has_a_signature_and_every_signature_a_route() {
        let doc = openapi::document();
        let ops: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, item)| item.get("post").is_some())
            .filter_map(|(p, _)| p.strip_prefix("/Patient/$"))
            .collect();
        for code in &ops {
            assert!(
                operation::by_code(code).is_some(),
                "${code} has no signature"
            );
            assert!(operation_definition("http://x", &format!("Patient-{code}")).is_some());
        }
        for s in operation::OPERATIONS {
            assert!(ops.contains(&s.code), "${} has no route", s.code);
        }
        assert!(operation_definition("http://x", "Patient-nothing").is_none());
        assert!(operation_definition("http://x", "nothing").is_none());
    }

    #[test]
    fn the_statement_lists_every_search_parameter_with_its_type() {
        let cs = capability_statement("http://x");
        let patient = cs["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == "Patient")
            .unwrap();
        let types: Map<String, Value> = patient["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap().to_string(), p["type"].clone()))
            .collect();
        for (name, ty) in [
            ("family", "string"),
            ("given", "string"),
            ("gender", "token"),
            ("birthdate", "date"),
            ("death-date", "date"),
            ("address-postalcode", "string"),
            ("general-practitioner", "reference"),
            ("email", "token"),
            ("phone", "token"),
            ("_fuzzy-match", "token"),
            ("_max-results", "number"),
        ] {
            assert_eq!(types.get(name), Some(&json!(ty)), "{name}");
        }
        let codes: Vec<&str> = patient["interaction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["code"].as_str().unwrap())
            .collect();
        for code in ["read", "vread", "patch", "search-type", "history-instance"] {
            assert!(codes.contains(&code), "{code} in {codes:?}");
        }
        assert_eq!(patient["versioning"], "versioned-update");
    }
}
