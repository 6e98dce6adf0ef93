//! Demo patients: synthetic records written for this project (no real people, no records
//! copied from elsewhere). Telephone numbers come from Ofcom's drama ranges (01632 960xxx,
//! 07700 900xxx), e-mail addresses use example.com, and NHS numbers are valid but made up.
//!
//! The set is deterministic and covers the shapes a client meets: a full record with every
//! extension kind, a minimal record, a restricted one, informal and formal deaths, home + temp
//! addresses, several telecoms and compound given names — and what search needs: patients that
//! match the search examples of PDS's documentation, twins, hyphenated, apostrophe and accented
//! family names. The first records are hand-written;
//! the rest are composed from small tables.

use serde_json::{json, Value};

use crate::domain::NhsNumber;

const NHS_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
const ODS: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
const SD: &str = "https://fhir.hl7.org.uk/StructureDefinition/";
const CS: &str = "https://fhir.hl7.org.uk/CodeSystem/";

/// The NHS numbers of the demo set, in order (prefix 999 100 0xx, the range never issued to real patients, check digits computed).
pub fn nhs_numbers() -> Vec<NhsNumber> {
    (999_100_000u64..)
        .filter_map(NhsNumber::from_prefix)
        .take(COUNT)
        .collect()
}

const COUNT: usize = 34;

/// Well-known members of the demo set, for README examples and tests.
pub mod ids {
    /// Full record, every extension kind but death.
    pub const FULL: usize = 0;
    pub const MINIMAL: usize = 1;
    pub const RESTRICTED: usize = 2;
    pub const INFORMAL_DEATH: usize = 3;
    pub const FORMAL_DEATH: usize = 4;
    pub const HOME_AND_TEMP: usize = 5;
    pub const SEVERAL_TELECOMS: usize = 6;
    pub const COMPOUND_GIVEN: usize = 7;
    /// Matches the search examples of PDS's documentation (family Smith, given Jane, female,
    /// born and died 2010-10-22, LS1 6AE, GP Y12345, its e-mail and telephone number).
    pub const JANE_SMITH: usize = 8;
    /// A near namesake born the same day: found by `Sm*` and by fuzzy search.
    pub const JAYNE_SMYTH: usize = 9;
}

fn identifier(nhs: &str) -> Value {
    json!([{
        "system": NHS_SYSTEM, "value": nhs,
        "extension": [{"url": format!("{SD}Extension-UKCore-NHSNumberVerificationStatus"),
            "valueCodeableConcept": {"coding": [{"system": format!("{CS}UKCore-NHSNumberVerificationStatus"),
                "version": "1.0.0", "code": "01", "display": "Number present and verified"}]}}]
    }])
}

fn security(code: &str, display: &str) -> Value {
    json!({"versionId": "1", "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": code, "display": display}]})
}

fn gp(ods: &str, start: &str) -> Value {
    json!([{"id": format!("GP{ods}"), "type": "Organization", "identifier": {"system": ODS, "value": ods, "period": {"start": start}}}])
}

fn home(id: &str, lines: &[&str], postcode: &str, start: &str) -> Value {
    json!({"id": id, "use": "home", "period": {"start": start}, "line": lines, "postalCode": postcode})
}

fn phone(id: &str, use_: &str, value: &str) -> Value {
    json!({"id": id, "system": "phone", "use": use_, "value": value, "period": {"start": "2019-04-01"}})
}

fn death(code: &str, display: &str, when: &str) -> Value {
    json!({"url": format!("{SD}Extension-UKCore-DeathNotificationStatus"), "extension": [
        {"url": "deathNotificationStatus", "valueCodeableConcept": {"coding": [{"system": format!("{CS}UKCore-DeathNotificationStatus"), "version": "1.0.0", "code": code, "display": display}]}},
        {"url": "systemEffectiveDate", "valueDateTime": when}]})
}

