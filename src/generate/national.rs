//! The national shape (`generate --shape national`): records as rich as PDS's fullest, in a
//! population shaped like England's.
//!
//! * **Households and postcodes.** People live in households of 1–6 (England's mix: a third
//!   alone, a third in pairs…) that share an address (lines, postcode, PAF and UPRN keys) and,
//!   for most, a home landline; about 15 people share a postcode. Couples, children, twins,
//!   an elderly parent, flat-shares, widows; married women with a maiden name.
//! * **Names.** Family names are Zipf-like: the commonest under 1 % of people, the top 100
//!   about a fifth, and a tail of ~120,000 names (the first 300 from a list, the rest
//!   synthesised from syllables: plain ASCII letters). Given names follow the birth period
//!   and, for the sixth of households born abroad, the country of birth.
//! * **Ages.** Birth dates follow England's age pyramid; ~12 % of records are of people who
//!   have died (deceasedDateTime and the death notification status, as the uniform shape).
//! * **GP practices.** Each population has a practice table drawn from its seed: list sizes
//!   log-normal around a median of 9,500, capped at 60,000; practices serve neighbouring
//!   postcodes.
//! * **Everything else PDS holds:** NHS number verification status, title and suffix, old,
//!   maiden and nick names, temporary, work and correspondence (billing) addresses, several
//!   telecoms (Ofcom's drama numbers, so few distinct ones; example.com e-mail), emergency
//!   contacts, managing organisation, nominated pharmacy, preferred dispenser, appliance
//!   supplier, NHS communication (language, interpreter), contact preference, place of birth,
//!   removal from registration. Records are meant to be as big as PDS's richest (its full
//!   example is 6 KB): most people's records are "full" ones — more of the old than of the
//!   young — holding most of these, so that records average about 5 KB; the shares of the
//!   rarer elements (dispenser, appliance supplier, second addresses) are therefore higher
//!   than a real register's.
//! * **Restricted** (~0.2 %) records keep what they hold; the restricted view hides it.
//!   **Superseded** (~0.5 %) records are late duplicate registrations of a household member:
//!   same name, birth date and address under another NHS number; [`Population::record`]
//!   names the survivor, and `generate --merges-out` lists the pairs to `$merge`.
//!
//! Patient `i` has NHS number [`super::nhs_number`]`(i)`, like the uniform shape. It is made
//! from `(seed, count, i)` alone, in constant time and memory but for two small tables per
//! population (the practices, ~count/11,000 entries, and the age pyramid): `i` is mapped by a
//! keyed permutation (a Feistel network) to a place in the population, places come in blocks of
//! 64 laid out as households and postcodes, and a household's people are made from its own
//! random stream. So the stream can be written, or sampled with `--every`, without holding it.
//! The same seed and count give the same bytes (the distributions use `f64` arithmetic, so on
//! the same platform).

use serde_json::{json, Map, Value};
use time::Date;

use super::tables::*;
use super::{nhs_number, Stream};
use crate::domain::NhsNumber;

/// The day a population is dated from: nobody is born, dies or moves after it, so records stay
/// valid whenever they are loaded.
pub const REFERENCE: Date = time::macros::date!(2026 - 10 - 31);

/// Places per block: a block is cut into households, and its households into postcodes.
const BLOCK: u64 = 64;
/// At most this many postcodes share a block (2–7 do: ~15 people a postcode).
const UNITS: u64 = 8;
/// People per postcode district (outward code), roughly.
const PER_DISTRICT: u64 = 12_000;
/// Postcodes an outward code can hold: sector digit × two letters.
const UNITS_PER_DISTRICT: u64 = 4_000;

/// Family name ranks: Zipf-like, weight ∝ 1/(rank + Q)^S over N ranks.
const ZIPF_S: f64 = 0.85;
const ZIPF_Q: f64 = 4.5;
const ZIPF_N: u64 = 120_000;

/// Practice list sizes: log-normal, median and shape, capped.
const PRACTICE_MEDIAN: f64 = 9_500.0;
const PRACTICE_SIGMA: f64 = 0.6;
const PRACTICE_MIN: u64 = 1_000;
const PRACTICE_MAX: u64 = 60_000;

/// Households (per 10,000 drawn) that are one former resident who has died: with the widowed
/// in other households, ~12 % of records.
const DECEASED_HOUSEHOLDS: u64 = 2_150;
/// Households (per 10,000) with a late duplicate registration of one of their people: ~0.5 %
/// of records.
const DUPLICATE_HOUSEHOLDS: u64 = 130;
/// Restricted records, per 10,000: 0.2 %.
const RESTRICTED_PEOPLE: u64 = 20;

const LETTERS: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ";
const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
const EXT: &str = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-";

/// Random streams are keyed by what they make, so that each thing is made the same way
/// whatever else is asked for.
#[derive(Clone, Copy)]
enum Tag {
    Order = 1,
    Block,
    House,
    Person,
    Street,
    Practices,
    Areas,
}

fn mix(a: u64, b: u64) -> u64 {
    Stream(a ^ b.wrapping_mul(0xA24B_AED4_963E_E407).rotate_left(23)).next()
}

fn stream(seed: u64, tag: Tag, key: u64) -> Stream {
    Stream(mix(mix(seed, tag as u64), key))
}

/// A uniform draw in [0, 1).
fn unit(r: &mut Stream) -> f64 {
    (r.next() >> 11) as f64 / (1u64 << 53) as f64
}

/// True `per` times in `of`.
fn chance(r: &mut Stream, per: u64, of: u64) -> bool {
    r.below(of) < per
}

/// A standard normal draw (Box–Muller).
fn normal(r: &mut Stream) -> f64 {
    let u = unit(r).max(1e-12);
    let v = unit(r);
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// An item of `items`, the first ones more often (index ∝ u²).
fn popular<'a>(r: &mut Stream, items: &[&'a str]) -> &'a str {
    let u = unit(r);
    items[((u * u) * items.len() as f64) as usize]
}

