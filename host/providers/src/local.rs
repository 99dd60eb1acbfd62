//! The local provider, leadgate's embedded default: a firmographics data
//! set keyed by domain, and optionally people keyed by email, from CSV
//! (loaded into memory) or SQLite (queried in place, for lists too large to
//! load). Column names are matched case-insensitively:
//!
//! - companies: `domain` (required), `name`, `industry`, `employee_range`,
//!   `revenue_range`, `country`, `city`, `technologies` (separated by `;`,
//!   `|` or `,`);
//! - people: `email` (required), `first_name`, `last_name`, `job_title`,
//!   `seniority`, `department`, `company_domain`, `country`, `city`,
//!   `linkedin`.
//!
//! Other columns are ignored. A row without its key is skipped and
//! counted; a file without the key column is refused.

use crate::{FetchError, Fetched, Kind, Provider, SetupError};
use leadgate_lead::enrich::{Company, Person};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// Where one kind's records come from.
enum Source {
    Memory(HashMap<String, Fetched>),
    Sqlite(Mutex<rusqlite::Connection>),
}

pub struct LocalProvider {
    companies: Option<Source>,
    people: Option<Source>,
}

/// What loading a data set found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub rows: usize,
    pub loaded: usize,
    /// (line, reason) of the first skipped rows.
    pub skipped: Vec<(u64, String)>,
    pub skipped_total: usize,
    pub duplicates: usize,
}

fn text(v: Option<&String>) -> Option<String> {
    v.map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn company_from(row: &HashMap<String, String>, domain: String) -> Company {
    Company {
        domain,
        name: text(row.get("name")),
        industry: text(row.get("industry")),
        employee_range: text(row.get("employee_range")),
        revenue_range: text(row.get("revenue_range")),
        country: text(row.get("country")).map(|c| c.to_ascii_uppercase()),
        city: text(row.get("city")),
        technologies: row
            .get("technologies")
            .map(|t| {
                t.split([';', '|', ','])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn person_from(row: &HashMap<String, String>, email: String) -> Person {
    Person {
        email,
        first_name: text(row.get("first_name")),
        last_name: text(row.get("last_name")),
        job_title: text(row.get("job_title")),
        seniority: text(row.get("seniority")),
        department: text(row.get("department")),
        company_domain: text(row.get("company_domain")).map(|d| Kind::Company.normalize(&d)),
        country: text(row.get("country")).map(|c| c.to_ascii_uppercase()),
        city: text(row.get("city")),
        linkedin: text(row.get("linkedin")),
    }
}

fn record(kind: Kind, row: &HashMap<String, String>, key: String) -> Fetched {
    match kind {
        Kind::Company => Fetched::Company(company_from(row, key)),
        Kind::Person => Fetched::Person(person_from(row, key)),
    }
}

fn key_column(kind: Kind) -> &'static str {
    match kind {
        Kind::Company => "domain",
        Kind::Person => "email",
    }
}

fn table(kind: Kind) -> &'static str {
    match kind {
        Kind::Company => "companies",
        Kind::Person => "people",
    }
}

fn is_sqlite(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("db" | "sqlite" | "sqlite3")
    )
}

fn load_csv(
    name: &str,
    kind: Kind,
    path: &Path,
) -> Result<(HashMap<String, Fetched>, LoadReport), SetupError> {
    let data_err = |reason: String| SetupError::Data {
        name: name.to_string(),
        path: path.display().to_string(),
        reason,
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| data_err(e.to_string()))?;
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| data_err(e.to_string()))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase().replace([' ', '-'], "_"))
        .collect();
    let key = key_column(kind);
    let Some(key_at) = headers.iter().position(|h| h == key) else {
        return Err(data_err(format!(
            "no `{key}` column (columns: {})",
            headers.join(", ")
        )));
    };
    let mut map = HashMap::new();
    let mut report = LoadReport::default();
    for (i, row) in reader.records().enumerate() {
        let line = i as u64 + 2;
        report.rows += 1;
        let mut skip = |reason: String| {
            report.skipped_total += 1;
            if report.skipped.len() < 5 {
                report.skipped.push((line, reason));
            }
        };
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                skip(e.to_string());
                continue;
            }
        };
        let k = kind.normalize(row.get(key_at).unwrap_or(""));
        if k.is_empty() {
            skip(format!("empty `{key}`"));
            continue;
        }
        let fields: HashMap<String, String> = headers
            .iter()
            .cloned()
            .zip(row.iter().map(str::to_string))
            .collect();
        if map.contains_key(&k) {
            report.duplicates += 1;
            continue;
        }
        map.insert(k.clone(), record(kind, &fields, k));
        report.loaded += 1;
    }
    Ok((map, report))
}

