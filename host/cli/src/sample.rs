//! Messy sample leads with known ground truth.
//!
//! Each row is a person (some people appear more than once, with variations:
//! the duplicates the dedupe capability will have to find) with one kind of
//! mess applied. The truth file records, per row, the status and issue codes
//! a correct validator must produce and which person the row is, so
//! `leadgate eval` can measure agreement.

use anyhow::{Context, Result};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::Path;

const FIRST: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "William",
    "Elizabeth",
    "David",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Anna",
    "Lukas",
    "Sophie",
    "Jean",
    "Marie",
    "José",
    "Zoë",
    "Søren",
    "Björn",
    "François",
    "Chloé",
    "Liam",
    "Emma",
    "Noah",
    "Olivia",
    "Aoife",
    "Mateo",
    "Charles",
    "Karen",
    "Christopher",
    "Nancy",
    "Daniel",
    "Lisa",
    "Matthew",
    "Betty",
    "Anthony",
    "Margaret",
    "Mark",
    "Sandra",
    "Donald",
    "Ashley",
    "Steven",
    "Kimberly",
    "Paul",
    "Emily",
    "Andrew",
    "Donna",
    "Joshua",
    "Michelle",
    "Kenneth",
    "Carol",
    "Kevin",
    "Amanda",
    "Brian",
    "Melissa",
    "George",
    "Deborah",
    "Timothy",
    "Stephanie",
    "Ronald",
    "Rebecca",
    "Edward",
    "Sharon",
    "Jason",
    "Laura",
    "Jeffrey",
    "Cynthia",
    "Ryan",
    "Kathleen",
    "Jacob",
    "Amy",
    "Gary",
    "Angela",
    "Nicholas",
    "Shirley",
    "Eric",
    "Brenda",
    "Jonathan",
    "Stephen",
    "Pamela",
    "Larry",
    "Nicole",
    "Justin",
    "Samantha",
    "Scott",
    "Katherine",
    "Brandon",
    "Christine",
    "Benjamin",
    "Helen",
    "Samuel",
    "Debra",
    "Gregory",
    "Rachel",
    "Alexander",
    "Carolyn",
    "Frank",
    "Janet",
    "Patrick",
    "Maria",
    "Raymond",
    "Catherine",
    "Jack",
    "Heather",
    "Dennis",
    "Diane",
    "Jerry",
    "Julie",
    "Tyler",
    "Joyce",
    "Aaron",
    "Victoria",
    "Henry",
    "Kelly",
    "Douglas",
    "Christina",
    "Peter",
    "Joan",
    "Adam",
    "Evelyn",
    "Nathan",
    "Lauren",
    "Zachary",
    "Judith",
    "Walter",
    "Olga",
    "Kyle",
    "Megan",
    "Harold",
    "Cheryl",
    "Carl",
    "Andrea",
    "Jeremy",
    "Hannah",
    "Keith",
    "Martha",
    "Roger",
    "Jacqueline",
    "Gerald",
    "Frances",
    "Ethan",
    "Gloria",
    "Arthur",
    "Ann",
    "Terry",
    "Teresa",
    "Christian",
    "Kathryn",
    "Sean",
    "Sara",
    "Lawrence",
    "Janice",
    "Austin",
    "Joe",
    "Alice",
    "Madison",
    "Jesse",
    "Doris",
    "Albert",
    "Abigail",
    "Bryan",
    "Julia",
    "Billy",
    "Judy",
    "Bruce",
    "Grace",
    "Willie",
    "Denise",
    "Jordan",
    "Amber",
    "Dylan",
    "Marilyn",
    "Alan",
    "Beverly",
    "Ralph",
    "Danielle",
    "Gabriel",
    "Theresa",
    "Roy",
    "Sophia",
    "Juan",
    "Wayne",
    "Diana",
    "Eugene",
    "Brittany",
    "Logan",
    "Natalie",
    "Randy",
    "Isabella",
    "Louis",
    "Charlotte",
    "Russell",
    "Rose",
    "Vincent",
    "Alexis",
    "Philip",
    "Kayla",
    "Klaus",
    "Ingrid",
    "Jürgen",
    "Ute",
    "Matthias",
    "Katrin",
    "Stefan",
    "Sabine",
    "Pierre",
    "Camille",
    "Nicolas",
    "Élodie",
    "Giulia",
    "Marco",
    "Alessandro",
    "Chiara",
    "Javier",
    "Lucía",
    "Carmen",
    "Pablo",
    "Sven",
    "Astrid",
    "Lars",
    "Freya",
    "Pieter",
    "Femke",
    "Siobhan",
    "Ciarán",
];
const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "McDonald",
    "O'Neil",
    "van der Berg",
    "Müller",
    "Schmidt",
    "García",
    "Dubois",
    "Rossi",
    "Jansen",
    "de Vries",
    "MacLeod",
    "Nguyen",
    "Kowalski",
    "Andersson",
    "O'Brien",
    "Fitzgerald",
    "Brown",
    "Taylor",
    "Smith-Jones",
    "Lefèvre",
    "Williams",
    "Jones",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Gomez",
    "Phillips",
    "Evans",
    "Turner",
    "Diaz",
    "Parker",
    "Cruz",
    "Edwards",
    "Collins",
    "Reyes",
    "Stewart",
    "Morris",
    "Morales",
    "Murphy",
    "Cook",
    "Rogers",
    "Gutierrez",
    "Ortiz",
    "Morgan",
    "Cooper",
    "Peterson",
    "Bailey",
    "Reed",
    "Kelly",
    "Howard",
    "Ramos",
    "Kim",
    "Cox",
    "Ward",
    "Richardson",
    "Watson",
    "Brooks",
    "Chavez",
    "Wood",
    "James",
    "Bennett",
    "Gray",
    "Mendoza",
    "Ruiz",
    "Hughes",
    "Price",
    "Alvarez",
    "Castillo",
    "Sanders",
    "Patel",
    "Myers",
    "Long",
    "Ross",
    "Foster",
    "Jimenez",
    "Powell",
    "Jenkins",
    "Perry",
    "Russell",
    "Sullivan",
    "Bell",
    "Coleman",
    "Butler",
    "Henderson",
    "Barnes",
    "Gonzales",
    "Fisher",
    "Vasquez",
    "Simmons",
    "Romero",
    "Jordan",
    "Patterson",
    "Alexander",
    "Hamilton",
    "Graham",
    "Reynolds",
    "Griffin",
    "Wallace",
    "Moreno",
    "West",
    "Cole",
    "Hayes",
    "Bryant",
    "Herrera",
    "Gibson",
    "Ellis",
    "Tran",
    "Medina",
    "Aguilar",
    "Stevens",
    "Murray",
    "Ford",
    "Castro",
    "Marshall",
    "Owens",
    "Harrison",
    "Fernandez",
    "McDonnell",
    "Woods",
    "Washington",
    "Kennedy",
    "Wells",
    "Vargas",
    "Henry",
    "Chen",
    "Freeman",
    "Webb",
    "Tucker",
    "Guzman",
    "Burns",
    "Crawford",
    "Olson",
    "Simpson",
    "Porter",
    "Hunter",
    "Gordon",
    "Mendez",
    "Silva",
    "Shaw",
    "Snyder",
    "Mason",
    "Dixon",
    "Muñoz",
    "Hunt",
    "Hicks",
    "Holmes",
    "Palmer",
    "Wagner",
    "Black",
    "Robertson",
    "Boyd",
    "Rose",
    "Stone",
    "Salazar",
    "Fox",
    "Warren",
    "Mills",
    "Meyer",
    "Rice",
    "Schneider",
    "Fischer",
    "Weber",
    "Becker",
    "Hoffmann",
    "Schäfer",
    "Koch",
    "Richter",
    "Klein",
    "Wolf",
    "Schröder",
    "Neumann",
    "Schwarz",
    "Zimmermann",
    "Braun",
    "Krüger",
    "Hofmann",
    "Hartmann",
    "Lange",
    "Werner",
    "Lehmann",
    "Köhler",
    "Bernard",
    "Moreau",
    "Laurent",
    "Simon",
    "Michel",
    "Leroy",
    "Roux",
    "David",
    "Bertrand",
    "Morel",
    "Fournier",
    "Girard",
    "Bonnet",
    "Dupont",
    "Lambert",
    "Fontaine",
    "Bianchi",
    "Romano",
    "Colombo",
    "Ricci",
    "Marino",
    "Greco",
    "Bruno",
    "Gallo",
    "Conti",
    "De Luca",
    "Bakker",
    "Visser",
    "Smit",
    "Meijer",
    "de Boer",
    "Mulder",
    "de Groot",
    "Bos",
    "Vos",
    "Peters",
    "Hendriks",
    "Johansson",
    "Karlsson",
    "Nilsson",
    "Eriksson",
    "Larsson",
    "Olsson",
    "Persson",
    "Svensson",
    "Gustafsson",
    "Murphy-Byrne",
    "Byrne",
    "Ryan",
    "O'Sullivan",
    "Walsh",
    "O'Connor",
    "McCarthy",
    "Doyle",
];
/// Company names are built from two syllables: thousands of companies, so
/// colleagues share a company now and then, as they do in real data.
const COMPANY_HEADS: &[&str] = &[
    "Acme", "Globe", "Init", "Umbr", "Stark", "Wayne", "Hool", "Vandel", "Soyl", "Cyber", "Tyrel",
    "Wonk", "Oscor", "Pied", "Massi", "Apert", "Nakat", "Monar", "Bluth", "Dunder", "Vertex",
    "Quant", "Nimbus", "Orbit", "Pixel", "Zephyr", "Cobalt", "Lumen", "Helix", "Vector", "Kinet",
    "Axiom", "Nova", "Prism",
];
const COMPANY_TAILS: &[&str] = &[
    "trix", "xa", "rode", "ix", "well", "works", "ify", "ay", "ia", "dyne", "corp", "avator", "ly",
    "tech", "soft", "labs", "io", "net", "sys", "ware", "data", "logic", "point", "scale", "mind",
    "flow",
];
const SUFFIXES: &[&str] = &[
    "Inc.", "LLC", "Ltd", "GmbH", "S.A.", "B.V.", "SAS", "Corp.", "",
];
const TITLES: &[&str] = &[
    "VP Sales",
    "Head of Marketing",
    "CTO",
    "Software Engineer",
    "Procurement Manager",
    "CEO",
    "Operations Director",
    "Data Analyst",
];
const FREE: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.co.uk",
    "gmx.de",
    "icloud.com",
];
const DISPOSABLE: &[&str] = &[
    "mailinator.com",
    "guerrillamail.com",
    "10minutemail.com",
    "yopmail.com",
];