fn ymd(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn days_before(d: Date, days: u64) -> Date {
    Date::from_julian_day(d.to_julian_day() - days as i32).unwrap_or(d)
}

fn days_after(d: Date, days: u64) -> Date {
    Date::from_julian_day(d.to_julian_day() + days as i32).unwrap_or(d)
}

fn days_between(a: Date, b: Date) -> u64 {
    (b.to_julian_day() - a.to_julian_day()).max(0) as u64
}

/// A date in `[from, to]` (inclusive), uniformly.
fn between(r: &mut Stream, from: Date, to: Date) -> Date {
    days_after(from, r.below(days_between(from, to) + 1))
}

/// Age in whole years on `on`.
fn age(birth: Date, on: Date) -> u64 {
    let mut years = on.year() - birth.year();
    if (u8::from(on.month()), on.day()) < (u8::from(birth.month()), birth.day()) {
        years -= 1;
    }
    years.max(0) as u64
}

/// An object id for a list item: 8 hex digits, the last two the item's place in its list.
fn item_id(r: &mut Stream, place: usize) -> String {
    format!("{:06X}{:02X}", r.below(1 << 24), place)
}

/// A keyed permutation of `0..count` (a four-round Feistel network on the smallest even number
/// of bits that holds `count`, cycle-walking back into range), so that NHS-number order says
/// nothing of household or place.
struct Order {
    count: u64,
    half: u32,
    keys: [u64; 4],
}

impl Order {
    fn new(seed: u64, count: u64) -> Order {
        let bits = 64 - count.saturating_sub(1).leading_zeros();
        let mut r = stream(seed, Tag::Order, count);
        Order {
            count,
            half: bits.div_ceil(2).max(1),
            keys: [r.next(), r.next(), r.next(), r.next()],
        }
    }

    fn round(&self, k: usize, x: u64) -> u64 {
        Stream(x ^ self.keys[k]).next() & ((1 << self.half) - 1)
    }

    fn forward(&self, x: u64) -> u64 {
        let (mut l, mut r) = (x >> self.half, x & ((1 << self.half) - 1));
        for k in 0..4 {
            (l, r) = (r, l ^ self.round(k, r));
        }
        (l << self.half) | r
    }

    fn backward(&self, y: u64) -> u64 {
        let (mut l, mut r) = (y >> self.half, y & ((1 << self.half) - 1));
        for k in (0..4).rev() {
            (l, r) = (r ^ self.round(k, l), l);
        }
        (l << self.half) | r
    }

    /// The place of patient `i`.
    fn place(&self, i: u64) -> u64 {
        let mut y = self.forward(i);
        while y >= self.count {
            y = self.forward(y);
        }
        y
    }

    /// The patient at a place.
    fn patient(&self, place: u64) -> u64 {
        let mut x = self.backward(place);
        while x >= self.count {
            x = self.backward(x);
        }
        x
    }
}

/// A household's places in its block.
#[derive(Clone, Copy, Debug)]
struct Household {
    /// First place, within the block.
    start: u64,
    /// People living (or, for a former resident, who lived) there.
    people: u64,
    /// One more record follows the people: a late duplicate registration of one of them.
    duplicate: bool,
    /// A former resident who has died.
    deceased: bool,
    /// The postcode (0..UNITS) within the block.
    unit: u64,
    /// Its order among the households of that postcode (for house numbers).
    number: u64,
}

impl Household {
    fn records(&self) -> u64 {
        self.people + u64::from(self.duplicate)
    }
}

/// England's households by size (per 100): 1 to 6 people.
const HOUSEHOLD_SIZES: [u64; 6] = [29, 35, 16, 13, 5, 2];

/// A person as the household makes them (what the household's other records must agree on).
#[derive(Clone, Debug)]
struct Person {
    given: Vec<&'static str>,
    family: String,
    /// An earlier family name, the day it changed, and the name's use (`maiden` or `old`).
    previous: Option<(String, Date, &'static str)>,
    female: bool,
    gender: &'static str,
    birth: Date,
    death: Option<Date>,
    /// Place among twins (1, 2).
    twin: Option<u8>,
    /// Born abroad: an index into [`ORIGINS`].
    origin: Option<usize>,
}

/// How much a record holds: a late duplicate registration holds little; the records of people
/// in much contact with the NHS (more of them old) hold nearly everything PDS can.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Depth {
    Duplicate,
    Typical,
    Full,
}

/// A household as its records see it.
struct House {
    /// Global place of the household's first record: its id.
    id: u64,
    district: u64,
    postcode: String,
    lines: Vec<String>,
    landline: Option<String>,
    /// Moved in.
    since: Date,
    practice: usize,
    people: Vec<Person>,
    /// Which person the duplicate record copies.
    duplicate_of: usize,
}

/// One generated population: `count` patients from `seed`.
pub struct Population {
    seed: u64,
    count: u64,
    order: Order,
    blocks: u64,
    districts: u64,
    area_offset: u64,
    practice_sizes: Vec<u64>,
    /// Exclusive end place of each practice's catchment.
    practice_ends: Vec<u64>,
    /// Cumulative pyramid weight of ages 0..=105.
    ages: Vec<u64>,
    zipf: (f64, f64),
}

impl Population {
    pub fn new(seed: u64, count: u64) -> Population {
        let blocks = count.div_ceil(BLOCK);
        let districts = (count / PER_DISTRICT)
            .clamp(blocks.clamp(1, 60), (AREAS.len() * 24) as u64)
            .max(1);
        let practice_sizes = practice_table(seed, count);
        let practice_ends = practice_sizes
            .iter()
            .scan(0, |end, size| {
                *end += size;
                Some(*end)
            })
            .collect();
        let mut ages = vec![0u64];
        for year in 0..=105usize {
            let band = AGE_BANDS[(year / 5).min(AGE_BANDS.len() - 1)];
            let last = *ages.last().expect("one");
            ages.push(last + band * 100 / 5);
        }
        let a = ZIPF_Q.powf(1.0 - ZIPF_S);
        let b = (ZIPF_N as f64 + ZIPF_Q).powf(1.0 - ZIPF_S);
        Population {
            seed,
            count,
            order: Order::new(seed, count),
            blocks,
            districts,
            area_offset: stream(seed, Tag::Areas, 0).below(AREAS.len() as u64),
            practice_sizes,
            practice_ends,
            ages,
            zipf: (a, b),
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The registered list size of each practice (the last one takes what is left).
    pub fn practice_sizes(&self) -> &[u64] {
        &self.practice_sizes
    }

    /// Patient `i` (`i < count`).
    pub fn patient(&self, i: u64) -> Value {
        self.record(i).0
    }

    /// Patient `i`, and — when it is a superseded duplicate — the NHS number of the record it
    /// duplicates (the survivor of the merge that should follow).
    pub fn record(&self, i: u64) -> (Value, Option<NhsNumber>) {
        let (doc, survivor) = self.record_and_survivor(i);
        (doc, survivor.map(nhs_number))
    }

    /// Patient `i`, and the index of the patient it duplicates, if it is a duplicate.
    fn record_and_survivor(&self, i: u64) -> (Value, Option<u64>) {
        assert!(i < self.count, "patient {i} of {}", self.count);
        let place = self.order.place(i);
        let (block, offset) = (place / BLOCK, place % BLOCK);
        let layout = self.layout(block);
        let h = layout
            .iter()
            .find(|h| offset < h.start + h.records())
            .expect("every place is in a household");
        let house = self.house(block, h);
        let member = offset - h.start;
        let nhs = nhs_number(i);
        if member == h.people {
            let target = block * BLOCK + h.start + house.duplicate_of as u64;
            let doc = self.document(&house, house.duplicate_of, nhs, place, true);
            (doc, Some(self.order.patient(target)))
        } else {
            (
                self.document(&house, member as usize, nhs, place, false),
                None,
            )
        }
    }

    /// How block `block` is cut into households and postcodes.
    fn layout(&self, block: u64) -> Vec<Household> {
        let len = BLOCK.min(self.count - block * BLOCK);
        let mut r = stream(self.seed, Tag::Block, block);
        let units = 2 + r.below(6);
        let mut out: Vec<Household> = Vec::with_capacity(32);
        let mut at = 0;
        while at < len {
            let deceased = chance(&mut r, DECEASED_HOUSEHOLDS, 10_000);
            let size = household_size(&mut r);
            let duplicate = chance(&mut r, DUPLICATE_HOUSEHOLDS, 10_000);
            let people = if deceased { 1 } else { size }.min(len - at);
            let duplicate = duplicate && !deceased && at + people < len;
            out.push(Household {
                start: at,
                people,
                duplicate,
                deceased,
                unit: (at * units / len).min(units - 1),
                number: 0,
            });
            at += people + u64::from(duplicate);
        }
        let mut numbers = [0u64; UNITS as usize];
        for h in &mut out {
            h.number = numbers[h.unit as usize];
            numbers[h.unit as usize] += 1;
        }
        out
    }

    /// The outward code of a district: a postcode area and a district number.
    fn outward(&self, district: u64) -> (String, usize) {
        let e = district + self.area_offset;
        let area = (e % AREAS.len() as u64) as usize;
        (
            format!("{}{}", AREAS[area].0, e / AREAS.len() as u64 + 1),
            area,
        )
    }

    /// District and postcode of postcode `unit` of `block`: districts are runs of blocks.
    fn postcode(&self, block: u64, unit: u64) -> (u64, String) {
        let district = block * self.districts / self.blocks;
        let first = (district * self.blocks).div_ceil(self.districts);
        let local = ((block - first) * UNITS + unit) % UNITS_PER_DISTRICT;
        let inward =
            (local * 1237 + (district * 7 + self.seed % UNITS_PER_DISTRICT)) % UNITS_PER_DISTRICT;
        let (outward, _) = self.outward(district);
        let code = format!(
            "{outward} {}{}{}",
            inward / 400,
            LETTERS[((inward % 400) / 20) as usize] as char,
            LETTERS[(inward % 20) as usize] as char
        );
        (district, code)
    }

    fn practice_at(&self, place: u64) -> usize {
        self.practice_ends
            .partition_point(|&end| end <= place)
            .min(self.practice_ends.len().saturating_sub(1))
    }

    /// An age drawn from the pyramid, between `lo` and `hi` years.
    fn age_between(&self, r: &mut Stream, lo: u64, hi: u64) -> u64 {
        let (lo, hi) = (lo.min(105) as usize, hi.min(105) as usize);
        let (from, to) = (self.ages[lo], self.ages[hi + 1]);
        let x = from + r.below((to - from).max(1));
        (self.ages.partition_point(|&c| c <= x) - 1).clamp(lo, hi) as u64
    }

    fn born(&self, r: &mut Stream, age: u64) -> Date {
        days_before(REFERENCE, age * 36525 / 100 + r.below(365))
    }

    /// A family name rank (0 = the commonest), Zipf-like.
    fn family_rank(&self, r: &mut Stream) -> u64 {
        let (a, b) = self.zipf;
        let x = (a - unit(r) * (a - b)).powf(1.0 / (1.0 - ZIPF_S)) - ZIPF_Q;
        (x.max(0.0) as u64).min(ZIPF_N - 1)
    }

    /// A family name: mostly by rank; for a household born abroad, often one of its country's;
    /// now and then double-barrelled.
    fn family(&self, r: &mut Stream, origin: Option<usize>) -> String {
        if let Some(o) = origin {
            if chance(r, 45, 100) {
                return popular(r, ORIGINS[o].families).to_string();
            }
        }
        let name = family_name(self.family_rank(r));
        if chance(r, 4, 1000) {
            let second = family_name(self.family_rank(r));
            if name.len() + second.len() < 35 && name != second {
                return format!("{name}-{second}");
            }
        }
        name
    }

    fn given(
        &self,
        r: &mut Stream,
        female: bool,
        birth: Date,
        origin: Option<usize>,
    ) -> Vec<&'static str> {
        let era = match birth.year() {
            ..=1949 => 0,
            1950..=1979 => 1,
            1980..=1999 => 2,
            _ => 3,
        };
        let list = match (origin, female) {
            (Some(o), true) if chance(r, 70, 100) => ORIGINS[o].female,
            (Some(o), false) if chance(r, 70, 100) => ORIGINS[o].male,
            (_, true) => GIVEN_FEMALE[era],
            (_, false) => GIVEN_MALE[era],
        };
        let count = match r.below(100) {
            0..=34 => 1,
            35..=89 => 2,
            _ => 3,
        };
        let mut names = vec![popular(r, list)];
        for _ in 1..count {
            let n = popular(r, list);
            if !names.contains(&n) {
                names.push(n);
            }
        }
        names
    }

    fn person(
        &self,
        r: &mut Stream,
        age: u64,
        female: bool,
        family: String,
        origin: Option<usize>,
    ) -> Person {
        let birth = self.born(r, age);
        let gender = if chance(r, 2, 10_000) {
            "unknown"
        } else if female {
            "female"
        } else {
            "male"
        };
        Person {
            given: self.given(r, female, birth, origin),
            family,
            previous: None,
            female,
            gender,
            birth,
            death: None,
            twin: None,
            origin,
        }
    }

    /// The household's people (and how its duplicate record, if any, is chosen).
    fn people(&self, r: &mut Stream, h: &Household, origin: Option<usize>) -> Vec<Person> {
        if h.deceased {
            // a former resident: died in the last 30 years, mostly old
            let died = days_before(REFERENCE, r.below(30 * 365));
            let at_death = if chance(r, 8, 100) {
                r.below(55)
            } else {
                55 + r.below(26) + r.below(26)
            };
            let female = chance(r, 52, 100);
            let family = self.family(r, origin);
            let mut p = self.person(r, 0, female, family, origin);
            p.birth = days_before(died, at_death * 36525 / 100 + r.below(365));
            p.given = self.given(r, female, p.birth, origin);
            p.death = Some(died);
            self.maybe_married(r, &mut p, origin);
            return vec![p];
        }
        let n = h.people;
        let household_family = self.family(r, origin);
        if n == 1 {
            // people living alone are older than adults at large (the elder of two draws)
            let age = self
                .age_between(r, 18, 105)
                .max(self.age_between(r, 18, 105));
            let female = chance(r, 54, 100);
            let mut p = self.person(r, age, female, household_family, origin);
            self.maybe_married(r, &mut p, origin);
            return vec![p];
        }
        if chance(r, 8, 100) {
            // sharers: unrelated adults
            return (0..n)
                .map(|_| {
                    let age = self.age_between(r, 18, 35);
                    let female = chance(r, 50, 100);
                    let family = self.family(r, origin);
                    self.person(r, age, female, family, origin)
                })
                .collect();
        }
        let partner = chance(r, if n == 2 { 78 } else { 80 }, 100);
        let elder = n >= 3 && chance(r, 12, 100);
        let adults = 1 + u64::from(partner) + u64::from(elder);
        let kids = n - adults;
        let head_age = if kids > 0 {
            (self.age_between(r, 21, 60) + self.age_between(r, 21, 60)) / 2
        } else {
            // couples without children at home: mostly past child-rearing
            self.age_between(r, 18, 100)
                .max(self.age_between(r, 18, 100))
        };
        let head_female = chance(r, 50, 100);
        let mut out = vec![self.person(r, head_age, head_female, household_family.clone(), origin)];
        let mut other_family = None;
        if partner {
            let partner_age = (head_age + r.below(11)).saturating_sub(5).clamp(18, 105);
            let partner_female = if chance(r, 95, 100) {
                !head_female
            } else {
                head_female
            };
            let mut p = self.person(
                r,
                partner_age,
                partner_female,
                household_family.clone(),
                origin,
            );
            if head_female != partner_female {
                // she took his name (keeping her own as a maiden name), or kept hers
                let (woman, man_family) = if head_female {
                    (0, household_family.clone())
                } else {
                    (1, household_family.clone())
                };
                let own = self.family(r, origin);
                let took = chance(r, 65, 100) && own != man_family;
                let woman_ref = if woman == 0 { &mut out[0] } else { &mut p };
                if took {
                    let married = self.married_on(r, woman_ref);
                    woman_ref.previous = Some((own, married, "maiden"));
                } else {
                    woman_ref.family = own.clone();
                    other_family = Some(own);
                }
            } else {
                let own = self.family(r, origin);
                p.family = own.clone();
                other_family = Some(own);
            }
            if head_age >= 65 && chance(r, 22, 100) {
                let lived = days_between(p.birth, REFERENCE);
                let ago = r.below((15 * 365).min(lived.saturating_sub(18 * 365)).max(1));
                p.death = Some(days_before(REFERENCE, ago));
            }
            out.push(p);
        }
        if elder {
            let age = (head_age + 22 + r.below(14)).min(104);
            let female = chance(r, 70, 100);
            let family = if chance(r, 60, 100) {
                household_family.clone()
            } else {
                self.family(r, origin)
            };
            let mut p = self.person(r, age, female, family, origin);
            if chance(r, 15, 100) {
                let lived = days_between(p.birth, REFERENCE);
                p.death = Some(days_before(
                    REFERENCE,
                    r.below((10 * 365).min(lived).max(1)),
                ));
            }
            out.push(p);
        }
        // the head was 18 to 45 at each child's birth; children stay until 24 at most
        let oldest_child = head_age.saturating_sub(18).min(24);
        let youngest_child = head_age.saturating_sub(45).min(oldest_child);
        for k in 0..kids {
            if k > 0 && out.last().is_some_and(|p| p.twin.is_none()) && chance(r, 2, 100) {
                // a twin of the one before
                let mut twin = out.last().expect("a child").clone();
                let female = chance(r, 50, 100);
                twin.female = female;
                twin.gender = if female { "female" } else { "male" };
                twin.given = self.given(r, female, twin.birth, twin.origin);
                twin.twin = Some(2);
                out.last_mut().expect("a child").twin = Some(1);
                out.push(twin);
                continue;
            }
            let age = youngest_child + r.below(oldest_child - youngest_child + 1);
            let female = chance(r, 49, 100);
            let family = match &other_family {
                Some(f) if chance(r, 15, 100) => f.clone(),
                _ => household_family.clone(),
            };
            // children of a household born abroad were mostly born here
            let origin = origin.filter(|_| age >= 10 && chance(r, 40, 100));
            out.push(self.person(r, age, female, family, origin));
        }
        out
    }

    /// A woman living alone (or who has died) may have married and taken a name.
    fn maybe_married(&self, r: &mut Stream, p: &mut Person, origin: Option<usize>) {
        if p.female && age(p.birth, p.death.unwrap_or(REFERENCE)) >= 25 && chance(r, 55, 100) {
            let own = self.family(r, origin);
            if own != p.family {
                let married = self.married_on(r, p);
                p.previous = Some((own, married, "maiden"));
            }
        }
    }

    /// When a woman married (and took a name): in her twenties or early thirties, while alive.
    fn married_on(&self, r: &mut Stream, p: &Person) -> Date {
        let at = days_after(p.birth, (20 + r.below(16)) * 365 + r.below(365));
        at.min(days_before(p.death.unwrap_or(REFERENCE), 30))
            .max(p.birth)
    }

    fn house(&self, block: u64, h: &Household) -> House {
        let id = block * BLOCK + h.start;
        let mut r = stream(self.seed, Tag::House, id);
        // about one household in six was born abroad (the 2021 census: 17 % of residents)
        let origin = if chance(&mut r, 1_700, 10_000) {
            let mut x = r.below(ORIGINS.iter().map(|o| o.per_10k).sum());
            Some(
                ORIGINS
                    .iter()
                    .position(|o| {
                        let hit = x < o.per_10k;
                        x = x.saturating_sub(o.per_10k);
                        hit
                    })
                    .unwrap_or(0),
            )
        } else {
            None
        };
        let people = self.people(&mut r, h, origin);
        let (district, postcode) = self.postcode(block, h.unit);
        let (_, area) = self.outward(district);
        let (_, town, county) = AREAS[area];
        // the street of the postcode, the house of the household
        let mut s = stream(self.seed, Tag::Street, block * UNITS + h.unit);
        let street = format!(
            "{} {}",
            popular(&mut s, STREET_ROOTS),
            popular(&mut s, STREET_TYPES)
        );
        let flats = chance(&mut s, 18, 100);
        let first = 1 + s.below(60);
        let step = 1 + s.below(2);
        let building = format!(
            "{} {}",
            popular(&mut s, STREET_ROOTS),
            BUILDING_TYPES[s.below(BUILDING_TYPES.len() as u64) as usize]
        );
        let locality = chance(&mut s, 85, 100).then(|| locality_name(district * 10 + s.below(3)));
        let with_county = chance(&mut s, 85, 100);
        let mut lines = if flats {
            vec![
                format!("Flat {}", h.number + 1),
                building,
                format!("{} {street}", first),
            ]
        } else if chance(&mut r, 15, 100) {
            // a house with a name as well as a number
            vec![
                format!(
                    "{} {}",
                    popular(&mut r, STREET_ROOTS),
                    HOUSE_NAMES[r.below(HOUSE_NAMES.len() as u64) as usize]
                ),
                format!("{} {street}", first + h.number * step),
            ]
        } else {
            vec![format!("{} {street}", first + h.number * step)]
        };
        lines.extend(locality);
        lines.push(town.to_string());
        if with_county && lines.len() < 5 {
            lines.push(county.to_string());
        }
        lines.truncate(5);
        let landline = chance(&mut r, 80, 100).then(|| {
            let prefix = DRAMA_LANDLINES
                .iter()
                .find(|(t, _)| *t == town)
                .map_or(DRAMA_OTHER, |(_, p)| *p);
            format!("{prefix}{:03}", r.below(1000))
        });
        let oldest = people.iter().map(|p| p.birth).min().unwrap_or(REFERENCE);
        // moved in as an adult, at most 30 years ago, and before anyone there died
        let to = people
            .iter()
            .filter_map(|p| p.death)
            .min()
            .unwrap_or(REFERENCE);
        let adult_since = days_after(oldest, 18 * 365);
        let from = if adult_since <= to {
            adult_since.max(days_before(to, 30 * 365))
        } else {
            oldest
        };
        let since = between(&mut r, from.min(to), to);
        let living: Vec<usize> = (0..people.len())
            .filter(|&k| people[k].death.is_none())
            .collect();
        let duplicate_of = if living.is_empty() {
            0
        } else {
            living[r.below(living.len() as u64) as usize]
        };
        House {
            id,
            district,
            postcode,
            lines,
            landline,
            since,
            practice: self.practice_at(id),
            people,
            duplicate_of,
        }
    }

    /// The record of person `m` of `house` (or of their duplicate registration).
    fn document(
        &self,
        house: &House,
        m: usize,
        nhs: NhsNumber,
        place: u64,
        duplicate: bool,
    ) -> Value {
        let p = &house.people[m];
        let mut r = stream(self.seed, Tag::Person, place);
        let nhs = nhs.to_string();
        let restricted = !duplicate && chance(&mut r, RESTRICTED_PEOPLE, 10_000);
        let end = p.death.unwrap_or(REFERENCE);
        let years = age(p.birth, end);
        let adult = years >= 18;
        let depth = if duplicate {
            Depth::Duplicate
        } else if chance(
            &mut r,
            match years {
                60.. => 90,
                18.. => 75,
                _ => 35,
            },
            100,
        ) {
            Depth::Full
        } else {
            Depth::Typical
        };
        let verified = if duplicate {
            ("02", "Number present but not traced")
        } else {
            ("01", "Number present and verified")
        };
        let mut doc = Map::new();
        doc.insert("resourceType".into(), json!("Patient"));
        doc.insert("id".into(), json!(nhs));
        doc.insert(
            "identifier".into(),
            json!([{"system": NHS_NUMBER_SYSTEM, "value": nhs, "extension": [{
                "url": format!("{EXT}NHSNumberVerificationStatus"),
                "valueCodeableConcept": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatus",
                    "version": "1.0.0", "code": verified.0, "display": verified.1}]}}]}]),
        );
        doc.insert(
            "meta".into(),
            json!({"versionId": "1", "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                "code": if restricted { "R" } else { "U" }, "display": if restricted { "restricted" } else { "unrestricted" }}]}),
        );
        doc.insert(
            "name".into(),
            Value::Array(self.names(&mut r, p, adult, depth)),
        );
        doc.insert("gender".into(), json!(p.gender));
        doc.insert("birthDate".into(), json!(ymd(p.birth)));
        if let Some(t) = p.twin {
            doc.insert("multipleBirthInteger".into(), json!(t));
        }
        if let Some(d) = p.death {
            doc.insert(
                "deceasedDateTime".into(),
                json!(format!("{}T00:00:00+00:00", ymd(d))),
            );
        }
        let moved_in = house.since.max(p.birth);
        let registered = if duplicate {
            between(&mut r, moved_in, end)
        } else {
            between(&mut r, p.birth.max(days_before(moved_in, 5 * 365)), end)
        };
        let addresses = self.addresses(&mut r, house, p, moved_in, depth);
        let temp = addresses.iter().any(|a| a["use"] == "temp");
        doc.insert("address".into(), Value::Array(addresses));
        doc.insert(
            "telecom".into(),
            Value::Array(self.telecoms(&mut r, house, p, moved_in, depth, temp)),
        );
        if !duplicate {
            let contacts = self.contacts(&mut r, house, p, years, depth == Depth::Full);
            if !contacts.is_empty() {
                doc.insert("contact".into(), Value::Array(contacts));
            }
        }
        let removal = !duplicate && p.death.is_none() && adult && chance(&mut r, 8, 1000);
        let practice = if chance(&mut r, 4, 100) {
            (house.practice + 1 + r.below(3) as usize).min(self.practice_sizes.len() - 1)
        } else {
            house.practice
        };
        let ods = practice_code(self.seed, practice);
        if !removal {
            doc.insert(
                "generalPractitioner".into(),
                json!([{"id": item_id(&mut r, 0), "type": "Organization", "identifier": {
                    "system": ODS_SYSTEM, "value": ods, "period": {"start": ymd(registered)}}}]),
            );
            doc.insert(
                "managingOrganization".into(),
                json!({"type": "Organization", "identifier": {"system": ODS_SYSTEM, "value": ods,
                    "period": {"start": ymd(registered)}}}),
            );
        }
        let extensions = self.extensions(&mut r, house, p, &ods, years, depth, removal);
        if !extensions.is_empty() {
            doc.insert("extension".into(), Value::Array(extensions));
        }
        Value::Object(doc)
    }

    fn names(&self, r: &mut Stream, p: &Person, adult: bool, depth: Depth) -> Vec<Value> {
        let (duplicate, full) = (depth == Depth::Duplicate, depth == Depth::Full);
        let years = age(p.birth, p.death.unwrap_or(REFERENCE));
        let prefix = if !adult {
            match (r.below(100), p.female, years) {
                (0..=49, _, _) => None,
                (_, true, _) => Some("Miss"),
                (_, false, 16..) => Some("Mr"),
                (_, false, _) => Some("Master"),
            }
        } else if chance(r, 2, 100) {
            Some("Dr")
        } else if !p.female {
            Some(if chance(r, 3, 1000) { "Rev" } else { "Mr" })
        } else if p.previous.as_ref().is_some_and(|(_, _, u)| *u == "maiden") {
            Some(if chance(r, 80, 100) { "Mrs" } else { "Ms" })
        } else {
            Some(match (years, r.below(100)) {
                (..=29, 0..=59) => "Miss",
                (..=29, _) => "Ms",
                (_, 0..=49) => "Ms",
                (_, 50..=79) => "Mrs",
                _ => "Miss",
            })
        };
        let suffix = (adult && chance(r, 15, 1000))
            .then(|| TITLES_SUFFIX[r.below(TITLES_SUFFIX.len() as u64) as usize]);
        let mut old = p.previous.clone();
        if old.is_none() && adult && !duplicate && chance(r, if full { 55 } else { 25 }, 100) {
            // an earlier name, changed by deed poll or on a divorce
            let family = self.family(r, p.origin);
            if family != p.family {
                let changed = between(
                    r,
                    days_after(p.birth, 18 * 365),
                    p.death.unwrap_or(REFERENCE),
                );
                old = Some((family, changed, "old"));
            }
        }
        if duplicate {
            old = None;
        }
        let usual_start = old.as_ref().map_or(p.birth, |(_, d, _)| *d);
        let mut usual = json!({"id": item_id(r, 0), "use": "usual", "period": {"start": ymd(usual_start)},
            "given": p.given, "family": p.family});
        if let Some(t) = prefix {
            usual["prefix"] = json!([t]);
        }
        if let Some(s) = suffix {
            usual["suffix"] = json!([s]);
        }
        let mut names = vec![usual];
        if let Some((family, changed, use_)) = old {
            let mut n = json!({"id": item_id(r, 1), "use": use_,
                "period": {"start": ymd(p.birth), "end": ymd(days_before(changed, 1).max(p.birth))},
                "given": p.given, "family": family});
            if p.female && use_ == "maiden" {
                n["prefix"] = json!(["Miss"]);
            }
            names.push(n);
        }
        if !duplicate && chance(r, if full { 12 } else { 5 }, 100) {
            let nick = if p.female {
                GIVEN_FEMALE[3]
            } else {
                GIVEN_MALE[3]
            };
            names.push(json!({"id": item_id(r, names.len()), "use": "nickname",
                "period": {"start": ymd(between(r, p.birth, p.death.unwrap_or(REFERENCE)))},
                "given": [popular(r, nick)], "family": p.family}));
        }
        names
    }

    fn address_key(kind: &str, value: u64) -> Value {
        json!({"url": format!("{EXT}AddressKey"), "extension": [
            {"url": "type", "valueCoding": {"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-AddressKeyType", "code": kind}},
            {"url": "value", "valueString": value.to_string()}]})
    }

    fn addresses(
        &self,
        r: &mut Stream,
        house: &House,
        p: &Person,
        moved_in: Date,
        depth: Depth,
    ) -> Vec<Value> {
        let duplicate = depth == Depth::Duplicate;
        let full = depth == Depth::Full;
        // PAF and UPRN keys of the household's address: unique per household
        let paf =
            10_000_000 + (house.id % 90_000_000 * 7_919 + self.seed % 90_000_000) % 90_000_000;
        let uprn = 100_000_000_000
            + (house.id % 900_000_000_000 * 104_729 % 900_000_000_000
                + self.seed % 900_000_000_000)
                % 900_000_000_000;
        let mut out = vec![
            json!({"id": item_id(r, 0), "period": {"start": ymd(moved_in)}, "use": "home",
            "line": house.lines, "postalCode": house.postcode,
            "extension": [Self::address_key("PAF", paf), Self::address_key("UPRN", uprn)]}),
        ];
        let years = age(p.birth, REFERENCE);
        let living = !duplicate && p.death.is_none();
        let student = (18..=22).contains(&years);
        let temp_share = match (student, full) {
            (true, _) => 75,
            (false, true) => 65,
            (false, false) => 8,
        };
        if living && years >= 17 && chance(r, temp_share, 100) {
            let text = if student && chance(r, 85, 100) {
                "Student Accommodation"
            } else {
                TEMP_KINDS[r.below(TEMP_KINDS.len() as u64) as usize]
            };
            let start = days_before(REFERENCE, r.below(400));
            let end = days_after(start, 180 + r.below(540));
            let (postcode, mut lines) = self.elsewhere(r, None);
            if text == "Student Accommodation" {
                lines.insert(0, format!("Room {}", 1 + r.below(400)));
            }
            out.push(json!({"id": item_id(r, out.len()), "period": {"start": ymd(start), "end": ymd(end)}, "use": "temp",
                "text": text, "line": lines, "postalCode": postcode,
                "extension": [Self::address_key("PAF", 10_000_000 + r.below(90_000_000)),
                              Self::address_key("UPRN", 100_000_000_000 + r.below(900_000_000_000))]}));
        }
        if living && (18..=67).contains(&years) && chance(r, if full { 80 } else { 45 }, 100) {
            // where they work: an office or a unit on an estate, in or near their district
            let (postcode, mut lines) = self.elsewhere(r, Some(house.district));
            let site = if chance(r, 50, 100) {
                format!(
                    "{} Business Park",
                    locality_name(house.district * 10 + r.below(10))
                )
            } else {
                format!("{} House", popular(r, STREET_ROOTS))
            };
            lines.insert(0, site);
            lines.insert(0, format!("Unit {}", 1 + r.below(40)));
            lines.truncate(5);
            let start = between(r, days_after(p.birth, 18 * 365), REFERENCE);
            out.push(json!({"id": item_id(r, out.len()), "period": {"start": ymd(start)}, "use": "work",
                "line": lines, "postalCode": postcode,
                "extension": [Self::address_key("PAF", 10_000_000 + r.below(90_000_000)),
                              Self::address_key("UPRN", 100_000_000_000 + r.below(900_000_000_000))]}));
        }
        let billing_share = match (full, years >= 75) {
            (true, _) => 55,
            (false, true) => 15,
            (false, false) => 3,
        };
        if living && years >= 18 && chance(r, billing_share, 100) {
            // a correspondence address: a relative's, a solicitor's, for a while
            let (postcode, lines) = self.elsewhere(r, None);
            let start = between(r, days_before(REFERENCE, 5 * 365).max(p.birth), REFERENCE);
            let end = days_after(start, 365 + r.below(5 * 365));
            out.push(json!({"id": item_id(r, out.len()), "period": {"start": ymd(start), "end": ymd(end)}, "use": "billing",
                "line": lines, "postalCode": postcode,
                "extension": [Self::address_key("PAF", 10_000_000 + r.below(90_000_000)),
                              Self::address_key("UPRN", 100_000_000_000 + r.below(900_000_000_000))]}));
        }
        out
    }

    /// A postcode and address lines (street, locality, town) somewhere else: anywhere, or in
    /// or next to `near`.
    fn elsewhere(&self, r: &mut Stream, near: Option<u64>) -> (String, Vec<String>) {
        let block = match near {
            Some(d) => {
                let first = (d * self.blocks).div_ceil(self.districts);
                (first + r.below((self.blocks / self.districts).max(1))).min(self.blocks - 1)
            }
            None => r.below(self.blocks),
        };
        let (district, postcode) = self.postcode(block, r.below(UNITS));
        let (_, area) = self.outward(district);
        let street = format!("{} {}", popular(r, STREET_ROOTS), popular(r, STREET_TYPES));
        let lines = vec![
            format!("{} {street}", 1 + r.below(120)),
            locality_name(district * 10 + r.below(3)),
            AREAS[area].1.to_string(),
        ];
        (postcode, lines)
    }

    fn telecoms(
        &self,
        r: &mut Stream,
        house: &House,
        p: &Person,
        moved_in: Date,
        depth: Depth,
        temp_address: bool,
    ) -> Vec<Value> {
        let duplicate = depth == Depth::Duplicate;
        let full = depth == Depth::Full;
        let mut out = Vec::new();
        let end = p.death.unwrap_or(REFERENCE);
        let years = age(p.birth, end);
        let period = |r: &mut Stream, from: Date, ended: bool| {
            let start = between(r, from.min(end), end);
            if ended && start < end {
                json!({"start": ymd(start), "end": ymd(between(r, start, end))})
            } else {
                json!({"start": ymd(start)})
            }
        };
        if let Some(landline) = &house.landline {
            out.push(
                json!({"id": item_id(r, out.len()), "period": {"start": ymd(moved_in)},
                "system": "phone", "value": landline, "use": "home"}),
            );
        }
        // from an age, and not before such numbers were common (mobiles 1995, e-mail 1998)
        let from = |y: u64, year: i32| {
            days_after(p.birth, y * 365)
                .max(Date::from_calendar_date(year, time::Month::January, 1).expect("a date"))
        };
        if years >= 11 && chance(r, if duplicate { 40 } else { 90 }, 100) {
            let pd = period(r, from(11, 1995), false);
            out.push(
                json!({"id": item_id(r, out.len()), "period": pd, "system": "phone",
                "value": format!("{DRAMA_MOBILE}{:03}", r.below(1000)), "use": "mobile"}),
            );
        }
        if duplicate {
            return out;
        }
        if years >= 16 && chance(r, if full { 98 } else { 80 }, 100) {
            let ended = chance(r, 6, 100);
            let pd = period(r, from(16, 1998), ended);
            let domain = ["example.com", "example.org", "example.net"][r.below(3) as usize];
            let value = email(r, p, domain);
            out.push(
                json!({"id": item_id(r, out.len()), "period": pd, "system": "email",
                "value": value, "use": "home"}),
            );
        }
        let working = (18..=67).contains(&years);
        if working && chance(r, if full { 85 } else { 45 }, 100) {
            let ended = chance(r, 15, 100);
            let pd = period(r, from(18, 1970), ended);
            let (_, area) = self.outward(house.district);
            let prefix = DRAMA_LANDLINES
                .iter()
                .find(|(t, _)| *t == AREAS[area].1)
                .map_or(DRAMA_OTHER, |(_, p)| *p);
            out.push(
                json!({"id": item_id(r, out.len()), "period": pd, "system": "phone",
                "value": format!("{prefix}{:03}", r.below(1000)), "use": "work"}),
            );
        }
        if working && chance(r, if full { 75 } else { 30 }, 100) {
            let pd = period(r, from(18, 1998), false);
            out.push(
                json!({"id": item_id(r, out.len()), "period": pd, "system": "email",
                "value": email(r, p, "work.example.com"), "use": "work"}),
            );
        }
        if temp_address && chance(r, 75, 100) {
            let start = between(r, days_before(REFERENCE, 400), REFERENCE);
            out.push(json!({"id": item_id(r, out.len()), "period": {"start": ymd(start)}, "system": "phone",
                "value": format!("{DRAMA_OTHER}{:03}", r.below(1000)), "use": "temp"}));
        }
        if chance(r, if full { 10 } else { 1 }, 100) {
            let pd = period(r, from(0, 1980), false);
            out.push(json!({"id": item_id(r, out.len()), "period": pd, "system": "other",
                "value": house.landline.clone().unwrap_or_else(|| format!("{DRAMA_OTHER}{:03}", r.below(1000))), "use": "home",
                "extension": [{"url": format!("{EXT}OtherContactSystem"), "valueCoding": {
                    "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-OtherContactSystem",
                    "code": "textphone", "display": "Minicom (Textphone)"}}]}));
        }
        out
    }

    fn contacts(
        &self,
        r: &mut Stream,
        house: &House,
        p: &Person,
        years: u64,
        full: bool,
    ) -> Vec<Value> {
        let n = if full {
            3 + r.below(3)
        } else if years < 18 {
            1 + r.below(3)
        } else {
            match r.below(100) {
                0..=9 => 0,
                10..=44 => 1,
                45..=79 => 2,
                80..=94 => 3,
                _ => 4,
            }
        };
        let end = p.death.unwrap_or(REFERENCE);
        (0..n as usize)
            .map(|k| {
                let mobile = format!("{DRAMA_MOBILE}{:03}", r.below(1000));
                let phone = match &house.landline {
                    Some(landline) if k == 0 && chance(r, 30, 100) => landline.clone(),
                    _ => mobile,
                };
                let mut telecom = vec![json!({"system": "phone", "value": phone})];
                if chance(r, 50, 100) {
                    let (_, area) = self.outward(house.district);
                    let prefix = DRAMA_LANDLINES
                        .iter()
                        .find(|(t, _)| *t == AREAS[area].1)
                        .map_or(DRAMA_OTHER, |(_, p)| *p);
                    telecom.push(json!({"system": "phone", "value": format!("{prefix}{:03}", r.below(1000))}));
                }
                if chance(r, 50, 100) {
                    telecom.push(json!({"system": "email", "value": format!("{}.{}@example.org",
                        popular(r, GIVEN_FEMALE[1]).to_lowercase(), letters(&family_name(self.family_rank(r))))}));
                }
                let start = between(r, p.birth.max(days_before(end, 15 * 365)), end);
                let period = if chance(r, 15, 100) && start < end {
                    json!({"start": ymd(start), "end": ymd(between(r, start, end))})
                } else {
                    json!({"start": ymd(start)})
                };
                json!({"id": item_id(r, k), "period": period,
                    "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131",
                        "code": "C", "display": "Emergency Contact"}]}],
                    "telecom": telecom})
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn extensions(
        &self,
        r: &mut Stream,
        house: &House,
        p: &Person,
        ods: &str,
        years: u64,
        depth: Depth,
        removal: bool,
    ) -> Vec<Value> {
        let duplicate = depth == Depth::Duplicate;
        let full = depth == Depth::Full;
        let mut out = Vec::new();
        let reference = |url: &str, code: String| json!({"url": format!("{EXT}{url}"), "valueReference": {"identifier": {"system": ODS_SYSTEM, "value": code}}});
        let living = p.death.is_none();
        if !duplicate && (full || chance(r, if living { 88 } else { 60 }, 100)) {
            out.push(reference(
                "NominatedPharmacy",
                pharmacy_code(house.district * 6 + r.below(6)),
            ));
        }
        if !duplicate && chance(r, if full { 75 } else { 12 }, 100) {
            out.push(reference("PreferredDispenserOrganization", ods.to_string()));
        }
        if !duplicate && years >= 30 && chance(r, if full { 65 } else { 6 }, 100) {
            out.push(reference(
                "MedicalApplianceSupplier",
                format!("FA{:03}", 100 + r.below(60)),
            ));
        }
        if p.death.is_some() {
            out.push(json!({"url": format!("{EXT}DeathNotificationStatus"),
                "extension": [{"url": "deathNotificationStatus", "valueCodeableConcept": {"coding": [{
                    "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-DeathNotificationStatus", "version": "1.0.0", "code": "2",
                    "display": "Formal - death notice received from Registrar of Deaths"}]}}]}));
        }
        if duplicate {
            return out;
        }
        if let Some((code, display)) = p.origin.and_then(|o| ORIGINS[o].language) {
            if chance(r, if full { 95 } else { 70 }, 100) {
                out.push(json!({"url": format!("{EXT}NHSCommunication"), "extension": [
                    {"url": "language", "valueCodeableConcept": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-HumanLanguage",
                        "version": "1.0.0", "code": code, "display": display}]}},
                    {"url": "interpreterRequired", "valueBoolean": chance(r, 35, 100)}]}));
            }
        }
        if full || chance(r, 45, 100) {
            let mut prefs = Vec::new();
            if chance(r, if full { 70 } else { 10 }, 100) {
                let (code, display) =
                    WRITTEN_FORMATS[r.below(WRITTEN_FORMATS.len() as u64) as usize];
                prefs.push(json!({"url": "PreferredWrittenCommunicationFormat", "valueCodeableConcept": {"coding": [{
                    "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-PreferredWrittenCommunicationFormat", "code": code, "display": display}]}}));
            }
            let mut x = r.below(100);
            let (code, display, _) = CONTACT_METHODS
                .iter()
                .find(|(_, _, w)| {
                    let hit = x < *w;
                    x = x.saturating_sub(*w);
                    hit
                })
                .copied()
                .unwrap_or(CONTACT_METHODS[0]);
            prefs.push(json!({"url": "PreferredContactMethod", "valueCodeableConcept": {"coding": [{
                "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-PreferredContactMethod", "code": code, "display": display}]}}));
            if chance(r, if full { 90 } else { 55 }, 100) {
                prefs.push(json!({"url": "PreferredContactTimes",
                    "valueString": CONTACT_TIMES[r.below(CONTACT_TIMES.len() as u64) as usize]}));
            }
            out.push(json!({"url": format!("{EXT}ContactPreference"), "extension": prefs}));
        }
        if full || chance(r, 90, 100) {
            let place = match p.origin {
                Some(o) if chance(r, 50, 100) => {
                    json!({"city": ORIGINS[o].city, "country": ORIGINS[o].country})
                }
                Some(o) => json!({"country": ORIGINS[o].country}),
                None => {
                    let area = if chance(r, 60, 100) {
                        self.outward(house.district).1
                    } else {
                        r.below(AREAS.len() as u64) as usize
                    };
                    json!({"city": AREAS[area].1, "district": AREAS[area].2, "country": "GBR"})
                }
            };
            out.push(json!({"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueAddress": place}));
        }
        if removal {
            let (code, display) = REMOVALS[r.below(REMOVALS.len() as u64) as usize];
            let start = days_before(REFERENCE, r.below(5 * 365));
            out.push(json!({"url": "https://fhir.nhs.uk/StructureDefinition/Extension-PDS-RemovalFromRegistration", "extension": [
                {"url": "removalFromRegistrationCode", "valueCodeableConcept": {"coding": [{
                    "system": "https://fhir.nhs.uk/CodeSystem/PDS-RemovalReasonExitCode", "code": code, "display": display}]}},
                {"url": "effectiveTime", "valuePeriod": {"start": format!("{}T00:00:00+00:00", ymd(start))}}]}));
        }
        out
    }
}