fn ods_extension(kind: &str, ods: &str) -> Value {
    json!({"url": format!("{SD}Extension-UKCore-{kind}"), "valueReference": {"identifier": {"system": ODS, "value": ods}}})
}

fn base(nhs: &str) -> serde_json::Map<String, Value> {
    let Value::Object(m) = json!({"resourceType": "Patient", "id": nhs, "identifier": identifier(nhs), "meta": security("U", "unrestricted")})
    else {
        unreachable!()
    };
    m
}

fn special(i: usize, nhs: &str) -> Option<Value> {
    let mut p = base(nhs);
    let mut set = |k: &str, v: Value| {
        p.insert(k.into(), v);
    };
    match i {
        ids::FULL => {
            set(
                "name",
                json!([
                {"id": "N1", "use": "usual", "period": {"start": "1998-03-12"}, "given": ["Eleanor", "Grace"], "family": "Ashworth", "prefix": ["Mrs"], "suffix": ["OBE"]},
                {"id": "N2", "use": "maiden", "period": {"start": "1971-06-02", "end": "1998-03-11"}, "given": ["Eleanor"], "family": "Pennington"},
                {"id": "N3", "use": "nickname", "period": {"start": "2001-01-01"}, "given": ["Nell"], "family": "Ashworth"}]),
            );
            set("gender", json!("female"));
            set("birthDate", json!("1971-06-02"));
            set("multipleBirthInteger", json!(1));
            set(
                "address",
                json!([{"id": "A1", "use": "home", "period": {"start": "2012-09-01"}, "line": ["14 Larkspur Close", "Headingley", "Leeds"], "postalCode": "LS6 3QX",
                "extension": [{"url": format!("{SD}Extension-UKCore-AddressKey"), "extension": [
                    {"url": "type", "valueCoding": {"system": format!("{CS}UKCore-AddressKeyType"), "code": "PAF"}},
                    {"url": "value", "valueString": "40817322"}]}]}]),
            );
            set(
                "telecom",
                json!([phone("T1", "home", "01632960101"),
                {"id": "T2", "system": "email", "use": "home", "value": "eleanor.ashworth@example.com", "period": {"start": "2015-02-01"}}]),
            );
            set(
                "contact",
                json!([{"id": "C1", "period": {"start": "2018-05-01"},
                "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "C", "display": "Emergency Contact"}]}],
                "telecom": [{"system": "phone", "value": "07700900102"}]}]),
            );
            set("generalPractitioner", gp("Y01234", "2012-09-15"));
            set(
                "managingOrganization",
                json!({"type": "Organization", "identifier": {"system": ODS, "value": "Y01234", "period": {"start": "2012-09-15"}}}),
            );
            set(
                "extension",
                json!([
                ods_extension("NominatedPharmacy", "FX123"),
                ods_extension("PreferredDispenserOrganization", "FY456"),
                ods_extension("MedicalApplianceSupplier", "FZ789"),
                {"url": format!("{SD}Extension-UKCore-NHSCommunication"), "extension": [
                    {"url": "language", "valueCodeableConcept": {"coding": [{"system": format!("{CS}UKCore-HumanLanguage"), "version": "1.0.0", "code": "cy", "display": "Welsh"}]}},
                    {"url": "interpreterRequired", "valueBoolean": false}]},
                {"url": format!("{SD}Extension-UKCore-ContactPreference"), "extension": [
                    {"url": "PreferredWrittenCommunicationFormat", "valueCodeableConcept": {"coding": [{"system": format!("{CS}UKCore-PreferredWrittenCommunicationFormat"), "code": "11", "display": "Large print"}]}},
                    {"url": "PreferredContactMethod", "valueCodeableConcept": {"coding": [{"system": format!("{CS}UKCore-PreferredContactMethod"), "code": "3", "display": "Telephone"}]}},
                    {"url": "PreferredContactTimes", "valueString": "Weekday mornings"}]},
                {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueAddress": {"city": "Harrogate", "district": "North Yorkshire", "country": "GBR"}},
                {"url": "https://fhir.nhs.uk/StructureDefinition/Extension-PDS-RemovalFromRegistration", "extension": [
                    {"url": "removalFromRegistrationCode", "valueCodeableConcept": {"coding": [{"system": "https://fhir.nhs.uk/CodeSystem/PDS-RemovalReasonExitCode", "code": "SCT", "display": "Transferred to Scotland"}]}},
                    {"url": "effectiveTime", "valuePeriod": {"start": "2009-01-05T00:00:00+00:00", "end": "2012-09-14T00:00:00+00:00"}}]}]),
            );
        }
        ids::MINIMAL => {}
        ids::RESTRICTED => {
            set("meta", security("R", "restricted"));
            set(
                "name",
                json!([{"id": "N1", "use": "usual", "period": {"start": "2016-01-01"}, "given": ["Morwenna"], "family": "Tregarthen", "prefix": ["Ms"]}]),
            );
            set("gender", json!("female"));
            set("birthDate", json!("1988-11-23"));
            set(
                "address",
                json!([home(
                    "A1",
                    &["Flat 3", "9 Quay Street", "Truro"],
                    "TR1 2HE",
                    "2021-07-01"
                )]),
            );
            set(
                "telecom",
                json!([{"id": "T1", "system": "phone", "use": "mobile", "value": "07700900203", "period": {"start": "2021-07-01"}}]),
            );
            set("generalPractitioner", gp("Y02468", "2021-07-10"));
            set(
                "extension",
                json!([ods_extension("NominatedPharmacy", "FQ246"),
                {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueAddress": {"city": "Penzance", "country": "GBR"}}]),
            );
        }
        ids::INFORMAL_DEATH => {
            set(
                "name",
                json!([{"id": "N1", "use": "usual", "period": {"start": "1950-01-01"}, "given": ["Walter"], "family": "Hebblethwaite", "prefix": ["Mr"]}]),
            );
            set("gender", json!("male"));
            set("birthDate", json!("1936-02-14"));
            set("deceasedDateTime", json!("2025-10-03T00:00:00+00:00"));
            set(
                "address",
                json!([home(
                    "A1",
                    &["2 Mill Lane", "Skipton"],
                    "BD23 1NX",
                    "1990-01-01"
                )]),
            );
            set("generalPractitioner", gp("Y03579", "1990-01-01"));
            set("extension", json!([death("1", "Informal - death notice received via an update from a local NHS Organisation such as GP or Trust", "2025-10-04T09:30:00+00:00")]));
        }
        ids::FORMAL_DEATH => {
            set(
                "name",
                json!([{"id": "N1", "use": "usual", "period": {"start": "1960-01-01"}, "given": ["Doreen", "May"], "family": "Illingworth", "prefix": ["Mrs"]}]),
            );
            set("gender", json!("female"));
            set("birthDate", json!("1931-08-30"));
            set("deceasedDateTime", json!("2024-12-19T00:00:00+00:00"));
            set(
                "extension",
                json!([death("2", "Formal - death notice received from Registrar of Deaths", "2024-12-21T11:00:00+00:00"),
                {"url": "https://fhir.nhs.uk/StructureDefinition/Extension-PDS-RemovalFromRegistration", "extension": [
                    {"url": "removalFromRegistrationCode", "valueCodeableConcept": {"coding": [{"system": "https://fhir.nhs.uk/CodeSystem/PDS-RemovalReasonExitCode", "code": "DEA", "display": "Death"}]}},
                    {"url": "effectiveTime", "valuePeriod": {"start": "2024-12-21T00:00:00+00:00"}}]}]),
            );
        }
        ids::HOME_AND_TEMP => {
            set(
                "name",
                json!([{"id": "N1", "use": "usual", "period": {"start": "2005-09-01"}, "given": ["Rhys"], "family": "Pryce-Davies"}]),
            );
            set("gender", json!("male"));
            set("birthDate", json!("2005-09-01"));
            set(
                "address",
                json!([home("A1", &["27 Heol y Nant", "Cardiff"], "CF14 6TT", "2005-09-01"),
                {"id": "A2", "use": "temp", "text": "Student Accommodation", "period": {"start": "2026-09-20", "end": "2026-12-12"},
                 "line": ["Room 14", "Ullswater Hall", "Lancaster"], "postalCode": "LA1 4YW"}]),
            );
            set(
                "telecom",
                json!([{"id": "T1", "system": "phone", "use": "mobile", "value": "07700900305", "period": {"start": "2021-01-01"}}]),
            );
            set("generalPractitioner", gp("Y04680", "2005-09-10"));
        }
        ids::SEVERAL_TELECOMS => {
            set(
                "name",
                json!([{"id": "N1", "use": "usual", "period": {"start": "1979-05-05"}, "given": ["Priya"], "family": "Raman", "prefix": ["Dr"]}]),
            );
            set("gender", json!("female"));
            set("birthDate", json!("1979-05-05"));
            set(
                "address",
                json!([home(
                    "A1",
                    &["5 Victoria Terrace", "Leicester"],
                    "LE2 1QW",
                    "2010-03-01"
                )]),
            );
            set(
                "telecom",
                json!([phone("T1", "home", "01632960406"), phone("T2", "work", "01632960407"),
                {"id": "T3", "system": "phone", "use": "mobile", "value": "07700900408", "period": {"start": "2019-04-01"}},
                {"id": "T4", "system": "email", "use": "home", "value": "priya.raman@example.com", "period": {"start": "2019-04-01"}},
                {"id": "T5", "system": "other", "use": "home", "value": "01632960409", "period": {"start": "2019-04-01"},
                 "extension": [{"url": format!("{SD}Extension-UKCore-OtherContactSystem"), "valueCoding": {"system": format!("{CS}UKCore-OtherContactSystem"), "code": "textphone", "display": "Minicom (Textphone)"}}]}]),
            );
            set("generalPractitioner", gp("Y05791", "2010-03-05"));
        }
        ids::COMPOUND_GIVEN => {
            set(
                "name",
                json!([{"id": "N1", "use": "usual", "period": {"start": "2012-02-29"}, "given": ["Mary Ann", "Josephine"], "family": "O'Sullivan"}]),
            );
            set("gender", json!("female"));
            set("birthDate", json!("2012-02-29"));
            set(
                "address",
                json!([home(
                    "A1",
                    &["41 Scotland Road", "Liverpool"],
                    "L5 5AE",
                    "2012-02-29"
                )]),
            );
            set("generalPractitioner", gp("Y06802", "2012-03-10"));
        }
        ids::JANE_SMITH => {
            set(
                "name",
                json!([{"id": "N1", "use": "usual", "period": {"start": "2010-10-22"}, "given": ["Jane", "Florence"], "family": "Smith", "prefix": ["Miss"]}]),
            );
            set("gender", json!("female"));
            set("birthDate", json!("2010-10-22"));
            set("deceasedDateTime", json!("2010-10-22T14:05:00+00:00"));
            set(
                "address",
                json!([home(
                    "A1",
                    &["Flat 2", "8 Wellington Street", "Leeds"],
                    "LS1 6AE",
                    "2010-10-22"
                )]),
            );
            set(
                "telecom",
                json!([phone("T1", "home", "01632960587"),
                {"id": "T2", "system": "email", "use": "home", "value": "jane.smith@example.com", "period": {"start": "2010-10-22"}}]),
            );
            set("generalPractitioner", gp("Y12345", "2010-10-25"));
            set(
                "extension",
                json!([death(
                    "2",
                    "Formal - death notice received from Registrar of Deaths",
                    "2010-10-24T10:00:00+00:00"
                )]),
            );
        }
        ids::JAYNE_SMYTH => {
            set(
                "name",
                json!([{"id": "N1", "use": "usual", "period": {"start": "2010-10-22"}, "given": ["Jayne"], "family": "Smyth"}]),
            );
            set("gender", json!("female"));
            set("birthDate", json!("2010-10-22"));
            set(
                "address",
                json!([home(
                    "A1",
                    &["3 Canal Wharf", "Leeds"],
                    "LS11 5PS",
                    "2010-10-22"
                )]),
            );
            set("generalPractitioner", gp("Y23456", "2010-11-01"));
        }
        _ => return None,
    }
    Some(Value::Object(p))
}

const FAMILIES: [&str; 12] = [
    "Thwaite",
    "Okafor",
    "Lindqvist",
    "Brennan",
    "Khatun",
    "Marchetti",
    "Featherstone",
    "Nwosu",
    "Haldane",
    "Zieliński",
    "MacAulay",
    "Fenwick",
];
const GIVEN_F: [&str; 6] = ["Isla", "Amara", "Beatrix", "Saoirse", "Zofia", "Harriet"];
const GIVEN_M: [&str; 6] = ["Callum", "Tobias", "Emeka", "Lorcan", "Bartosz", "Alfie"];
const PLACES: [(&str, &str, &str); 6] = [
    ("Orchard Way", "York", "YO24 3HP"),
    ("Beacon Street", "Lichfield", "WS13 7AA"),
    ("Kelvin Drive", "Glasgow", "G20 8QQ"),
    ("Saltmarsh Row", "Whitby", "YO21 1DL"),
    ("Granary Court", "Norwich", "NR1 3JQ"),
    ("Tenter Lane", "Halifax", "HX1 2EW"),
];

/// Ordinary records composed from the tables; two pairs are twins (same birth date).
fn ordinary(k: usize, nhs: &str) -> Value {
    let mut p = base(nhs);
    let female = k.is_multiple_of(2);
    let family = FAMILIES[k % FAMILIES.len()];
    let given = if female {
        GIVEN_F[k % GIVEN_F.len()]
    } else {
        GIVEN_M[k % GIVEN_M.len()]
    };
    let (street, town, postcode) = PLACES[k % PLACES.len()];
    // records 4/5 and 10/11 are twins: same family, same birth date
    let twin_of = match k {
        5 => Some(4),
        11 => Some(10),
        _ => None,
    };
    let family = twin_of.map_or(family, |t| FAMILIES[t % FAMILIES.len()]);
    let b = twin_of.unwrap_or(k);
    let birth = format!(
        "{}-{:02}-{:02}",
        1940 + (b * 7) % 80,
        1 + b % 12,
        1 + (b * 5) % 28
    );
    p.insert("name".into(), json!([{"id": "N1", "use": "usual", "period": {"start": birth}, "given": [given], "family": family, "prefix": [if female { "Ms" } else { "Mr" }]}]));
    p.insert(
        "gender".into(),
        json!(if female { "female" } else { "male" }),
    );
    p.insert("birthDate".into(), json!(birth));
    if twin_of.is_some() || matches!(k, 4 | 10) {
        p.insert(
            "multipleBirthInteger".into(),
            json!(if twin_of.is_some() { 2 } else { 1 }),
        );
    }
    p.insert(
        "address".into(),
        json!([home(
            "A1",
            &[&format!("{} {street}", 3 + k * 2), town],
            postcode,
            "2015-06-01"
        )]),
    );
    p.insert(
        "telecom".into(),
        json!([phone("T1", "home", &format!("01632960{:03}", 500 + k))]),
    );
    p.insert(
        "generalPractitioner".into(),
        gp(&format!("Y1{:04}", 1000 + k % 5), "2015-06-10"),
    );
    Value::Object(p)
}

/// The demo patients as FHIR Patient JSON.
pub fn patients() -> Vec<Value> {
    nhs_numbers()
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            let nhs = n.to_string();
            special(i, &nhs).unwrap_or_else(|| ordinary(i - 10, &nhs))
        })
        .collect()
}