/// A country: ISO code, ways people write it, a website TLD, cities, and a
/// generator of valid national phone numbers with their E.164 prefix.
struct Country {
    code: &'static str,
    names: &'static [&'static str],
    tld: &'static str,
    cities: &'static [&'static str],
    /// (national number, international form)
    phone: fn(&mut ChaCha8Rng) -> (String, String),
    postcode: fn(&mut ChaCha8Rng) -> String,
}

fn digits(rng: &mut ChaCha8Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

const COUNTRIES: &[Country] = &[
    Country {
        code: "US",
        names: &[
            "United States",
            "USA",
            "US",
            "us",
            "United States of America",
        ],
        tld: "com",
        cities: &["New York", "San Francisco", "Chicago", "Austin"],
        phone: |r| {
            let area = ["212", "415", "312", "512", "617"][r.random_range(0..5)];
            let exchange = format!("{}{}", r.random_range(2..10), digits(r, 2));
            let line = digits(r, 4);
            (
                format!("({area}) {exchange}-{line}"),
                format!("+1 {area} {exchange} {line}"),
            )
        },
        postcode: |r| format!("{}", r.random_range(10000..99999)),
    },
    Country {
        code: "GB",
        names: &["United Kingdom", "UK", "GB", "Great Britain", "England"],
        tld: "co.uk",
        cities: &["London", "Manchester", "Edinburgh"],
        phone: |r| {
            let (n, line) = (digits(r, 3), digits(r, 4));
            (format!("020 7{n} {line}"), format!("+44 20 7{n} {line}"))
        },
        postcode: |r| {
            let l = |r: &mut ChaCha8Rng| char::from(b'A' + r.random_range(0..26u8));
            format!(
                "{}{}{} {}{}{}",
                l(r),
                l(r),
                r.random_range(1..20),
                r.random_range(1..10),
                l(r),
                l(r)
            )
        },
    },
    Country {
        code: "DE",
        names: &["Germany", "Deutschland", "DE", "DEU"],
        tld: "de",
        cities: &["Berlin", "München", "Hamburg"],
        phone: |r| {
            let n = format!("{}{}", r.random_range(2..10), digits(r, 7));
            (format!("030 {n}"), format!("+49 30 {n}"))
        },
        postcode: |r| format!("{:05}", r.random_range(10000..99999)),
    },
    Country {
        code: "FR",
        names: &["France", "FR", "FRA"],
        tld: "fr",
        cities: &["Paris", "Lyon", "Marseille"],
        phone: |r| {
            let n = format!(
                "{} {} {} {}",
                digits(r, 2),
                digits(r, 2),
                digits(r, 2),
                digits(r, 2)
            );
            (format!("01 {n}"), format!("+33 1 {n}"))
        },
        postcode: |r| format!("{:05}", r.random_range(1000..96000)),
    },
    Country {
        code: "NL",
        names: &["Netherlands", "The Netherlands", "NL", "Holland"],
        tld: "nl",
        cities: &["Amsterdam", "Rotterdam", "Utrecht"],
        phone: |r| {
            let n = format!("{}{}", r.random_range(2..10), digits(r, 6));
            (format!("020 {n}"), format!("+31 20 {n}"))
        },
        postcode: |r| {
            let l = |r: &mut ChaCha8Rng| char::from(b'A' + r.random_range(0..26u8));
            format!("{} {}{}", r.random_range(1000..9999), l(r), l(r))
        },
    },
    Country {
        code: "AU",
        names: &["Australia", "AU", "AUS"],
        tld: "com.au",
        cities: &["Sydney", "Melbourne"],
        phone: |r| {
            let n = format!("9{} {}", digits(r, 3), digits(r, 4));
            (format!("(02) {n}"), format!("+61 2 {n}"))
        },
        postcode: |r| format!("{}", r.random_range(2000..2999)),
    },
];

/// Names written in another script, with their usual Latin spelling,
/// given and family names apart so they combine within a script:
/// (script, native, Latin).
const NATIVE_FIRST: &[(&str, &str, &str)] = &[
    ("ru", "Дмитрий", "Dmitry"),
    ("ru", "Анна", "Anna"),
    ("ru", "Сергей", "Sergey"),
    ("ru", "Ольга", "Olga"),
    ("ru", "Иван", "Ivan"),
    ("ru", "Елена", "Elena"),
    ("ru", "Михаил", "Mikhail"),
    ("ru", "Наталья", "Natalya"),
    ("ru", "Алексей", "Alexey"),
    ("ru", "Татьяна", "Tatyana"),
    ("el", "Γιώργος", "Giorgos"),
    ("el", "Μαρία", "Maria"),
    ("el", "Νίκος", "Nikos"),
    ("el", "Ελένη", "Eleni"),
    ("el", "Δημήτρης", "Dimitris"),
    ("zh", "伟", "Wei"),
    ("zh", "芳", "Fang"),
    ("zh", "敏", "Min"),
    ("zh", "静", "Jing"),
    ("zh", "强", "Qiang"),
    ("zh", "磊", "Lei"),
    ("zh", "军", "Jun"),
    ("zh", "洋", "Yang"),
];
const NATIVE_LAST: &[(&str, &str, &str)] = &[
    ("ru", "Иванов", "Ivanov"),
    ("ru", "Смирнов", "Smirnov"),
    ("ru", "Кузнецов", "Kuznetsov"),
    ("ru", "Попов", "Popov"),
    ("ru", "Петров", "Petrov"),
    ("ru", "Соколов", "Sokolov"),
    ("ru", "Морозов", "Morozov"),
    ("ru", "Волков", "Volkov"),
    ("ru", "Шевченко", "Shevchenko"),
    ("ru", "Новиков", "Novikov"),
    ("el", "Παπαδόπουλος", "Papadopoulos"),
    ("el", "Νικολάου", "Nikolaou"),
    ("el", "Γεωργίου", "Georgiou"),
    ("el", "Οικονόμου", "Oikonomou"),
    ("el", "Βασιλείου", "Vasileiou"),
    ("zh", "王", "Wang"),
    ("zh", "李", "Li"),
    ("zh", "张", "Zhang"),
    ("zh", "刘", "Liu"),
    ("zh", "陈", "Chen"),
    ("zh", "杨", "Yang"),
    ("zh", "黄", "Huang"),
    ("zh", "赵", "Zhao"),
];

/// A name in another script: (native given, native family, Latin given,
/// Latin family), both parts from one script.
fn native_name(rng: &mut ChaCha8Rng) -> (String, String, String, String) {
    let (script, nf, lf) = NATIVE_FIRST.choose(rng).copied().unwrap_or(NATIVE_FIRST[0]);
    let family: Vec<(&str, &str, &str)> = NATIVE_LAST
        .iter()
        .copied()
        .filter(|(s, _, _)| *s == script)
        .collect();
    let (_, nl, ll) = family.choose(rng).copied().unwrap_or(NATIVE_LAST[0]);
    (
        nf.to_string(),
        nl.to_string(),
        lf.to_string(),
        ll.to_string(),
    )
}

/// Short forms the generator uses for duplicates (an independent list from
/// the dedupe component's table, so the evaluation is not circular).
const NICKS: &[(&str, &[&str])] = &[
    ("William", &["Bill", "Will", "Billy"]),
    ("Robert", &["Bob", "Rob", "Bobby"]),
    ("Elizabeth", &["Liz", "Beth", "Lizzie"]),
    ("Richard", &["Rick", "Dick", "Rich"]),
    ("James", &["Jim", "Jimmy", "Jamie"]),
    ("Michael", &["Mike", "Mick"]),
    ("Jennifer", &["Jen", "Jenny"]),
    ("Joseph", &["Joe", "Joey"]),
    ("Thomas", &["Tom", "Tommy"]),
    ("Patricia", &["Pat", "Trish", "Patty"]),
    ("Margaret", &["Maggie", "Peggy", "Meg"]),
    ("Christopher", &["Chris"]),
    ("Daniel", &["Dan", "Danny"]),
    ("Matthew", &["Matt"]),
    ("Anthony", &["Tony"]),
    ("Steven", &["Steve"]),
    ("Stephen", &["Steve"]),
    ("Andrew", &["Andy", "Drew"]),
    ("Joshua", &["Josh"]),
    ("Kenneth", &["Ken", "Kenny"]),
    ("Timothy", &["Tim"]),
    ("Samuel", &["Sam"]),
    ("Benjamin", &["Ben"]),
    ("Alexander", &["Alex"]),
    ("Nicholas", &["Nick"]),
    ("Jonathan", &["Jon"]),
    ("Edward", &["Ed", "Ted"]),
    ("Katherine", &["Kate", "Kathy"]),
    ("Catherine", &["Cathy", "Kate"]),
    ("Rebecca", &["Becky"]),
    ("Deborah", &["Debbie"]),
    ("Pamela", &["Pam"]),
    ("Victoria", &["Vicky"]),
    ("Susan", &["Sue"]),
    ("Gregory", &["Greg"]),
    ("Lawrence", &["Larry"]),
    ("Jacqueline", &["Jackie"]),
    ("Zachary", &["Zach"]),
    ("Samantha", &["Sam"]),
    ("Kimberly", &["Kim"]),
];

/// One person the sample is about.
#[derive(Clone)]
struct Person {
    id: usize,
    first: String,
    last: String,
    /// The name in its own script, for some people.
    native: Option<(String, String)>,
    company: String,
    company_base: String,
    domain: String,
    title: String,
    country: usize,
    street: String,
    city: String,
    postcode: String,
    phone_national: String,
    phone_intl: String,
    /// A private address, used when they sign up with free mail.
    personal_local: String,
    personal_domain: &'static str,
}

fn slug(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

fn ascii_local(s: &str) -> String {
    deunicode::deunicode(s)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .flat_map(|c| c.to_lowercase())
        .collect()
}

const STREETS: &[&str] = &[
    "Main", "Oak", "Maple", "Cedar", "Park", "Church", "Mill", "High", "Station", "Victoria",
    "King", "Queen", "Bridge", "Elm", "Market", "Green", "Chestnut", "Lake", "Hill", "River",
];
const STREET_TYPES: &[&str] = &["Street", "Road", "Avenue", "Lane", "Drive", "Way"];

fn random_street(rng: &mut ChaCha8Rng) -> String {
    format!(
        "{} {} {}",
        rng.random_range(1..300),
        STREETS.choose(rng).copied().unwrap_or("Main"),
        STREET_TYPES.choose(rng).copied().unwrap_or("Street")
    )
}

fn person(rng: &mut ChaCha8Rng, id: usize) -> Person {
    let country = rng.random_range(0..COUNTRIES.len());
    let c = &COUNTRIES[country];
    let base = format!(
        "{}{}",
        COMPANY_HEADS.choose(rng).copied().unwrap_or("Acme"),
        COMPANY_TAILS.choose(rng).copied().unwrap_or("trix")
    );
    let suffix = SUFFIXES.choose(rng).copied().unwrap_or("");
    let (phone_national, phone_intl) = (c.phone)(rng);
    let (first, last, native) = if rng.random_bool(0.03) {
        let (nf, nl, lf, ll) = native_name(rng);
        (lf, ll, Some((nf, nl)))
    } else {
        (
            FIRST.choose(rng).copied().unwrap_or("Anna").to_string(),
            LAST.choose(rng).copied().unwrap_or("Smith").to_string(),
            None,
        )
    };
    let personal_local = match rng.random_range(0..3) {
        0 => format!("{}.{}", ascii_local(&first), ascii_local(&last)),
        1 => format!(
            "{}{}{}",
            ascii_local(&first),
            ascii_local(&last),
            rng.random_range(1..99)
        ),
        _ => format!(
            "{}{}",
            &ascii_local(&first)[..1.min(first.len())],
            ascii_local(&last)
        ),
    };
    Person {
        id,
        first,
        last,
        native,
        company: format!("{base} {suffix}").trim().to_string(),
        domain: format!("{}.{}", slug(&base), c.tld),
        company_base: base,
        title: TITLES.choose(rng).copied().unwrap_or("CEO").to_string(),
        country,
        street: random_street(rng),
        city: c.cities.choose(rng).copied().unwrap_or("").to_string(),
        postcode: (c.postcode)(rng),
        phone_national,
        phone_intl,
        personal_local,
        personal_domain: FREE.choose(rng).copied().unwrap_or("gmail.com"),
    }
}

/// Someone who lives with `p`: same family name and address, sometimes the
/// same landline. A hard case: the two are different people.
fn relative(rng: &mut ChaCha8Rng, id: usize, p: &Person) -> Person {
    let mut r = person(rng, id);
    r.last.clone_from(&p.last);
    r.native = None;
    r.country = p.country;
    r.street.clone_from(&p.street);
    r.city.clone_from(&p.city);
    r.postcode.clone_from(&p.postcode);
    if rng.random_bool(0.25) {
        r.phone_national.clone_from(&p.phone_national);
        r.phone_intl.clone_from(&p.phone_intl);
    } else {
        (r.phone_national, r.phone_intl) = (COUNTRIES[p.country].phone)(rng);
    }
    r.personal_local = format!("{}.{}", ascii_local(&r.first), ascii_local(&r.last));
    r
}

pub struct Row {
    pub fields: [String; 13],
    pub raw_line: Option<String>,
    pub status: &'static str,
    pub codes: Vec<&'static str>,
    pub person: usize,
    pub kind: &'static str,
    /// How this row of a person seen before differs from the original.
    pub variation: Vec<&'static str>,
}

pub const HEADER: [&str; 13] = [
    "E-mail",
    "First Name",
    "Last Name",
    "Phone",
    "Company",
    "Job Title",
    "Website",
    "Street",
    "City",
    "Zip",
    "Country",
    "Marketing Opt-In",
    "utm_campaign",
];

fn shout_or_whisper(rng: &mut ChaCha8Rng, s: &str) -> String {
    if rng.random_bool(0.5) {
        s.to_uppercase()
    } else {
        s.to_lowercase()
    }
}

fn full_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '0'..='9' => char::from_u32(c as u32 - '0' as u32 + 0xFF10).unwrap_or(c),
            ' ' => '\u{00A0}',
            _ => c,
        })
        .collect()
}