fn household_size(r: &mut Stream) -> u64 {
    let mut x = r.below(100);
    for (k, share) in HOUSEHOLD_SIZES.iter().enumerate() {
        if x < *share {
            return k as u64 + 1;
        }
        x -= share;
    }
    HOUSEHOLD_SIZES.len() as u64
}

/// The practice table of a population: list sizes drawn until they hold `count` people.
fn practice_table(seed: u64, count: u64) -> Vec<u64> {
    let mut r = stream(seed, Tag::Practices, 0);
    let mut sizes = Vec::new();
    let mut total = 0;
    while total < count {
        let size = (PRACTICE_MEDIAN * (PRACTICE_SIGMA * normal(&mut r)).exp()).round() as u64;
        let size = size.clamp(PRACTICE_MIN, PRACTICE_MAX);
        sizes.push(size.min(count - total));
        total += size;
    }
    sizes
}

/// The ODS code of practice `k`: a letter and five digits, distinct for each practice.
fn practice_code(seed: u64, k: usize) -> String {
    const REGION: &[u8] = b"ABCDEFGHJKLMNPY";
    let k = k as u64;
    let n = REGION.len() as u64;
    format!(
        "{}{:05}",
        REGION[((k + seed % n) % n) as usize] as char,
        10_000 + ((k / n) * 7 + seed % 90_000) % 90_000
    )
}

