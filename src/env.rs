//! The two things the pure patch layer asks of the outside world: today's date and fresh
//! object ids. Kept here so every caller (HTTP, import, demo loading) uses the same ones.

/// Today's date in UTC (PDS dates are UTC).
pub fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

/// A new server-assigned object id in PDS's style: 8 upper-case hex digits, random.
pub fn new_object_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_ascii_uppercase()
}

/// Now, in UTC, as FHIR instants are written (RFC 3339, whole seconds).
pub fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339")
}