fn row(rng: &mut ChaCha8Rng, p: &Person, kind: &'static str, seen_before: bool) -> Row {
    let c = &COUNTRIES[p.country];
    let local = format!("{}.{}", ascii_local(&p.first), ascii_local(&p.last));
    let mut email = format!("{local}@{}", p.domain);
    let (mut first, mut last) = match &p.native {
        Some((f, l)) if !seen_before && rng.random_bool(0.5) => (f.clone(), l.clone()),
        _ => (p.first.clone(), p.last.clone()),
    };
    let mut phone = p.phone_national.clone();
    let mut company = p.company.clone();
    let mut title = p.title.clone();
    let mut website = format!("https://www.{}/", p.domain);
    let mut country = c.names[0].to_string();
    let mut status = "accepted";
    let mut codes: Vec<&'static str> = Vec::new();
    let mut raw_line = None;
    match kind {
        "clean" => {}
        "messy" => {
            first = shout_or_whisper(rng, &first);
            last = shout_or_whisper(rng, &last);
            email = format!("  {}@{}  ", local.to_uppercase(), p.domain.to_uppercase());
            phone = if rng.random_bool(0.5) {
                full_width(&phone)
            } else {
                format!(" {} ", p.phone_intl)
            };
            website = p.domain.clone();
            country = c.names.choose(rng).copied().unwrap_or(c.code).to_string();
            company = format!("  {company}\u{00A0} ");
        }
        "free_mail" => {
            email = format!("{}@{}", p.personal_local, p.personal_domain);
            codes.push("email.free_provider");
        }
        "role_account" => {
            email = format!(
                "{}@{}",
                ["info", "sales", "support"]
                    .choose(rng)
                    .copied()
                    .unwrap_or("info"),
                p.domain
            );
            codes.push("email.role_account");
        }
        "bad_email" | "bad_email_no_phone" => {
            let (bad, code) = [
                (format!("{local}@@{}", p.domain), "email.syntax"),
                (
                    format!(
                        "{}..{}@{}",
                        ascii_local(&p.first),
                        ascii_local(&p.last),
                        p.domain
                    ),
                    "email.dots",
                ),
                (
                    format!("{local}@{}", slug(&p.company)),
                    "email.dotless_domain",
                ),
                (
                    format!(
                        "{} {}@{}",
                        ascii_local(&p.first),
                        ascii_local(&p.last),
                        p.domain
                    ),
                    "email.syntax",
                ),
                (
                    format!("{local}@{}.notatld", slug(&p.company)),
                    "email.unknown_tld",
                ),
                (format!("{local}.{}", p.domain), "email.syntax"),
            ]
            .choose(rng)
            .cloned()
            .unwrap_or((String::new(), "email.syntax"));
            email = bad;
            codes.push(code);
            if kind == "bad_email" {
                status = "review";
            } else {
                phone = String::new();
                status = "rejected";
                codes.push("contact.missing");
            }
        }
        "disposable" => {
            email = format!(
                "{local}@{}",
                DISPOSABLE.choose(rng).copied().unwrap_or("mailinator.com")
            );
            status = "review";
            codes.push("email.disposable");
        }
        "bad_phone" => {
            phone = "555-0100".into();
            country = "United States".into();
            status = "review";
            codes.push("phone.invalid_for_region");
        }
        "no_country" => {
            // National number, no country: the tenant's default region (US).
            let us = &COUNTRIES[0];
            (phone, _) = (us.phone)(rng);
            country = String::new();
        }
        "no_contact" => {
            email = String::new();
            phone = String::new();
            status = "rejected";
            codes.push("contact.missing");
        }
        "markup" => {
            company = format!("{company}<script>alert(1)</script>");
            status = "review";
            codes.push("text.markup");
        }
        "formula" => {
            title = "=HYPERLINK(\"http://evil.example\",\"click\")".into();
            status = "review";
            codes.push("text.formula");
        }
        "unknown_country" => {
            country = ["Atlantis", "Narnia", "Wakanda"]
                .choose(rng)
                .copied()
                .unwrap_or("Atlantis")
                .into();
            phone = p.phone_intl.clone();
            status = "review";
            codes.push("country.unknown");
        }
        "too_long" => {
            title = "Senior ".repeat(50);
            status = "rejected";
            codes.push("job_title.too_long");
        }
        "broken_row" => {
            raw_line = Some(format!(
                "{email},{first},{last},{phone},{company},extra,extra,extra,extra,extra,extra,extra,extra,extra,extra"
            ));
            status = "rejected";
            codes.push("record.field_count");
        }
        _ => {}
    }
    let mut street = p.street.clone();
    let mut city = p.city.clone();
    let mut postcode = p.postcode.clone();
    let mut variation = Vec::new();
    if seen_before {
        // One or two of the ways a person's second record differs, as far
        // as the validation case of this row allows.
        let tries = if rng.random_bool(0.4) { 2 } else { 1 };
        for _ in 0..tries {
            let pick = VARIATIONS.choose(rng).copied().unwrap_or("typo");
            let applied = match pick {
                "typo" => {
                    let target = if rng.random_bool(0.5) {
                        &mut first
                    } else {
                        &mut last
                    };
                    match typo(rng, target) {
                        Some(t) => {
                            *target = t;
                            true
                        }
                        None => false,
                    }
                }
                "nickname" => match NICKS.iter().find(|(f, _)| *f == p.first) {
                    Some((_, short)) => {
                        first = short.choose(rng).copied().unwrap_or(short[0]).to_string();
                        true
                    }
                    None => false,
                },
                "swapped" => {
                    std::mem::swap(&mut first, &mut last);
                    true
                }
                "no_email"
                    if !phone.is_empty()
                        && matches!(
                            kind,
                            "clean" | "messy" | "markup" | "formula" | "too_long"
                        ) =>
                {
                    email = String::new();
                    true
                }
                "no_phone"
                    if !email.is_empty()
                        && matches!(
                            kind,
                            "clean"
                                | "messy"
                                | "free_mail"
                                | "role_account"
                                | "disposable"
                                | "markup"
                                | "formula"
                                | "too_long"
                        ) =>
                {
                    phone = String::new();
                    true
                }
                "no_company" if kind != "markup" => {
                    company = String::new();
                    true
                }
                "gmail_alias" if kind == "free_mail" && p.personal_domain == "gmail.com" => {
                    let (l, d) = match rng.random_range(0..3) {
                        0 => (p.personal_local.replace('.', ""), "gmail.com"),
                        1 => (
                            format!(
                                "{}+{}",
                                p.personal_local,
                                ["crm", "news", "work"]
                                    .choose(rng)
                                    .copied()
                                    .unwrap_or("crm")
                            ),
                            "gmail.com",
                        ),
                        _ => (p.personal_local.clone(), "googlemail.com"),
                    };
                    email = format!("{l}@{d}");
                    true
                }
                "phone_format" if kind == "clean" => {
                    phone.clone_from(&p.phone_intl);
                    true
                }
                "company_suffix" if kind != "markup" && !company.is_empty() => {
                    company = format!(
                        "{} {}",
                        p.company_base,
                        ["Incorporated", "Inc", "Limited", "Corporation", "Group", ""]
                            .choose(rng)
                            .copied()
                            .unwrap_or("")
                    )
                    .trim()
                    .to_string();
                    true
                }
                "address_typo" => {
                    let target = match rng.random_range(0..3) {
                        0 => &mut street,
                        1 => &mut city,
                        _ => &mut postcode,
                    };
                    let mut chars: Vec<char> = target.chars().collect();
                    if chars.len() >= 4 {
                        let i = rng.random_range(1..chars.len() - 1);
                        chars.swap(i, i + 1);
                        *target = chars.into_iter().collect();
                    }
                    *target != p.street && *target != p.city && *target != p.postcode
                }
                "moved" => {
                    street = random_street(rng);
                    city = c.cities.choose(rng).copied().unwrap_or("").to_string();
                    postcode = (c.postcode)(rng);
                    true
                }
                "script" => match &p.native {
                    Some((f, l)) => {
                        first.clone_from(f);
                        last.clone_from(l);
                        true
                    }
                    None => false,
                },
                _ => false,
            };
            if applied && !variation.contains(&pick) {
                variation.push(pick);
            }
        }
    }
    let consent = ["yes", "no", ""].choose(rng).copied().unwrap_or("");
    let campaign = ["spring-launch", "webinar-q3", "", "partner"]
        .choose(rng)
        .copied()
        .unwrap_or("");
    Row {
        fields: [
            email,
            first,
            last,
            phone,
            company,
            title,
            website,
            street,
            city,
            postcode,
            country,
            consent.to_string(),
            campaign.to_string(),
        ],
        raw_line,
        status,
        codes,
        person: p.id,
        kind,
        variation,
    }
}

