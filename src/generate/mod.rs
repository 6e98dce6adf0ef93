//! Deterministic synthetic patients for load tests and benchmarks: valid, unique NHS numbers
//! (from the 990–999 million prefixes), UK-style names, birth dates over a century, postcodes,
//! telephone numbers from Ofcom's drama ranges, GP practices, and a share of restricted and
//! deceased records. The same seed always gives the same patients; patient `i` can be made
//! on its own, so generation streams in constant memory.
//!
//! That is the `uniform` shape (`patient`), the default: small records, names and places drawn
//! evenly from short lists. The `national` shape ([`national`]) makes records as rich as PDS's
//! fullest, in a population shaped like England's (households, postcodes, practices, Zipf
//! family names, the age pyramid, duplicates to merge).

use std::io::Write;

use serde_json::{json, Value};

use crate::domain::NhsNumber;

pub mod national;
mod tables;

/// What the generated records look like (`generate --shape`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// [`patient`]: small, evenly drawn records.
    Uniform,
    /// [`national::Population`]: rich records in an England-shaped population.
    National,
}

/// Writes the patients `i < count` with `i % every == 0` as NDJSON to `out`, calling
/// `written` after each; with the national shape, also one `SOURCE TARGET` line (NHS numbers)
/// to `merges` for each superseded duplicate written, naming the record it duplicates.
/// Patient `i` is the same whatever `every` is, so a sample is the full stream's lines.
pub fn write_ndjson(
    shape: Shape,
    seed: u64,
    count: u64,
    every: u64,
    out: &mut dyn Write,
    mut merges: Option<&mut dyn Write>,
    mut written: impl FnMut(),
) -> std::io::Result<()> {
    let national = (shape == Shape::National).then(|| national::Population::new(seed, count));
    // each line is serialised whole, then written at once (not token by token through `out`)
    let mut line = Vec::with_capacity(16 << 10);
    for i in (0..count).step_by(every.max(1) as usize) {
        line.clear();
        match &national {
            None => serde_json::to_writer(&mut line, &patient(seed, i))?,
            Some(population) => {
                let (doc, survivor) = population.record(i);
                serde_json::to_writer(&mut line, &doc)?;
                if let (Some(m), Some(target)) = (merges.as_deref_mut(), survivor) {
                    writeln!(m, "{} {target}", nhs_number(i))?;
                }
            }
        }
        line.push(b'\n');
        out.write_all(&line)?;
        written();
    }
    Ok(())
}

const FAMILIES: [&str; 60] = [
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Robinson",
    "Wright",
    "Thompson",
    "Evans",
    "Walker",
    "White",
    "Roberts",
    "Green",
    "Hall",
    "Wood",
    "Jackson",
    "Clarke",
    "Patel",
    "Khan",
    "Lewis",
    "James",
    "Phillips",
    "Mason",
    "Mitchell",
    "Rose",
    "Davis",
    "Rodgers",
    "Lee",
    "Turner",
    "Harris",
    "Hughes",
    "Edwards",
    "Moore",
    "Cooper",
    "Ward",
    "Morris",
    "King",
    "Baker",
    "Harrison",
    "Morgan",
    "Allen",
    "Scott",
    "Price",
    "Bennett",
    "Griffiths",
    "Kelly",
    "Murphy",
    "O'Neill",
    "Nowak",
    "Kowalski",
    "Singh",
    "Begum",
    "Ahmed",
    "Okafor",
    "MacDonald",
    "Fitzgerald",
    "Llewellyn",
];
const GIVEN_F: [&str; 24] = [
    "Olivia", "Amelia", "Isla", "Ava", "Mia", "Grace", "Freya", "Lily", "Emily", "Sophie", "Ella",
    "Poppy", "Jessica", "Evie", "Chloe", "Sarah", "Margaret", "Susan", "Patricia", "Aisha",
    "Fatima", "Zofia", "Niamh", "Siobhan",
];
const GIVEN_M: [&str; 24] = [
    "Oliver", "George", "Noah", "Arthur", "Harry", "Leo", "Muhammad", "Jack", "Charlie", "Oscar",
    "Jacob", "Henry", "Thomas", "William", "James", "David", "John", "Robert", "Michael", "Ali",
    "Omar", "Piotr", "Sean", "Callum",
];
const OUTWARD: [&str; 30] = [
    "LS1", "LS6", "LS11", "M1", "M14", "B15", "B23", "L1", "L5", "S10", "NE1", "NE6", "BS1", "BS8",
    "CF10", "CF14", "EH1", "G2", "BT1", "NR1", "YO24", "HX1", "TR1", "EX4", "PL1", "CB2", "OX1",
    "SW1A", "E1", "N7",
];
const STREETS: [&str; 12] = [
    "High Street",
    "Station Road",
    "Church Lane",
    "Mill Road",
    "Park Avenue",
    "Victoria Road",
    "Green Lane",
    "Manor Close",
    "Kings Road",
    "Queens Drive",
    "Albert Street",
    "Orchard Way",
];
const LETTERS: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ";