/// The ODS code of pharmacy `k`: F, two letters, three digits.
fn pharmacy_code(k: u64) -> String {
    format!(
        "F{}{}{:03}",
        LETTERS[((k / 1000 / 20) % 20) as usize] as char,
        LETTERS[((k / 1000) % 20) as usize] as char,
        k % 1000
    )
}

/// The family name of rank `rank` (0-based).
pub fn family_name(rank: u64) -> String {
    if let Some(name) = FAMILY_HEAD.get(rank as usize) {
        return (*name).to_string();
    }
    // a bijection of the tail ranks onto onset × middle × coda, so that neighbouring ranks
    // do not share their endings
    let space = (ONSETS.len() * MIDDLES.len() * CODAS.len()) as u64;
    let k = ((rank - FAMILY_HEAD.len() as u64) % space * 7_919 + 13) % space;
    let (o, k) = (k % ONSETS.len() as u64, k / ONSETS.len() as u64);
    let (m, c) = (k % MIDDLES.len() as u64, k / MIDDLES.len() as u64);
    format!(
        "{}{}{}",
        ONSETS[o as usize], MIDDLES[m as usize], CODAS[c as usize]
    )
}

fn locality_name(k: u64) -> String {
    let k = mix(k, 0x0010_CA11) % (ONSETS.len() * CODAS.len()) as u64;
    let (o, c) = (k % ONSETS.len() as u64, k / ONSETS.len() as u64);
    format!("{}{}", ONSETS[o as usize], CODAS[c as usize])
}