/// Ways a person's later record differs from the first.
const VARIATIONS: &[&str] = &[
    "typo",
    "nickname",
    "swapped",
    "no_email",
    "no_phone",
    "no_company",
    "gmail_alias",
    "phone_format",
    "company_suffix",
    "moved",
    "script",
    "address_typo",
];

/// One keyboard slip in a name: a doubled, dropped, swapped or replaced
/// letter. `None` for names too short to survive it.
fn typo(rng: &mut ChaCha8Rng, name: &str) -> Option<String> {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() < 4 || !chars.iter().all(|c| c.is_alphabetic()) {
        return None;
    }
    let i = rng.random_range(1..chars.len() - 1);
    let mut out = chars.clone();
    match rng.random_range(0..4) {
        0 => out.insert(i, chars[i]),
        1 => {
            out.remove(i);
        }
        2 => out.swap(i, i + 1),
        _ => out[i] = char::from(b'a' + rng.random_range(0..26u8)),
    }
    let t: String = out.into_iter().collect();
    (t != name).then_some(t)
}

const KINDS: &[(&str, u32)] = &[
    ("clean", 30),
    ("messy", 22),
    ("free_mail", 8),
    ("role_account", 3),
    ("bad_email", 7),
    ("bad_email_no_phone", 4),
    ("disposable", 4),
    ("bad_phone", 5),
    ("no_country", 5),
    ("no_contact", 3),
    ("markup", 2),
    ("formula", 2),
    ("unknown_country", 2),
    ("too_long", 1),
    ("broken_row", 2),
];