fn open_sqlite(name: &str, kind: Kind, path: &Path) -> Result<rusqlite::Connection, SetupError> {
    let data_err = |reason: String| SetupError::Data {
        name: name.to_string(),
        path: path.display().to_string(),
        reason,
    };
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| data_err(e.to_string()))?;
    let sql = format!(
        "SELECT * FROM {} WHERE lower({}) = ?1 LIMIT 1",
        table(kind),
        key_column(kind)
    );
    conn.prepare_cached(&sql).map_err(|e| {
        data_err(format!(
            "needs a `{}` table with a `{}` column: {e}",
            table(kind),
            key_column(kind)
        ))
    })?;
    Ok(conn)
}

fn query_sqlite(
    conn: &Mutex<rusqlite::Connection>,
    kind: Kind,
    key: &str,
) -> Result<Fetched, FetchError> {
    let conn = match conn.lock() {
        Ok(c) => c,
        Err(poisoned) => poisoned.into_inner(),
    };
    let sql = format!(
        "SELECT * FROM {} WHERE lower({}) = ?1 LIMIT 1",
        table(kind),
        key_column(kind)
    );
    let mut stmt = conn
        .prepare_cached(&sql)
        .map_err(|e| FetchError::Other(e.to_string()))?;
    let names: Vec<String> = stmt
        .column_names()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    let mut rows = stmt
        .query([key])
        .map_err(|e| FetchError::Other(e.to_string()))?;
    let Some(row) = rows.next().map_err(|e| FetchError::Other(e.to_string()))? else {
        return Ok(Fetched::NotFound);
    };
    let mut fields = HashMap::new();
    for (i, n) in names.iter().enumerate() {
        let v: Option<String> = match row.get_ref(i) {
            Ok(rusqlite::types::ValueRef::Text(t)) => Some(String::from_utf8_lossy(t).into_owned()),
            Ok(rusqlite::types::ValueRef::Integer(n)) => Some(n.to_string()),
            Ok(rusqlite::types::ValueRef::Real(f)) => Some(f.to_string()),
            _ => None,
        };
        if let Some(v) = v {
            fields.insert(n.clone(), v);
        }
    }
    Ok(record(kind, &fields, key.to_string()))
}

impl LocalProvider {
    /// Loads the data sets; each report says what was loaded and skipped.
    pub fn open(
        name: &str,
        companies: Option<&Path>,
        people: Option<&Path>,
    ) -> Result<(LocalProvider, Vec<(Kind, LoadReport)>), SetupError> {
        if companies.is_none() && people.is_none() {
            return Err(SetupError::Config {
                name: name.to_string(),
                reason: "a local provider needs `companies` or `people` (a CSV or SQLite file)"
                    .into(),
            });
        }
        let mut reports = Vec::new();
        let mut open = |kind: Kind, path: Option<&Path>| -> Result<Option<Source>, SetupError> {
            let Some(path) = path else { return Ok(None) };
            if is_sqlite(path) {
                return Ok(Some(Source::Sqlite(Mutex::new(open_sqlite(
                    name, kind, path,
                )?))));
            }
            let (map, report) = load_csv(name, kind, path)?;
            reports.push((kind, report));
            Ok(Some(Source::Memory(map)))
        };
        let companies = open(Kind::Company, companies)?;
        let people = open(Kind::Person, people)?;
        Ok((LocalProvider { companies, people }, reports))
    }