/// A splittable, seedable generator (SplitMix64): patient `i` gets its own stream.
struct Stream(u64);

impl Stream {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Blocks of ten prefixes from 990 000 000 up, before the demo set's 999 100 0xx (and the
/// default allocation range, 999 3xx xxx): patients `0..8_190_000`.
const FIRST_RANGE_BLOCKS: u64 = 910_000;
/// Blocks of ten prefixes from 910 000 000 up to 989 999 999, for the patients after those.
const SECOND_RANGE_BLOCKS: u64 = 8_000_000;
/// Most patients `generate` numbers (nine a block): about 80 M, more than England's 60 M.
pub const MAX_PATIENTS: u64 = 9 * (FIRST_RANGE_BLOCKS + SECOND_RANGE_BLOCKS);

/// The NHS number of patient `i` (0-based): the `i`-th valid number from 990 000 000·10 up to
/// the demo set's range, then from 910 000 000·10 up to 989 999 999·10 — prefixes starting 9,
/// which England does not issue to real patients. About one prefix in eleven has no valid
/// check digit, so numbers are found by stepping; the mapping is deterministic and injective.
/// Panics from [`MAX_PATIENTS`] on (`generate` refuses such a count).
pub fn nhs_number(i: u64) -> NhsNumber {
    assert!(
        i < MAX_PATIENTS,
        "patient {i}: generate numbers at most {MAX_PATIENTS}"
    );
    // 10 consecutive prefixes hold at least 9 valid numbers; walk from a block start
    let block = i / 9;
    let mut prefix = if block < FIRST_RANGE_BLOCKS {
        990_000_000 + block * 10
    } else {
        910_000_000 + (block - FIRST_RANGE_BLOCKS) * 10
    };
    let mut skip = i % 9;
    loop {
        if let Some(n) = NhsNumber::from_prefix(prefix) {
            if skip == 0 {
                return n;
            }
            skip -= 1;
        }
        prefix += 1;
    }
}

/// Synthetic patient `i` for `seed`.
pub fn patient(seed: u64, i: u64) -> Value {
    let mut r = Stream(seed ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03));
    let nhs = nhs_number(i).to_string();
    let female = r.below(2) == 0;
    let given = if female {
        r.pick(&GIVEN_F)
    } else {
        r.pick(&GIVEN_M)
    };
    let family = r.pick(&FAMILIES);
    let year = 1920 + r.below(105);
    let birth = format!("{year}-{:02}-{:02}", 1 + r.below(12), 1 + r.below(28));
    let outward = r.pick(&OUTWARD);
    let postcode = format!(
        "{outward} {}{}{}",
        r.below(10),
        LETTERS[r.below(LETTERS.len() as u64) as usize] as char,
        LETTERS[r.below(LETTERS.len() as u64) as usize] as char
    );
    let street = format!("{} {}", 1 + r.below(200), r.pick(&STREETS));
    let restricted = r.below(100) == 0;
    let mut p = json!({
        "resourceType": "Patient",
        "id": nhs,
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}],
        "meta": {"versionId": "1", "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
            "code": if restricted { "R" } else { "U" }, "display": if restricted { "restricted" } else { "unrestricted" }}]},
        "name": [{"id": "N1", "use": "usual", "period": {"start": birth}, "given": [given], "family": family,
                  "prefix": [if female { "Ms" } else { "Mr" }]}],
        "gender": if female { "female" } else { "male" },
        "birthDate": birth,
        "address": [{"id": "A1", "use": "home", "period": {"start": format!("{}-01-01", year.max(2000))},
                     "line": [street, outward.to_string()], "postalCode": postcode}],
        "telecom": [{"id": "T1", "system": "phone", "use": "home", "value": format!("01632960{:03}", r.below(1000)),
                     "period": {"start": "2020-01-01"}}],
        "generalPractitioner": [{"id": "G1", "type": "Organization", "identifier": {
            "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": format!("Y{:05}", r.below(8000)), "period": {"start": "2020-01-01"}}}]
    });
    if r.below(3) == 0 {
        p["telecom"].as_array_mut().expect("list").push(json!({"id": "T2", "system": "email", "use": "home",
            "value": format!("{}.{}{}@example.com", given.to_lowercase(), family.to_lowercase().replace('\'', ""), i), "period": {"start": "2020-01-01"}}));
    }
    if year < 2000 && r.below(25) == 0 {
        let death = format!(
            "{}-{:02}-{:02}",
            2000 + r.below(25),
            1 + r.below(12),
            1 + r.below(28)
        );
        p["deceasedDateTime"] = json!(format!("{death}T00:00:00+00:00"));
        p["extension"] = json!([{"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-DeathNotificationStatus",
            "extension": [{"url": "deathNotificationStatus", "valueCodeableConcept": {"coding": [{
                "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-DeathNotificationStatus", "version": "1.0.0", "code": "2",
                "display": "Formal - death notice received from Registrar of Deaths"}]}}]}]);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Patient, Schemas};

    #[test]
    fn numbers_are_valid_unique_and_deterministic() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..20_000 {
            assert!(seen.insert(nhs_number(i)), "{i}");
        }
        assert_eq!(patient(7, 123), patient(7, 123));
        assert_ne!(patient(7, 123), patient(8, 123));
    }

    #[test]
    fn numbers_reach_beyond_nine_million_without_meeting_the_demo_or_allocation_ranges() {
        let first_range_end = 9 * FIRST_RANGE_BLOCKS;
        let around = |at: u64| at.saturating_sub(2_000)..(at + 2_000).min(MAX_PATIENTS);
        let mut seen = std::collections::HashSet::new();
        for i in around(first_range_end)
            .chain(around(9_000_000))
            .chain(around(10_000_000))
            .chain(around(MAX_PATIENTS))
        {
            let n = nhs_number(i);
            assert!(seen.insert(n), "{i}");
            let prefix = n.as_u64() / 10;
            assert!(
                (990_000_000..999_100_000).contains(&prefix)
                    || (910_000_000..990_000_000).contains(&prefix),
                "{i}: {n}"
            );
        }
        // the demo set and the default allocation range stay clear
        let demo = crate::demo::nhs_numbers();
        assert!(demo.iter().all(|d| !seen.contains(d)));
        const { assert!(MAX_PATIENTS >= 60_000_000, "England's population fits") };
        // the first range is unchanged: generated files of up to 8.19 M patients stay as they were
        assert_eq!(nhs_number(0).to_string(), "9900000005");
    }

    #[test]
    fn patients_are_valid_records() {
        let schemas = Schemas::compile();
        let today = time::macros::date!(2026 - 11 - 27);
        for i in 0..2_000 {
            Patient::parse(patient(42, i), &schemas, today).unwrap_or_else(|e| panic!("{i}: {e}"));
        }
    }
}