/// Generates `count` rows from `seed` (same seed, same rows).
pub fn generate(count: usize, seed: u64) -> Vec<Row> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let total: u32 = KINDS.iter().map(|(_, w)| w).sum();
    let mut people: Vec<Person> = Vec::new();
    let mut rows = Vec::with_capacity(count);
    for _ in 0..count {
        // One row in eight is someone already seen: a duplicate. A few new
        // people live with someone already seen: not duplicates.
        let seen_before = !people.is_empty() && rng.random_bool(0.125);
        let p = if seen_before {
            let i = rng.random_range(0..people.len());
            people[i].clone()
        } else {
            let id = people.len() + 1;
            let p = if !people.is_empty() && rng.random_bool(0.03) {
                let i = rng.random_range(0..people.len());
                let housemate = people[i].clone();
                relative(&mut rng, id, &housemate)
            } else {
                person(&mut rng, id)
            };
            people.push(p.clone());
            p
        };
        let mut pick = rng.random_range(0..total);
        let kind = KINDS
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map_or("clean", |(k, _)| k);
        rows.push(row(&mut rng, &p, kind, seen_before));
    }
    rows
}

/// Writes the sample CSV and, if asked, its truth and a labelled copy
/// (the same rows with a `person` column naming who each row is, for
/// `leadgate eval dedupe --truth-column person`).
pub fn write(
    count: usize,
    seed: u64,
    output: &Path,
    truth: Option<&Path>,
    labelled: Option<&Path>,
) -> Result<()> {
    let rows = generate(count, seed);
    write_rows(&rows, output, false)?;
    if let Some(path) = labelled {
        write_rows(&rows, path, true)?;
    }
    if let Some(truth) = truth {
        let mut w = csv::Writer::from_path(truth)
            .with_context(|| format!("cannot create {}", truth.display()))?;
        w.write_record(["line", "status", "codes", "person", "kind", "variation"])?;
        for (i, r) in rows.iter().enumerate() {
            w.write_record([
                (i + 1).to_string(),
                r.status.to_string(),
                r.codes.join(";"),
                r.person.to_string(),
                r.kind.to_string(),
                r.variation.join(";"),
            ])?;
        }
        w.flush()?;
    }
    Ok(())
}