    /// A provider over records already in memory (tests, benchmarks); it
    /// serves a kind only when given records of it.
    pub fn from_records(companies: Vec<Company>, people: Vec<Person>) -> LocalProvider {
        let companies: HashMap<String, Fetched> = companies
            .into_iter()
            .map(|c| (Kind::Company.normalize(&c.domain), Fetched::Company(c)))
            .collect();
        let people: HashMap<String, Fetched> = people
            .into_iter()
            .map(|p| (Kind::Person.normalize(&p.email), Fetched::Person(p)))
            .collect();
        LocalProvider {
            companies: (!companies.is_empty()).then_some(Source::Memory(companies)),
            people: (!people.is_empty()).then_some(Source::Memory(people)),
        }
    }

    fn source(&self, kind: Kind) -> Option<&Source> {
        match kind {
            Kind::Company => self.companies.as_ref(),
            Kind::Person => self.people.as_ref(),
        }
    }
}

impl Provider for LocalProvider {
    fn serves(&self, kind: Kind) -> bool {
        self.source(kind).is_some()
    }

    fn is_local(&self) -> bool {
        true
    }

    fn fetch(&self, kind: Kind, key: &str) -> Result<Fetched, FetchError> {
        match self.source(kind) {
            None => Ok(Fetched::NotFound),
            Some(Source::Memory(map)) => Ok(map.get(key).cloned().unwrap_or(Fetched::NotFound)),
            Some(Source::Sqlite(conn)) => query_sqlite(conn, kind, key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_companies_with_bad_rows_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("companies.csv");
        std::fs::write(
            &path,
            "Domain,Name,Industry,Employee Range,Technologies,Country\n\
             WWW.Acme.com,Acme Inc.,Software,51-200,Salesforce;AWS,us\n\
             ,Nameless,,,,\n\
             acme.com,Second Acme,,,,\n\
             globex.io,Globex,Manufacturing,1001-5000,,DE\n",
        )
        .unwrap();
        let (p, reports) = LocalProvider::open("local", Some(&path), None).unwrap();
        let r = &reports[0].1;
        assert_eq!(
            (r.rows, r.loaded, r.skipped_total, r.duplicates),
            (4, 2, 1, 1)
        );
        assert_eq!(r.skipped[0], (3, "empty `domain`".to_string()));
        let Fetched::Company(c) = p.fetch(Kind::Company, "acme.com").unwrap() else {
            panic!("not found");
        };
        assert_eq!(c.name.as_deref(), Some("Acme Inc."));
        assert_eq!(c.technologies, ["Salesforce", "AWS"]);
        assert_eq!(c.country.as_deref(), Some("US"));
        assert_eq!(
            p.fetch(Kind::Company, "nope.com").unwrap(),
            Fetched::NotFound
        );
        assert!(!p.serves(Kind::Person));
    }

    #[test]
    fn a_file_without_its_key_column_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("companies.csv");
        std::fs::write(&path, "website,name\nacme.com,Acme\n").unwrap();
        let e = LocalProvider::open("bought-list", Some(&path), None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("bought-list") && e.contains("`domain`"), "{e}");
        let e = LocalProvider::open("x", Some(&dir.path().join("missing.csv")), None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("missing.csv"), "{e}");
    }

    #[test]
    fn sqlite_people_queried_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("people.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE people (email TEXT PRIMARY KEY, first_name TEXT, job_title TEXT, company_domain TEXT, age INTEGER);
             INSERT INTO people VALUES ('jane@acme.com', 'Jane', 'CTO', 'www.acme.com', 40);",
        )
        .unwrap();
        drop(conn);
        let (p, _) = LocalProvider::open("crm", None, Some(&path)).unwrap();
        let Fetched::Person(person) = p.fetch(Kind::Person, "jane@acme.com").unwrap() else {
            panic!("not found");
        };
        assert_eq!(person.job_title.as_deref(), Some("CTO"));
        assert_eq!(person.company_domain.as_deref(), Some("acme.com"));
        assert_eq!(
            p.fetch(Kind::Person, "joe@acme.com").unwrap(),
            Fetched::NotFound
        );
    }
}