/// The ASCII letters of a name, lower case (for e-mail addresses).
fn letters(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphabetic)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn email(r: &mut Stream, p: &Person, domain: &str) -> String {
    let given = letters(p.given[0]);
    let family = letters(&p.family);
    match r.below(4) {
        0 => format!("{given}.{family}@{domain}"),
        1 => format!("{given}{family}{}@{domain}", r.below(100)),
        2 => format!("{}{family}{}@{domain}", &given[..1], p.birth.year() % 100),
        _ => format!("{given}.{family}{}@{domain}", r.below(1000)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Patient, Schemas};
    use crate::import::{validate_records, Location};
    use std::collections::{HashMap, HashSet};

    const TODAY: Date = time::macros::date!(2026 - 11 - 27);
    const SEED: u64 = 20261127;

    /// The people of every household of blocks `blocks` (duplicates left out).
    fn people(pop: &Population, blocks: impl Iterator<Item = u64>) -> Vec<(u64, u64, Person)> {
        let mut out = Vec::new();
        for b in blocks {
            for h in pop.layout(b) {
                for p in pop.house(b, &h).people {
                    out.push((b, h.unit, p));
                }
            }
        }
        out
    }

    #[test]
    fn the_order_is_a_permutation() {
        for count in [1, 2, 50, 1000, 12_345] {
            let order = Order::new(7, count);
            let places: HashSet<u64> = (0..count).map(|i| order.place(i)).collect();
            assert_eq!(places.len() as u64, count);
            assert!(places.iter().all(|&p| p < count));
            assert!((0..count).all(|i| order.patient(order.place(i)) == i));
        }
    }

    #[test]
    fn records_are_valid_and_import_accepts_them() {
        let schemas = Schemas::compile();
        for (count, step) in [(100_000u64, 41u64), (50, 1)] {
            let pop = Population::new(42, count);
            let records: Vec<(Location, Value)> = (0..count)
                .step_by(step as usize)
                .map(|i| (Location::Line(i as usize + 1), pop.patient(i)))
                .collect();
            for (_, doc) in records.iter().step_by(25) {
                Patient::parse(doc.clone(), &schemas, TODAY)
                    .unwrap_or_else(|e| panic!("{e}: {doc}"));
            }
            let n = records.len();
            let mut id = || "X1".to_string();
            let valid = validate_records(records, &schemas, TODAY, &mut id)
                .unwrap_or_else(|p| panic!("{:?}", &p[..p.len().min(3)]));
            assert_eq!(valid.len(), n);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        let (a, b, c) = (
            Population::new(7, 10_000),
            Population::new(7, 10_000),
            Population::new(8, 10_000),
        );
        for i in [0, 1, 17, 9_999] {
            assert_eq!(a.patient(i).to_string(), b.patient(i).to_string());
            assert_ne!(a.patient(i), c.patient(i));
            assert_eq!(a.patient(i)["id"], nhs_number(i).to_string());
        }
    }

    #[test]
    fn a_sample_is_the_full_streams_lines() {
        let write = |every| {
            let (mut out, mut merges) = (Vec::new(), Vec::new());
            super::super::write_ndjson(
                super::super::Shape::National,
                3,
                3_000,
                every,
                &mut out,
                Some(&mut merges),
                || {},
            )
            .unwrap();
            (
                String::from_utf8(out).unwrap(),
                String::from_utf8(merges).unwrap(),
            )
        };
        let (all, all_merges) = write(1);
        let (sample, sample_merges) = write(7);
        let lines: Vec<&str> = all.lines().collect();
        assert_eq!(lines.len(), 3_000);
        let expected: Vec<&str> = lines.iter().step_by(7).copied().collect();
        assert_eq!(sample.lines().collect::<Vec<_>>(), expected);
        // the merges of a sample are those whose source is in it
        let sampled: HashSet<String> = (0..3_000)
            .step_by(7)
            .map(|i| nhs_number(i).to_string())
            .collect();
        let expected: Vec<&str> = all_merges
            .lines()
            .filter(|l| sampled.contains(l.split(' ').next().unwrap()))
            .collect();
        assert_eq!(sample_merges.lines().collect::<Vec<_>>(), expected);
        assert!(!all_merges.is_empty());
    }

    #[test]
    fn records_are_about_five_kilobytes() {
        let pop = Population::new(SEED, 1_000_000);
        let sizes: Vec<usize> = (0..1_000_000)
            .step_by(487)
            .map(|i| pop.patient(i).to_string().len())
            .collect();
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
        let sd = (sizes
            .iter()
            .map(|&s| (s as f64 - mean).powi(2))
            .sum::<f64>()
            / sizes.len() as f64)
            .sqrt();
        let mut sorted = sizes.clone();
        sorted.sort_unstable();
        eprintln!(
            "record bytes: mean {mean:.0}, sd {sd:.0}, min {}, p50 {}, p99 {}, max {}",
            sorted[0],
            sorted[sorted.len() / 2],
            sorted[sorted.len() * 99 / 100],
            sorted[sorted.len() - 1]
        );
        assert!((4_500.0..=6_500.0).contains(&mean), "mean {mean}");
    }

    #[test]
    fn family_names_are_zipf_like_and_searchable() {
        let pop = Population::new(SEED, 10_000_000);
        let sample = people(&pop, (0..pop.blocks).step_by(80));
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for (_, _, p) in &sample {
            *counts.entry(p.family.as_str()).or_default() += 1;
        }
        let mut by_count: Vec<usize> = counts.values().copied().collect();
        by_count.sort_unstable_by(|a, b| b.cmp(a));
        let n = sample.len() as f64;
        let top = by_count[0] as f64 / n;
        let top100 = by_count[..100].iter().sum::<usize>() as f64 / n;
        eprintln!(
            "family names: top {top:.4}, top 100 {top100:.3}, {} distinct in {n} people",
            counts.len()
        );
        assert!((0.006..=0.016).contains(&top), "top {top}");
        assert!((0.13..=0.22).contains(&top100), "top 100 {top100}");
        // a long tail: as many names as a 10 M population draws
        let mut r = Stream(5);
        let distinct: HashSet<String> = (0..1_000_000).map(|_| pop.family(&mut r, None)).collect();
        eprintln!(
            "{} distinct family names in 1,000,000 draws",
            distinct.len()
        );
        assert!(distinct.len() >= 50_000, "{}", distinct.len());
        for name in distinct.iter().take(20_000).chain(
            FAMILY_HEAD
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .iter(),
        ) {
            assert!(
                name.len() <= 35
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphabetic() || c == '\'' || c == '-'),
                "{name}"
            );
            assert_eq!(crate::domain::index::fold(name), name.to_lowercase());
            assert!(!crate::domain::index::phonetic(name).is_empty(), "{name}");
        }
    }

    #[test]
    fn practices_are_sized_like_englands() {
        let pop = Population::new(SEED, 10_000_000);
        let mut sizes = pop.practice_sizes().to_vec();
        assert_eq!(sizes.iter().sum::<u64>(), 10_000_000);
        sizes.pop(); // the last takes what is left
        sizes.sort_unstable();
        let median = sizes[sizes.len() / 2];
        eprintln!(
            "practices: {}, median {median}, p99 {}, max {}",
            sizes.len() + 1,
            sizes[sizes.len() * 99 / 100],
            sizes[sizes.len() - 1]
        );
        assert!((7_000..=12_000).contains(&median), "median {median}");
        assert!(*sizes.last().unwrap() <= 60_000);
        assert!(*sizes.last().unwrap() >= 30_000, "a long tail");
        // every practice code is distinct
        let codes: HashSet<String> = (0..sizes.len() + 1)
            .map(|k| practice_code(SEED, k))
            .collect();
        assert_eq!(codes.len(), sizes.len() + 1);
    }

    #[test]
    fn about_fifteen_people_share_a_postcode() {
        let pop = Population::new(SEED, 1_000_000);
        let mut per_postcode: HashMap<String, u64> = HashMap::new();
        for b in (0..pop.blocks).step_by(40) {
            for h in pop.layout(b) {
                let (_, code) = pop.postcode(b, h.unit);
                *per_postcode.entry(code).or_default() += h.records();
            }
        }
        let mean = per_postcode.values().sum::<u64>() as f64 / per_postcode.len() as f64;
        eprintln!(
            "postcodes: mean {mean:.1} people each, over {}",
            per_postcode.len()
        );
        assert!((10.0..=20.0).contains(&mean), "mean {mean}");
        let outward: HashSet<&str> = per_postcode
            .keys()
            .map(|c| c.split(' ').next().unwrap())
            .collect();
        assert!(outward.len() >= 80, "{}", outward.len());
        for code in per_postcode.keys() {
            let (out, inward) = code.split_once(' ').unwrap();
            let b = inward.as_bytes();
            assert!(code.len() <= 8 && out.len() <= 4 && b.len() == 3, "{code}");
            assert!(
                b[0].is_ascii_digit() && LETTERS.contains(&b[1]) && LETTERS.contains(&b[2]),
                "{code}"
            );
            assert!(
                out.as_bytes()[0].is_ascii_uppercase()
                    && out.as_bytes()[out.len() - 1].is_ascii_digit(),
                "{code}"
            );
        }
        // and one postcode is one place: districts do not overlap
        let again: HashSet<(u64, u64)> = (0..pop.blocks)
            .step_by(40)
            .flat_map(|b| (0..UNITS).map(move |u| (b, u)))
            .collect();
        let codes: HashSet<String> = again.iter().map(|(b, u)| pop.postcode(*b, *u).1).collect();
        assert_eq!(codes.len(), again.len());
    }

    #[test]
    fn a_household_shares_its_address_and_landline() {
        let pop = Population::new(SEED, 100_000);
        let mut checked = 0;
        for b in 0..200 {
            for h in pop.layout(b).into_iter().filter(|h| h.people >= 2) {
                let docs: Vec<Value> = (0..h.records())
                    .map(|m| pop.patient(pop.order.patient(b * BLOCK + h.start + m)))
                    .collect();
                let home = |d: &Value| {
                    let a = d["address"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|a| a["use"] == "home")
                        .unwrap()
                        .clone();
                    (
                        a["line"].clone(),
                        a["postalCode"].clone(),
                        a["extension"].clone(),
                    )
                };
                let landline = |d: &Value| {
                    d["telecom"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|t| t["system"] == "phone" && t["use"] == "home")
                        .map(|t| t["value"].clone())
                };
                for d in &docs[1..] {
                    assert_eq!(home(d), home(&docs[0]));
                    assert_eq!(landline(d), landline(&docs[0]));
                }
                checked += 1;
            }
        }
        assert!(checked > 1_000, "{checked}");
    }

    #[test]
    fn restricted_deceased_and_superseded_records_come_in_their_shares() {
        let count = 1_000_000;
        let pop = Population::new(SEED, count);
        let (mut restricted, mut deceased, mut superseded, mut n) = (0, 0, 0, 0);
        for i in (0..count).step_by(83) {
            let (doc, survivor) = pop.record_and_survivor(i);
            n += 1;
            restricted += usize::from(doc["meta"]["security"][0]["code"] == "R");
            deceased += usize::from(doc.get("deceasedDateTime").is_some());
            if let Some(target) = survivor {
                superseded += 1;
                // a near-duplicate of another patient: same name, birth date and address
                assert_eq!(pop.record(i).1, Some(nhs_number(target)));
                let t = pop.patient(target);
                assert_ne!(t["id"], doc["id"]);
                for field in ["birthDate", "gender"] {
                    assert_eq!(t[field], doc[field]);
                }
                assert_eq!(t["name"][0]["family"], doc["name"][0]["family"]);
                assert_eq!(t["name"][0]["given"], doc["name"][0]["given"]);
                assert_eq!(t["address"][0]["line"], doc["address"][0]["line"]);
                assert_eq!(
                    t["address"][0]["postalCode"],
                    doc["address"][0]["postalCode"]
                );
            }
        }
        let share = |k: usize| k as f64 / n as f64;
        eprintln!(
            "of {n}: restricted {}, deceased {}, superseded {}",
            share(restricted),
            share(deceased),
            share(superseded)
        );
        assert!(
            (0.001..=0.0035).contains(&share(restricted)),
            "restricted {}",
            share(restricted)
        );
        assert!(
            (0.10..=0.14).contains(&share(deceased)),
            "deceased {}",
            share(deceased)
        );
        // every block's layout, for the exact share of duplicates
        let dups: u64 = (0..pop.blocks)
            .flat_map(|b| pop.layout(b))
            .filter(|h| h.duplicate)
            .count() as u64;
        let exact = dups as f64 / count as f64;
        eprintln!("superseded in the whole population: {exact}");
        assert!((0.004..=0.006).contains(&exact), "superseded {exact}");
        assert!(superseded > 0);
    }

    #[test]
    fn ages_follow_englands_pyramid() {
        let pop = Population::new(SEED, 10_000_000);
        let sample = people(&pop, (0..pop.blocks).step_by(50));
        let living: Vec<u64> = sample
            .iter()
            .filter(|(_, _, p)| p.death.is_none())
            .map(|(_, _, p)| age(p.birth, REFERENCE))
            .collect();
        assert!(sample.iter().all(|(_, _, p)| p.birth <= REFERENCE
            && p.death.is_none_or(|d| p.birth <= d && d <= REFERENCE)));
        let share = |lo: u64, hi: u64| {
            living.iter().filter(|a| (lo..=hi).contains(a)).count() as f64 / living.len() as f64
        };
        assert!(
            (0.33..=0.47).contains(&share(30, 59)),
            "30-59: {}",
            share(30, 59)
        );
        let decades: Vec<String> = (0..11)
            .map(|d| format!("{:.3}", share(d * 10, d * 10 + 9)))
            .collect();
        assert!(
            share(30, 59) > share(0, 29),
            "a bulge at 30-60: {decades:?}"
        );
        eprintln!("living by decade: {decades:?}");
        assert!(
            (0.02..=0.08).contains(&share(80, 200)),
            "over 80: {}",
            share(80, 200)
        );
        assert!(living.iter().any(|&a| a >= 100), "a few over 100");
    }
}