fn write_rows(rows: &[Row], output: &Path, labelled: bool) -> Result<()> {
    let file = std::fs::File::create(output)
        .with_context(|| format!("cannot create {}", output.display()))?;
    let mut out = std::io::BufWriter::new(file);
    {
        let mut w = csv::Writer::from_writer(&mut out);
        if labelled {
            let mut header: Vec<&str> = HEADER.to_vec();
            header.push("person");
            w.write_record(header)?;
        } else {
            w.write_record(HEADER)?;
        }
        w.flush()?;
    }
    for r in rows {
        match &r.raw_line {
            Some(line) if labelled => writeln!(out, "{line},{}", r.person)?,
            Some(line) => writeln!(out, "{line}")?,
            None => {
                let mut w = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(&mut out);
                if labelled {
                    let mut fields: Vec<&str> = r.fields.iter().map(String::as_str).collect();
                    let person = r.person.to_string();
                    fields.push(&person);
                    w.write_record(fields)?;
                } else {
                    w.write_record(&r.fields)?;
                }
                w.flush()?;
            }
        }
    }
    out.flush()
        .with_context(|| format!("cannot write {}", output.display()))?;
    Ok(())
}

/// The readable records of a generated file as leads (benchmarks use
/// them; the unreadable rows the generator makes on purpose are skipped).
pub fn read_leads(path: &Path) -> Result<Vec<leadgate_lead::Lead>> {
    use leadgate_ingest::{Format, Limits, Mapping, Reader};
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let reader = Reader::new(
        Box::new(file),
        Format::Csv,
        Mapping::default(),
        Limits::default(),
    )?;
    Ok(reader
        .filter_map(|r| r.ok().and_then(|r| r.outcome.ok()))
        .map(|p| p.lead)
        .collect())
}

