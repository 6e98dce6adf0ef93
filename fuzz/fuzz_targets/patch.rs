//! Arbitrary record × arbitrary PATCH body through the patch layer: it must never panic, and
//! whatever it accepts must be a valid stored record (schema + record rules).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pds_facade::domain::patch::{self, PatchContext, PatchRequest};
use pds_facade::domain::{Patient, Role, Schemas};

struct Fixture {
    schemas: Schemas,
    records: Vec<Patient>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let schemas = Schemas::compile();
        let today = time::macros::date!(2026 - 11 - 27);
        let mut n = 0;
        let mut id = || {
            n += 1;
            format!("F{n}")
        };
        let records = pds_facade::demo::patients()
            .into_iter()
            .map(|mut p| {
                pds_facade::domain::patient::assign_missing_ids(
                    p.as_object_mut().unwrap(),
                    &mut id,
                );
                Patient::parse(p, &schemas, today).expect("demo patients are valid")
            })
            .collect();
        Fixture { schemas, records }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let record = &f.records[pick as usize % f.records.len()];
    let role = [Role::HealthcareWorker, Role::BackOffice, Role::Patient][(pick as usize / 64) % 3];
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(rest) else {
        return;
    };
    let Ok(request) = PatchRequest::parse(&body, &f.schemas) else {
        return;
    };
    let today = time::macros::date!(2026 - 11 - 27);
    let mut n = 0;
    let mut new_id = || {
        n += 1;
        format!("Z{n}")
    };
    let mut ctx = PatchContext {
        role,
        today,
        new_id: &mut new_id,
    };
    if let Ok(updated) = patch::apply(record, &request, &mut ctx, &f.schemas) {
        assert_eq!(updated.version(), record.version().next());
        // what the layer accepts is a valid stored record
        Patient::parse(updated.into_value(), &f.schemas, today)
            .expect("an accepted change is a valid record");
    }
});