/// Industries of the generated firmographics.
const INDUSTRIES: &[&str] = &[
    "Software",
    "Financial Services",
    "Manufacturing",
    "Healthcare",
    "Retail",
    "Logistics",
    "Telecommunications",
    "Professional Services",
    "Education",
    "Energy",
];
const EMPLOYEE_RANGES: &[&str] = &[
    "1-10",
    "11-50",
    "51-200",
    "201-500",
    "501-1000",
    "1001-5000",
    "5001+",
];
const REVENUE_RANGES: &[&str] = &[
    "<1M",
    "1M-10M",
    "10M-50M",
    "50M-100M",
    "100M-500M",
    "500M-1B",
    "1B+",
];
const TECHNOLOGIES: &[&str] = &[
    "Salesforce",
    "HubSpot",
    "AWS",
    "Azure",
    "Google Cloud",
    "Snowflake",
    "Segment",
    "Marketo",
    "Zendesk",
    "Slack",
    "Shopify",
    "Stripe",
    "SAP",
    "Workday",
];

/// A firmographics data set for the companies the generator makes: every
/// two-syllable name under every country's TLD, with about one in eight
/// left out (a bought list never covers everyone). The columns are the
/// local provider's (`docs/src/capabilities/enrich.md`).
pub fn write_companies(path: &Path, seed: u64) -> Result<usize> {
    let mut w = csv::Writer::from_path(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    w.write_record([
        "domain",
        "name",
        "industry",
        "employee_range",
        "revenue_range",
        "country",
        "city",
        "technologies",
    ])?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut n = 0;
    for c in COUNTRIES {
        for head in COMPANY_HEADS {
            for tail in COMPANY_TAILS {
                if rng.random_bool(0.125) {
                    continue;
                }
                let base = format!("{head}{tail}");
                let size = rng.random_range(0..EMPLOYEE_RANGES.len());
                let revenue = (size + rng.random_range(0..2)).min(REVENUE_RANGES.len() - 1);
                let techs: Vec<&str> = TECHNOLOGIES
                    .iter()
                    .filter(|_| rng.random_bool(0.2))
                    .copied()
                    .collect();
                w.write_record([
                    format!("{}.{}", slug(&base), c.tld),
                    format!(
                        "{base} {}",
                        SUFFIXES.choose(&mut rng).copied().unwrap_or("")
                    )
                    .trim()
                    .to_string(),
                    INDUSTRIES
                        .choose(&mut rng)
                        .copied()
                        .unwrap_or("Software")
                        .to_string(),
                    EMPLOYEE_RANGES[size].to_string(),
                    REVENUE_RANGES[revenue].to_string(),
                    c.code.to_string(),
                    c.cities.choose(&mut rng).copied().unwrap_or("").to_string(),
                    techs.join(";"),
                ])?;
                n += 1;
            }
        }
    }
    w.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(n)
}

/// Behavioural events for the readable leads of the generated file at
/// `leads`: most leads a few, some a buying pattern (pricing and
/// comparison pages, a trial, usage), some accounts several people at
/// once; plus events of people not in the file yet, one repeated event id
/// and a few malformed lines, as real feeds have. Times are within the
/// 60 days before `now`.
pub fn write_events(leads: &Path, path: &Path, seed: u64, now: i64) -> Result<usize> {
    let leads = read_leads(leads)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xe7e7);
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let day = 86_400_000i64;
    let pages = [
        "/",
        "/blog/lead-routing",
        "/docs/getting-started",
        "/pricing",
        "/compare/leadgate-vs-spreadsheets",
        "/careers",
        "/customers",
        "/demo",
    ];
    let mut n = 0usize;
    let line = |out: &mut std::io::BufWriter<std::fs::File>, v: serde_json::Value| -> Result<()> {
        writeln!(out, "{v}")?;
        Ok(())
    };
    // Accounts that research together: a few domains whose people all buy.
    let hot_domains: Vec<String> = leads
        .iter()
        .filter_map(|l| {
            l.email
                .as_deref()?
                .rsplit_once('@')
                .map(|(_, d)| d.to_lowercase())
        })
        .filter(|d| !d.contains("gmail") && !d.contains("yahoo") && !d.contains("hotmail"))
        .step_by(37)
        .take(12)
        .collect();
    for l in &leads {
        let Some(email) = l.email.as_deref().map(|e| e.trim().to_lowercase()) else {
            continue;
        };
        if !email
            .rsplit_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
            || email.contains(' ')
        {
            continue;
        }
        let domain = email
            .rsplit_once('@')
            .map(|(_, d)| d.to_string())
            .unwrap_or_default();
        let buyer = hot_domains.contains(&domain) || rng.random_bool(0.08);
        let count = if buyer {
            rng.random_range(6..20)
        } else if rng.random_bool(0.5) {
            rng.random_range(1..5)
        } else {
            0
        };
        for _ in 0..count {
            let at = now
                - rng.random_range(0..60 * day)
                - if buyer {
                    0
                } else {
                    rng.random_range(0..20 * day)
                };
            let (kind, extra): (&str, serde_json::Value) = match rng.random_range(0..10) {
                0..=4 => {
                    let page = if buyer {
                        pages[rng.random_range(2..5)]
                    } else {
                        pages[rng.random_range(0..pages.len())]
                    };
                    (
                        "page_view",
                        serde_json::json!({"url": format!("https://leadgate.example{page}")}),
                    )
                }
                5 => ("email_open", serde_json::json!({})),
                6 => ("email_click", serde_json::json!({})),
                7 => (
                    "content_download",
                    serde_json::json!({"asset": "revops-guide.pdf"}),
                ),
                8 if buyer => ("trial_signup", serde_json::json!({})),
                8 => ("form_submission", serde_json::json!({"form": "newsletter"})),
                _ if buyer => (
                    "product_usage",
                    serde_json::json!({"value": rng.random_range(1..10)}),
                ),
                _ => ("reply", serde_json::json!({})),
            };
            n += 1;
            let mut v = serde_json::json!({"id": format!("ev-{n}"), "type": kind, "at": at, "email": email});
            if let (Some(o), Some(x)) = (v.as_object_mut(), extra.as_object()) {
                o.extend(x.clone());
            }
            line(&mut out, v)?;
        }
    }
    // People not in the file yet: kept, attached when they appear.
    for i in 0..20 {
        n += 1;
        line(
            &mut out,
            serde_json::json!({"id": format!("ev-{n}"), "type": "page_view", "at": now - (i + 1) * 3_600_000,
                               "email": format!("visitor{i}@newprospect{i}.example"), "url": "https://leadgate.example/pricing"}),
        )?;
    }
    // A repeated id (ignored) and malformed lines (rejected with a reason).
    line(
        &mut out,
        serde_json::json!({"id": "ev-1", "type": "reply", "at": now, "email": "someone@example.com"}),
    )?;
    writeln!(
        out,
        r#"{{"id": "bad-1", "type": "webinar", "at": {now}, "email": "a@b.example"}}"#
    )?;
    writeln!(
        out,
        r#"{{"id": "bad-2", "type": "page_view", "email": "a@b.example"}}"#
    )?;
    writeln!(
        out,
        r#"{{"id": "bad-3", "type": "page_view", "at": {now}}}"#
    )?;
    writeln!(out, "not json at all")?;
    out.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(n + 5)
}

/// A conversion history export: attributes and activity counts, no
/// contact fields, and a `Converted` outcome drawn from a known logistic
/// model (its true probability is not written). Education converts far
/// above what a software-and-finance ICP predicts: `leadgate report`
/// finds it as ICP drift.
pub fn write_history(path: &Path, rows: usize, seed: u64) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x4157);
    let mut w = csv::Writer::from_path(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    w.write_record([
        "Lead Number",
        "Lead Source",
        "Industry",
        "Employees",
        "Country",
        "Job Title",
        "Total Visits",
        "Time On Site",
        "Pricing Views",
        "Email Opens",
        "Trial",
        "Converted",
    ])?;
    let sources = [
        ("Google", 0.0),
        ("Referral", 1.2),
        ("Direct", 0.3),
        ("Event", 0.6),
        ("Paid Social", -0.6),
    ];
    let industries = [
        ("Software", 0.5),
        ("Financial Services", 0.4),
        ("Manufacturing", -0.3),
        ("Healthcare", 0.0),
        ("Retail", -0.4),
        ("Education", 1.3),
    ];
    let sizes = [
        ("1-10", -0.8),
        ("11-50", -0.2),
        ("51-200", 0.4),
        ("201-500", 0.5),
        ("501-1000", 0.2),
        ("1001-5000", 0.0),
    ];
    let countries = [
        ("US", 0.2),
        ("GB", 0.1),
        ("DE", 0.0),
        ("IN", -0.3),
        ("FR", -0.1),
    ];
    let titles = [
        ("CEO", 0.4),
        ("VP Sales", 0.6),
        ("Revenue Operations Manager", 0.8),
        ("Marketing Manager", 0.1),
        ("Engineer", -0.2),
        ("Student", -1.5),
    ];
    for i in 0..rows {
        let pick =
            |rng: &mut ChaCha8Rng, xs: &[(&'static str, f64)]| xs[rng.random_range(0..xs.len())];
        let (source, a) = pick(&mut rng, &sources);
        let (industry, b) = pick(&mut rng, &industries);
        let (size, c) = pick(&mut rng, &sizes);
        let (country, d) = pick(&mut rng, &countries);
        let (title, e) = pick(&mut rng, &titles);
        let engaged: f64 = rng.random::<f64>();
        let visits = (engaged * 12.0 + rng.random_range(0.0..4.0)).floor();
        let time = (visits * rng.random_range(30.0..240.0)).floor();
        let pricing = if rng.random_bool(0.3 + 0.4 * engaged) {
            rng.random_range(0..5)
        } else {
            0
        };
        let opens = rng.random_range(0..8);
        let trial = rng.random_bool(0.1 + 0.2 * engaged);
        let z = -3.6
            + a
            + b
            + c
            + d
            + e
            + 0.9 * (1.0 + visits).ln()
            + 0.35 * f64::from(pricing)
            + if trial { 1.1 } else { 0.0 };
        let p = 1.0 / (1.0 + (-z).exp());
        let converted = rng.random_bool(p.clamp(0.0, 1.0));
        let missing = rng.random_bool(0.04);
        w.write_record([
            (600_000 + i).to_string(),
            source.to_string(),
            industry.to_string(),
            size.to_string(),
            country.to_string(),
            title.to_string(),
            if missing {
                String::new()
            } else {
                visits.to_string()
            },
            time.to_string(),
            pricing.to_string(),
            opens.to_string(),
            if trial { "Yes" } else { "No" }.to_string(),
            if converted { "1" } else { "0" }.to_string(),
        ])?;
    }
    w.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_rows() {
        let a: Vec<[String; 13]> = generate(50, 3).into_iter().map(|r| r.fields).collect();
        let b: Vec<[String; 13]> = generate(50, 3).into_iter().map(|r| r.fields).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn generated_phone_numbers_are_valid_for_their_country() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for c in COUNTRIES {
            for _ in 0..50 {
                let (national, intl) = (c.phone)(&mut rng);
                let p = leadgate_validate::phone::parse(&national, Some(c.code))
                    .unwrap_or_else(|e| panic!("{} {national}: {e:?}", c.code));
                let q = leadgate_validate::phone::parse(&intl, None).unwrap();
                assert_eq!(p.e164, q.e164);
            }
        }
    }

    #[test]
    fn every_kind_appears_in_a_thousand_rows() {
        let rows = generate(1000, 7);
        for (kind, _) in KINDS {
            assert!(rows.iter().any(|r| r.kind == *kind), "{kind}");
        }
        let people: std::collections::HashSet<usize> = rows.iter().map(|r| r.person).collect();
        assert!(people.len() < rows.len(), "some people appear twice");
    }
}
